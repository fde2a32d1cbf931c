"""The results page: notebook 05 executed by papermill on hand-written profiles and exported to
results.html, as run_profile does; plus the course conventions of notebooks 05 and 06.

What the page promises: nothing loaded from outside the file (it must render with the network
cut off), every image a data URI with alt text, a real title, the paper's Table II cells even for
models the profile did not run, notebook 06's result, the walkthrough, relative links to every
run's executed notebooks, and on synthetic stand-ins the warning on every table and figure.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output  # noqa: E402

from medtl_lib import orchestration as profiles  # noqa: E402
from medtl_lib.evaluation.leakage_table import write_leakage_table  # noqa: E402
from medtl_lib.evaluation.plots import figure_png  # noqa: E402
from medtl_lib.evaluation.report import SYNTHETIC_NOTE  # noqa: E402
from medtl_lib.evaluation.results_page import (  # noqa: E402
    FALLBACK_ALT,
    export_notebook_html,
    external_resources,
    notebook_html,
)
from results_support import BRAIN, make_standin, write_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_05 = REPO / "notebooks" / "05_results.ipynb"
NOTEBOOK_06 = REPO / "notebooks" / "06_leakage.ipynb"
CT = ["COVID", "non-COVID"]
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _png(title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1])
    ax.set_title(title)
    data = figure_png(fig)
    plt.close(fig)
    return data


def _executed_notebook(path: Path, text: str) -> None:
    """A stand-in for an executed 03_train / 04_evaluate, with its HTML copy as run_profile
    writes it."""
    nb = new_notebook(cells=[new_code_cell("print('epoch 1')", outputs=[
        new_output("stream", name="stdout", text=text)])])
    nb.metadata["kernelspec"] = KERNELSPEC
    nbformat.write(nb, str(path))
    export_notebook_html(path)


def _profile(root: Path, data_root: Path, group_by: str, models: list[str]) -> None:
    for model in models:
        for dataset, classes, acc in (("brain_tumor_mri", BRAIN, 0.9), ("sarscov2_ct", CT, 0.85)):
            run = write_run(root, dataset, model, classes, acc, data_root, group_by=group_by)
            for nb in ("03_train", "04_evaluate"):
                _executed_notebook(run / f"{nb}.ipynb", f"{run.name} {nb}\n")


def _execute_05(root: Path, name: str, synthetic: bool, twin_dir: str = "") -> tuple[str, Path]:
    """05 with the parameters plan() gives it, then the page export run_profile does."""
    out = root / "05_results.ipynb"
    profiles.execute(NOTEBOOK_05, out, {
        "profile_dir": str(root), "figures_dir": str(root / "figures"), "profile_name": name,
        "description": f"the {name} test profile", "synthetic": synthetic, "page_dir": str(root),
        "twin_dir": twin_dir})
    page = profiles.export_html_report(out, name)
    return page.read_text(encoding="utf-8"), out


@pytest.fixture(scope="module")
def synthetic_page(tmp_path_factory):
    """A smoke-like profile on a stand-in: Lite0 only (no model of the paper), with notebook
    06's result and notebook 02's walkthrough figure."""
    base = tmp_path_factory.mktemp("synthetic")
    root = base / "runs" / "syn"
    _profile(root, make_standin(base / "data"), "duplicates", ["efficientnet_lite0"])
    (root / "figures").mkdir()
    (root / "figures" / "walkthrough.png").write_bytes(_png("walkthrough"))
    leak = pd.DataFrame({"split": ["image-level split, as the paper",
                                   "grouped split, leakage-corrected"],
                         "group_by": ["none", "duplicates"], "test_acc": [0.9, 0.8],
                         "test_acc_ci_low": [0.85, 0.72], "test_acc_ci_high": [0.95, 0.87],
                         "f1": [0.89, 0.79], "test_images": [100, 100],
                         "leaked_test_images": [30, 0], "leaked_share": [0.3, 0.0],
                         "synthetic": [True, True], "run": ["a", "b"]}).set_index("split")
    write_leakage_table(leak, root / "leakage")
    html, executed = _execute_05(root, "syn", synthetic=True)
    return html, root, executed


@pytest.fixture(scope="module")
def real_page(tmp_path_factory):
    """A paper-like profile on real data (no stamp), image-level split, with its grouped twin
    beside it; no leakage run, no walkthrough."""
    base = tmp_path_factory.mktemp("real")
    data = base / "data" / "brain_tumor_mri"
    data.mkdir(parents=True)
    _profile(base / "runs" / "paper", data, "none", ["resnet"])
    _profile(base / "runs" / "paper_grouped", data, "duplicates", ["resnet"])
    html, _ = _execute_05(base / "runs" / "paper", "paper", synthetic=False,
                          twin_dir=str(base / "runs" / "paper_grouped"))
    return html, base / "runs" / "paper"


def _imgs(html: str) -> list[dict[str, str]]:
    """Every <img>'s attributes, unescaped, as a browser reads them."""
    from html.parser import HTMLParser

    found: list[dict[str, str]] = []

    class Images(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                found.append({k: v or "" for k, v in attrs})

    Images().feed(html)
    return found


def _visible_text(html: str) -> str:
    """The page without its inline CSS and image data, for text checks."""
    html = re.sub(r"<style\b.*?</style>", "", html, flags=re.S)
    return re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,", html)


# --- offline, images, title -----------------------------------------------------------------

@pytest.mark.parametrize("which", ["synthetic_page", "real_page"])
def test_page_loads_nothing_from_outside(which, request):
    html = request.getfixturevalue(which)[0]
    assert external_resources(html) == []
    assert not re.search(r"<script\b[^>]*\bsrc\s*=", html, re.I)
    assert not re.search(r"<link\b[^>]*\bhref\s*=", html, re.I)
    attrs = r"\b(?:src|href|data|action|poster)\s*=\s*[\"']?([^\"'\s>]+)"
    for attr in re.findall(attrs, html, re.I):
        assert not re.match(r"(?:https?:)?//", attr, re.I), attr
    assert not re.search(r"url\(\s*[\"']?(?:https?:)?//", html, re.I)
    assert "require.js" not in html and "mathjax" not in html.lower()


def test_every_image_is_embedded_with_alt_text(synthetic_page):
    html = synthetic_page[0]
    imgs = _imgs(html)
    assert len(imgs) == 4  # leakage chart, Fig. 3, confusion grid, walkthrough
    for img in imgs:
        assert re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/=]{100,}", img["src"])
        assert len(img.get("alt", "").strip()) > 20 and img["alt"] != FALLBACK_ALT
    alts = " | ".join(i["alt"] for i in imgs)
    assert "Bar chart of test accuracy by split" in alts and "Fig. 3" in alts
    assert "confusion matrices" in alts and "Dual-monitor walkthrough" in alts


