"""Each profile's report notebooks (``reports:``): declared per profile, defaults per paper, checked
on load, planned with the parameters each notebook needs, and the results page showing that
paper's results instead of seed 000's Table II."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest
import yaml

from medtl_lib import orchestration as profiles
from medtl_lib.evaluation import results_page

REPO = Path(__file__).resolve().parents[1]
WALK, RESULTS, LEAK = "02_dual_monitor_walkthrough", "05_results", "06_leakage"
STRATS, COMPARE = "07_strategies", "08_strategy_comparison"
TRUNC, SVCCA, CDTM, CDTM_RESULTS = ("09_truncation", "10_representations", "11_cdtm",
                                    "12_cdtm_results")
SETTINGS, CI = "13_init_settings", "14_confidence_intervals"
# every committed profile: its report notebooks (05_results, the results page, runs in every plan)
EXPECTED = {
    "paper": [WALK, LEAK, RESULTS],
    "paper_grouped": [WALK, RESULTS],
    "smoke": [WALK, LEAK, RESULTS],
    "smoke_strategies": [STRATS, COMPARE],
    "seed001": [STRATS, COMPARE],
    "seed001_cpu": [STRATS, COMPARE],
    "seed002": [CDTM, CDTM_RESULTS],
    "seed002_cpu": [CDTM, CDTM_RESULTS],
    "seed003": [SVCCA, TRUNC],
    "seed003_cpu": [SVCCA, TRUNC],
    "seed004": [SETTINGS, CI],
    "seed004_cpu": [SETTINGS, CI],
    "seed004_binary_cpu": [SETTINGS, CI],
}


def load(name: str, tmp_path: Path) -> profiles.Profile:
    return profiles.load_profile(name, runs_dir=tmp_path / "runs", data_root=tmp_path / "data")


def report_steps(p: profiles.Profile, only: str | None = None) -> list[str]:
    """The plan's steps after the training runs; per-run ones by notebook ('r/10_...': '10_...')."""
    steps = profiles.plan(p, only)
    names = [s.name.split("/")[-1] for s in steps]
    return [n for n in names if n not in ("00_setup", "01_data_exploration", "03_train",
                                          "04_evaluate")]