def test_page_has_a_real_title(synthetic_page, real_page):
    assert re.findall(r"<title>(.*?)</title>", synthetic_page[0]) == ["syn results"]
    assert re.findall(r"<title>(.*?)</title>", real_page[0]) == ["paper results"]


# --- content ---------------------------------------------------------------------------------

def test_paper_cells_appear_for_models_the_profile_did_not_run(synthetic_page):
    text = _visible_text(synthetic_page[0])
    # Table II's brain MRI ConvNeXt row (val 99.53%, test 99.16%) and CT ViT (test 91.57%)
    for cell in ("— / 99.53% (—)", "— / 99.16% (—)", "— / 91.57% (—)"):
        assert cell in text
    assert "EfficientNet-Lite0" in text and "Table II" in text
    assert re.search(r"\d+\.\d\d% \[\d+\.\d\d, \d+\.\d\d\] / — \(—\)", text)  # ours, interval
    assert "seeded percentile bootstrap over the test images (2000 resamples" in text


def test_synthetic_label_on_header_tables_and_figures(synthetic_page):
    html, _, executed = synthetic_page
    text = _visible_text(html)
    head = text[:text.index("Table II")]
    assert "Synthetic stand-in data — numbers say nothing about the real task" in head
    for heading in ("Table II (seed 000)", "Leakage: one model, two splits",
                    "Notebook 02: Algorithm 1"):
        at = text.index(heading)
        assert SYNTHETIC_NOTE in text[at:at + 300], heading
    for img in _imgs(html)[:3]:  # leakage, Fig. 3, confusion grid: in their alt text
        assert SYNTHETIC_NOTE in img["alt"]
    figures = executed.parent / "figures"
    assert (figures / "fig3_curves.png").stat().st_size > 5_000
    assert (figures / "confusion_grid.png").stat().st_size > 5_000


def test_real_data_page_carries_no_synthetic_label_and_both_protocols(real_page):
    text = _visible_text(real_page[0])
    assert SYNTHETIC_NOTE not in text and "synthetic stand-in" not in text.lower()
    assert "| real |" in text or ">real<" in text
    mine, twin = text.index("Table II (seed 000)"), text.index("Table II of the twin profile")
    assert "image-level split, as the paper" in text[mine:mine + 300]
    assert "grouped split, leakage-corrected" in text[twin:twin + 300]
    assert "Test accuracy under both protocols" in text
    assert "did not run notebook 06" in text and "No walkthrough figure yet" in text


def test_header_says_which_profile_when_and_on_what_data(synthetic_page):
    text = _visible_text(synthetic_page[0])
    assert "Results of profile <code>syn</code>" in text and "the syn test profile" in text
    assert "Page made:" in text and "runs finished" in text
    assert "synthetic stand-in</strong>" in text and "Brain Tumor" in text


def test_leakage_result_and_links_to_every_runs_notebooks(synthetic_page):
    html, root, _ = synthetic_page
    text = _visible_text(html)
    assert "image-level split, as the paper" in text and "0.900 [0.850, 0.950]" in text
    hrefs = [unquote(h) for h in re.findall(r'<a\b[^>]*\bhref="([^"#][^"]*)"', html)]
    assert hrefs
    for href in hrefs:  # relative, and each opens a file beside the page
        assert not re.match(r"[a-z]+:|/", href), href
        assert (root / href).is_file(), href
    for run in ("brain_tumor_mri__efficientnet_lite0", "sarscov2_ct__efficientnet_lite0"):
        for nb in ("03_train", "04_evaluate"):
            assert f"{run}/{nb}.html" in hrefs and f"{run}/{nb}.ipynb" in hrefs
    assert "results.csv" in hrefs and "table_ii.csv" in hrefs


def test_notebook_05_writes_the_table_files(synthetic_page):
    root = synthetic_page[1]
    results = pd.read_csv(root / "results.csv")
    assert sorted(results["run"]) == ["brain_tumor_mri__efficientnet_lite0",
                                      "sarscov2_ct__efficientnet_lite0"]
    assert results["synthetic"].all() and results["test_accuracy_ci_low"].notna().all()
    table = pd.read_csv(root / "table_ii.csv")
    assert len(table) == 15 + 2 and table["test_acc_paper"].notna().sum() == 15


def test_exercises_run_but_stay_off_the_page(synthetic_page):
    html, _, executed = synthetic_page
    assert "Learning objectives" not in html and "Solution to exercise" not in html
    assert "Exercise 1" not in html
    nb = nbformat.read(str(executed), as_version=4)
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) == 2
    out = "".join(o.get("text", "") for c in solutions for o in c.outputs)
    assert "The fewer test images, the wider the interval" in out
    assert "No row has both" in out  # the profile trains no model of the paper


# --- the exporter on its own ------------------------------------------------------------------

def _notebook_with_images(path: Path) -> Path:
    import base64

    data = base64.b64encode(_png("x")).decode()
    nb = new_notebook(cells=[
        new_markdown_cell("# A title"),
        new_code_cell("plot()", outputs=[
            new_output("display_data", data={"image/png": data, "text/plain": "<Figure>"}),
            new_output("display_data", data={"image/png": data},
                       metadata={"image/png": {"alt": 'a "quoted" <alt>'}})])])
    nb.metadata["kernelspec"] = KERNELSPEC
    nbformat.write(nb, str(path))
    return path