def declared(notebook: Path) -> dict:
    nb = nbformat.read(str(notebook), as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return {t.id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body
            if isinstance(n, ast.Assign) for t in n.targets}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\n" + text)
    return path


BASE = "datasets: [brain_tumor_mri]\nmodels: [efficientnet_lite0]\n"


# --- the committed profiles ----------------------------------------------------------------

def test_every_committed_profile_declares_its_reports():
    on_disk = sorted(p.stem for p in profiles.PROFILES.glob("*.yaml"))
    assert on_disk == sorted(EXPECTED), "a new profile: add it to EXPECTED with its reports"
    for name in on_disk:
        spec = yaml.safe_load((profiles.PROFILES / f"{name}.yaml").read_text())
        assert "reports" in spec, f"{name}.yaml: no 'reports:' key"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_profile_plans_its_papers_reports_and_the_results_page_last(name, tmp_path):
    p = load(name, tmp_path)
    assert p.reports == EXPECTED[name]
    planned = report_steps(p)
    assert planned[-1] == RESULTS and planned.count(RESULTS) == 1  # the page, always, last
    assert list(dict.fromkeys(planned)) == [n for n in EXPECTED[name] if n != RESULTS] + [RESULTS]


@pytest.mark.parametrize("name", ["seed002", "seed002_cpu"])
def test_seed002_plans_11_and_12_and_none_of_seed000s_or_seed001s(name, tmp_path):
    p = load(name, tmp_path)
    steps = {s.name: s for s in profiles.plan(p)}
    assert CDTM in steps and CDTM_RESULTS in steps
    assert not {STRATS, COMPARE, WALK, LEAK} & set(steps)
    assert RESULTS not in p.reports  # 05 builds the page, without seed 000's Table II
    run = Path(steps[CDTM].parameters["run_dir"])
    assert run.parent == p.out_root and "__cdtm_lp__" in run.name  # a trained CDTM probe
    cfg = next(r for r in p.runs if r.out == str(run))
    assert (cfg.head, cfg.pool, cfg.strategy) == ("cdtm", "tokens", "cdtm_lp")
    assert steps[CDTM].parameters["figures_dir"] == str(p.out_root / "figures")
    assert steps[CDTM_RESULTS].parameters == {"profile_dir": str(p.out_root),
                                              "figures_dir": str(p.out_root / "figures")}
    # --only without a CDTM run: 11 still opens the profile's CDTM probe up
    only = {s.name: s for s in profiles.plan(p, only="*__full__*")}
    assert "__cdtm_lp__" in only[CDTM].parameters["run_dir"]


@pytest.mark.parametrize("name", ["seed001", "seed001_cpu", "smoke_strategies"])
def test_seed001_plans_07_and_08_without_seed000s(name, tmp_path):
    p = load(name, tmp_path)
    steps = {s.name: s for s in profiles.plan(p)}
    assert STRATS in steps and COMPARE in steps and not {WALK, LEAK, CDTM} & set(steps)
    assert Path(steps[STRATS].parameters["profile"]).name == f"{name}.yaml"
    assert steps[STRATS].parameters["runs_dir"] == str(p.out_root.parent)
    assert steps[STRATS].parameters["seed"] == p.seeds[0]
    assert steps[STRATS].parameters["train_missing"] is False
    assert steps[COMPARE].parameters["profile_dir"] == str(p.out_root)


@pytest.mark.parametrize("name", ["seed003", "seed003_cpu"])
def test_seed003_plans_svcca_per_ftl_run_and_each_search(name, tmp_path):
    p = load(name, tmp_path)
    steps = profiles.plan(p)
    svcca = [s for s in steps if s.name.endswith(SVCCA)]
    assert [s.parameters["run_dir"] for s in svcca] == [r.out for r in p.runs]  # FTL runs
    trunc = [s for s in steps if s.name.endswith(TRUNC)]
    assert [s.parameters["search_dir"] for s in trunc] == [str(x.folder) for x in p.searches]
    assert not {WALK, LEAK, STRATS, COMPARE} & {s.name for s in steps}


@pytest.mark.parametrize("name", ["seed004", "seed004_cpu", "seed004_binary_cpu"])
def test_seed004_plans_13_and_14_without_seed000s(name, tmp_path):
    p = load(name, tmp_path)
    steps = {s.name: s for s in profiles.plan(p)}
    assert steps[SETTINGS].parameters["profile_dir"] == str(p.out_root)
    assert steps[CI].parameters["run_dir"] == p.runs[0].out
    assert not {WALK, LEAK, STRATS, COMPARE} & set(steps)


@pytest.mark.parametrize("name", ["paper", "smoke"])
def test_seed000_profiles_keep_the_walkthrough_leakage_and_table_ii(name, tmp_path):
    p = load(name, tmp_path)
    steps = {s.name: s for s in profiles.plan(p)}
    assert report_steps(p) == [WALK, LEAK, RESULTS]
    walk = steps[WALK].parameters
    assert walk["run_dir"] == ("" if p.walkthrough == "simulated" else p.runs[0].out)
    assert steps[LEAK].parameters["out_dir"] == str(p.out_root / "leakage")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_report_parameters_are_declared_by_their_notebooks(name, tmp_path):
    p = load(name, tmp_path)
    for step in profiles.plan(p):
        if step.name.endswith("03_train"):
            continue  # RunConfig against 03's parameters: test_notebooks checks that
        unknown = set(step.parameters) - set(declared(step.notebook))
        assert not unknown, f"{step.name}: papermill would inject undeclared {unknown}"
        assert step.notebook.stem == step.name.split("/")[-1] == step.output.stem


def test_dry_run_names_the_reports(tmp_path, capsys):
    assert profiles.main(["seed002_cpu", "--dry-run", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reports: 11_cdtm, 12_cdtm_results; results page: 05_results" in out
    assert "11_cdtm " in out and "07_strategies" not in out and WALK not in out


# --- the key: names, numbers, defaults, mistakes -------------------------------------------

def test_reports_by_name_number_or_file_name(tmp_path):
    path = write(tmp_path, BASE + "strategies: [full, lp_ft]\n"
                 "reports: [8, '07', 14_confidence_intervals.ipynb]\n")
    p = profiles.load_profile(path, runs_dir=tmp_path / "runs")
    assert p.reports == [STRATS, COMPARE, CI]  # plan order, whatever the list's
    assert report_steps(p) == [STRATS, COMPARE, CI, RESULTS]
    assert profiles.report_name("12") == profiles.report_name(12) == CDTM_RESULTS
    assert profiles.report_name("cdtm") is None


@pytest.mark.parametrize("reports, match", [
    ("[12_cdtm_result]",
     r"'12_cdtm_result' is not a report; valid reports .*12_cdtm_results \(12\)"),
    ("[15]", r"'15' is not a report; valid reports .*02_dual_monitor_walkthrough \(02\)"),
    ("[03_train]", "'03_train' runs in every plan, it is not a report"),
    ("[4]", "'4' runs in every plan"),
    ("[08, 8]", "'08_strategy_comparison' is listed twice"),
    ("[]", "'reports' lists report notebooks"),
    ("{a: 1}", "'reports' lists report notebooks"),
    ("[06_leakage]", "06_leakage needs a 'leakage:' section"),
    ("[09]", "09_truncation needs 'searches:'"),
    ("[11]", "11_cdtm needs a run with 'head: cdtm'"),
    ("[13]", "13_init_settings needs 'settings:'"),
])
def test_report_mistakes_are_clear_errors(tmp_path, reports, match):
    path = write(tmp_path, BASE + f"reports: {reports}\n")
    with pytest.raises(ValueError, match=match):
        profiles.load_profile(path, runs_dir=tmp_path / "runs")


def test_unknown_report_lists_every_valid_one_and_the_cli_says_so(tmp_path, capsys):
    path = write(tmp_path, BASE + "reports: [cdtm_results]\n")
    with pytest.raises(ValueError) as err:
        profiles.load_profile(path, runs_dir=tmp_path / "runs")
    assert all(name in str(err.value) for name in profiles.REPORTS)
    assert profiles.main([str(path), "--dry-run", "--runs-dir", str(tmp_path)]) == 2
    assert "medtl run: error:" in capsys.readouterr().err


def test_a_section_no_report_uses_is_an_error(tmp_path):
    leak = "leakage: {dataset: brain_tumor_mri}\n"
    with pytest.raises(ValueError, match="'leakage:' is for notebook 06_leakage"):
        profiles.load_profile(write(tmp_path, BASE + leak + "reports: [05]\n"),
                              runs_dir=tmp_path / "runs")
    search = "searches: [ttl]\n"
    with pytest.raises(ValueError, match="'searches:' is for notebook 09_truncation"):
        profiles.load_profile(write(tmp_path, BASE + search + "reports: [10]\n"),
                              runs_dir=tmp_path / "runs")


@pytest.mark.parametrize("paper, extra, expected", [
    ("seed000", "", [WALK, RESULTS]),
    ("seed000", "leakage: {dataset: brain_tumor_mri}\n", [WALK, LEAK, RESULTS]),
    ("seed001", "strategies: [full, lp_ft]\n", [STRATS, COMPARE]),
    ("seed002", "strategies: [linear_probe, cdtm_lp]\noverrides: {cdtm_lp: {pool: tokens, "
                "head: cdtm}}\n", [CDTM, CDTM_RESULTS]),
    ("seed003", "", [SVCCA]),
    ("seed003", "searches: [ttl]\n", [SVCCA, TRUNC]),
    ("seed004", "settings: {a: {strategy: full}, b: {strategy: linear_probe}}\n",
     [SETTINGS, CI]),
])
def test_paper_gives_that_papers_reports(tmp_path, paper, extra, expected):
    p = profiles.load_profile(write(tmp_path, BASE + f"paper: {paper}\n" + extra),
                              runs_dir=tmp_path / "runs")
    assert (p.paper, p.reports) == (paper, expected)
    assert report_steps(p)[-1] == RESULTS


def test_reports_win_over_paper_and_an_unknown_paper_is_an_error(tmp_path):
    p = profiles.load_profile(write(tmp_path, BASE + "paper: seed004\nreports: [05]\n"),
                              runs_dir=tmp_path / "runs")
    assert p.reports == [RESULTS]
    with pytest.raises(ValueError, match="'paper' is one of seed000, seed001, seed002"):
        profiles.load_profile(write(tmp_path, BASE + "paper: seed005\n"),
                              runs_dir=tmp_path / "runs")


@pytest.mark.parametrize("extra, expected", [
    ("", [WALK, RESULTS]),
    ("leakage: {dataset: brain_tumor_mri}\n", [WALK, LEAK, RESULTS]),
    ("strategies: [full, lp_ft]\n", [WALK, STRATS, COMPARE, RESULTS]),
    ("settings: {a: {strategy: full}}\n", [WALK, SETTINGS, RESULTS]),
    ("searches: [ttl]\n", [SVCCA, TRUNC, WALK, RESULTS]),
])
def test_without_the_keys_the_shape_decides_as_before(tmp_path, extra, expected):
    """A user's own profile from before the key plans what it planned then."""
    p = profiles.load_profile(write(tmp_path, BASE + extra), runs_dir=tmp_path / "runs")
    assert (p.paper, report_steps(p)) == ("", expected)


# --- the results page ----------------------------------------------------------------------

def _executed(name: str, folder: Path) -> Path:
    """The committed notebook with a marker output in every code cell, as if executed there."""
    nb = nbformat.read(str(REPO / "notebooks" / f"{name}.ipynb"), as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output(
                "display_data", {"text/markdown": f"OUT-{name[:2]}-{i}"})]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / f"{name}.ipynb"))
    return folder / f"{name}.ipynb"


def _sections_of(name: str) -> dict[str, int]:
    """The first code cell (index) of each section ('## ...' or deeper) of a committed notebook,
    by heading."""
    nb = nbformat.read(str(REPO / "notebooks" / f"{name}.ipynb"), as_version=4)
    out, current = {}, None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.startswith("##"):
            current = cell.source.splitlines()[0]
        elif cell.cell_type == "code" and current and current not in out:
            out[current] = i
    return out


def test_seed002s_page_shows_its_tables_not_seed000s_table_ii(tmp_path):
    root = tmp_path / "seed002"
    page05 = _executed(RESULTS, root)
    page12 = _executed(CDTM_RESULTS, root)
    page11 = _executed(CDTM, root)
    html = results_page.export_results_page(page05, "seed002", [CDTM, CDTM_RESULTS],
                                            [page11, page12]).read_text()
    sec05, sec12 = _sections_of(RESULTS), _sections_of(CDTM_RESULTS)
    table_ii = next(i for h, i in sec05.items() if h.startswith("## Table II"))
    leak = next(i for h, i in sec05.items() if h.startswith("## Leakage"))
    walk = next(i for h, i in sec05.items() if h.startswith("## Algorithm 1"))
    strategies = next(i for h, i in sec05.items() if h.startswith("## Strategies"))
    for gone in (table_ii, leak, walk):
        assert f"OUT-05-{gone}<" not in html
    assert "Table II: ours beside the paper" not in html and "Algorithm 1 at work" not in html
    assert "OUT-05-3<" in html and f"OUT-05-{strategies}<" in html  # header, strategies kept
    assert "Seed 002&#39;s tables" in html or "Seed 002's tables" in html
    for heading, index in sec12.items():
        shown = f"OUT-12-{index}<" in html
        assert shown == (not heading.startswith(("## Exercise", "### Exercise"))), heading
    assert "OUT-12-3<" in html and "OUT-12-1<" not in html  # its run count, not its parameters
    assert "OUT-11-" not in html  # 11 opens one run up: linked, not shown
    # seed 002's tables stand where Table II would: after the header, before the strategy table
    first12 = html.index("OUT-12-")
    assert html.index("OUT-05-3<") < first12 < html.index(f"OUT-05-{strategies}<")
    assert 'href="12_cdtm_results.ipynb"' in html  # the whole notebook, linked
    assert not results_page.external_resources(html)


def test_seed000s_page_is_notebook_05_as_it_ran(tmp_path):
    root = tmp_path / "paper"
    page05 = _executed(RESULTS, root)
    whole = results_page.export_results_page(page05, "paper").read_text()
    listed = results_page.export_results_page(page05, "paper", [WALK, LEAK, RESULTS],
                                              []).read_text()
    for html in (whole, listed):
        for index in _sections_of(RESULTS).values():
            if index < 22:  # the exercises' solutions are left out of every page
                assert f"OUT-05-{index}<" in html
    # the grouped twin runs no 06: its page leaves the leakage section out
    twin = results_page.export_results_page(page05, "paper_grouped", [WALK, RESULTS], [])
    leak = next(i for h, i in _sections_of(RESULTS).items() if h.startswith("## Leakage"))
    assert f"OUT-05-{leak}<" not in twin.read_text()


def test_seed003s_page_shows_each_search_against_ftl(tmp_path):
    root = tmp_path / "seed003"
    page05 = _executed(RESULTS, root)
    searches = [_executed(TRUNC, root / f"search_{m}__run") for m in ("ttl", "lwft")]
    svcca = _executed(SVCCA, root / "run")
    html = results_page.export_results_page(page05, "seed003", [SVCCA, TRUNC],
                                            [svcca, *searches]).read_text()
    against = next(i for h, i in _sections_of(TRUNC).items() if "Against full transfer" in h)
    curves = next(i for h, i in _sections_of(SVCCA).items() if "coefficient curves" in h)
    assert html.count(f"OUT-09-{against}<") == 2 and html.count(f"OUT-10-{curves}<") == 1
    assert "search_ttl__run" in html and "search_lwft__run" in html
    grad_cam = next(i for h, i in _sections_of(TRUNC).items() if "Grad-CAM" in h)
    assert f"OUT-09-{grad_cam}<" not in html  # one section of each search, not the notebook


# --- a small profile's report notebooks, executed -----------------------------------------

def test_a_small_seed002_profile_runs_its_reports_and_its_page_shows_them(tmp_path, synth_root):
    """Two tiny runs (linear probe and CDTM probe) and the planned report notebooks through
    papermill, as `medtl run` runs them: 11 opens the CDTM run up, 12 lays the runs beside the
    paper, and the page shows 12's tables without seed 000's Table II. (00 and 01 and 12's
    Table VII, seven ViT-B / ConvNeXt-B built on the CPU, are left out for time.)"""
    data = synth_root("brain_tumor_mri", n_per_class=10, size=32)
    path = tmp_path / "tiny002.yaml"
    path.write_text(
        "name: tiny002\nreports: [11, 12]\n"
        f"data_dirs: {{brain_tumor_mri: '{data}'}}\n"
        "datasets: [brain_tumor_mri]\nmodels: [test_resnet]\n"
        "strategies: [linear_probe, cdtm_lp]\nseeds: [1]\n"
        "defaults: {weights: none, img_size: 32, epochs: 1, batch_size: 16, split: predefined}\n"
        "overrides: {cdtm_lp: {pool: tokens, head: cdtm, head_args: {centers: 4}}}\n")
    p = profiles.load_profile(path, runs_dir=tmp_path / "runs")
    steps = [s for s in profiles.plan(p) if s.name not in ("00_setup", "01_data_exploration")]
    assert [s.name for s in steps][-3:] == [CDTM, CDTM_RESULTS, RESULTS]
    steps[-2].parameters["measure_table_vii"] = False
    lines: list[str] = []
    profiles.run_steps(steps, len(steps), profiles.KERNEL, lines.append, export_html=True)
    assert [s.name for s in steps if s.status != "ok"] == [], "\n".join(lines)
    root = p.out_root
    profiles.export_html_report(root / f"{RESULTS}.ipynb", p.name, p)
    for name in (CDTM, CDTM_RESULTS):
        outs = [o for c in nbformat.read(str(root / f"{name}.ipynb"), as_version=4).cells
                if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outs if o.get("output_type") == "error"], name
    text = json.dumps([c.get("outputs") for c in nbformat.read(
        str(root / f"{CDTM_RESULTS}.ipynb"), as_version=4).cells if c.cell_type == "code"])
    assert "2 complete run(s)" in text and "Table VI (BreakHis 200X" in text
    html = (root / "results.html").read_text()
    assert "Seed 002&#39;s tables" in html or "Seed 002's tables" in html
    assert "Table VI (BreakHis 200X" in html and "Table II (seed 000)" not in html
    assert (root / f"{CDTM}.html").is_file() and 'href="11_cdtm.html"' in html
    assert not results_page.external_resources(html)