def test_nbconvert_default_would_load_from_a_cdn_ours_does_not(tmp_path: Path):
    from nbconvert import HTMLExporter

    path = _notebook_with_images(tmp_path / "n.ipynb")
    default, _ = HTMLExporter().from_filename(str(path))
    assert external_resources(default)  # require.js / MathJax from a CDN: what the issue saw
    ours = notebook_html(path, "n")
    assert external_resources(ours) == []
    assert [i["alt"] for i in _imgs(ours)] == [FALLBACK_ALT, 'a "quoted" <alt>']
    assert "<title>n</title>" in ours


def test_external_resources_finds_each_kind_of_load():
    page = ('<script src="https://cdn/x.js"></script><link rel="stylesheet" href="//cdn/s.css">'
            '<img src="pic.png" alt="a"><img src="data:image/png;base64,AAAA" alt="b">'
            '<style>/* see https://docs */ body { background: url(http://x/bg.png) }'
            '@import "theme.css";</style><a href="https://elsewhere">link</a>')
    assert external_resources(page) == ["//cdn/s.css", "http://x/bg.png", "https://cdn/x.js",
                                        "pic.png", "theme.css"]


# --- course conventions of 05 and 06 -------------------------------------------------------------

@pytest.mark.parametrize("path", [NOTEBOOK_05, NOTEBOOK_06], ids=lambda p: p.stem)
def test_course_conventions(path: Path):
    nb = nbformat.read(str(path), as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    assert first.source.startswith(f"# {path.stem[:2]} · ")
    for part in ("**Learning objectives.** After this notebook you can", "**Time:** about",
                 "**Prerequisites:**"):
        assert part in first.source, part
    assert len([c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]) == 1
    exercises = [i for i, c in enumerate(nb.cells)
                 if c.cell_type == "markdown" and c.source.startswith("### Exercise ")]
    assert exercises
    for k, i in enumerate(exercises, 1):
        assert nb.cells[i].source.startswith(f"### Exercise {k}: ")
        solution = nb.cells[i + 1]
        assert solution.cell_type == "code" and "solution" in solution.metadata["tags"]
        assert solution.metadata["jupyter"] == {"source_hidden": True}
        assert solution.source.splitlines()[0] == f"# Solution to exercise {k}"


def test_notebook_05_runs_with_its_defaults_from_the_notebooks_folder(tmp_path: Path):
    """As a student opens it (JupyterLab runs it in notebooks/): relative paths are the
    repository's, and without runs it shows the paper's table and says how to get runs."""
    out = tmp_path / "05.ipynb"
    profiles.execute(NOTEBOOK_05, out, {})  # cwd: notebooks/
    nb = nbformat.read(str(out), as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = str(outputs)
    assert "Table II (seed 000)" in text and "99.16%" in text


def test_run_profile_writes_an_html_copy_of_each_executed_notebook(tmp_path: Path):
    """run_profile's step hook: a copy beside each executed notebook, rewritten only when the
    notebook is newer, and a notebook that cannot be exported is reported, not fatal."""
    import os

    nb = tmp_path / "run" / "03_train.ipynb"
    nb.parent.mkdir()
    _executed_notebook(nb, "epoch 1: loss 0.5\n")
    html = nb.with_suffix(".html")
    html.unlink()
    step = profiles.Step("run/03_train", nb, nb, {})
    profiles.export_step_html(step, log=print)
    page = html.read_text()
    assert "epoch 1: loss 0.5" in page and "<title>run · 03_train</title>" in page
    os.utime(html, (1, 1))  # older than the notebook: stale, written again
    profiles.export_step_html(step, log=print)
    assert html.stat().st_mtime > 1
    broken = profiles.Step("x/04_evaluate", nb, tmp_path / "run" / "04_evaluate.ipynb", {})
    broken.output.write_text("{not a notebook")
    lines: list[str] = []
    profiles.export_step_html(broken, log=lines.append)
    assert lines and "no HTML copy of 04_evaluate.ipynb" in lines[0]
    assert not broken.output.with_suffix(".html").exists()
