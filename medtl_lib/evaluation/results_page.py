"""The results page (``runs/<profile>/results.html``) and the HTML copies of executed notebooks.

Why a template of our own: nbconvert's default ``lab`` template loads require.js, MathJax and
mermaid from a CDN. In a lab with no network (or a blocked one) the page must not reach out at
all, so :data:`OFFLINE_TEMPLATE` extends ``lab`` and empties exactly those blocks; the CSS is
inlined by nbconvert already and every figure is a PNG output, i.e. a data URI. It also gives
each image the alt text the notebook attached to it (nbconvert's own template drops it).

The page content itself is notebook 05's output; the helpers here write its header (which
profile, when, on what data) and its links to every run's executed notebooks. Notebook 05's
Table II, leakage and walkthrough sections are seed 000's results: a profile whose ``reports:``
leave out that paper's notebooks (05, 06, 02) gets a page without them, and the page shows its
own report notebooks' results in their place (:func:`export_results_page`, :data:`PAGE_EXCERPTS`).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from .. import run_folder as rf
from .report import SYNTHETIC_NOTE, dataset_name, split_protocol

RESULTS_HTML = "results.html"
RUN_NOTEBOOKS: tuple[str, ...] = ("03_train", "04_evaluate")
COURSE_NOTEBOOKS: tuple[str, ...] = ("00_setup", "01_data_exploration",
                                     "02_dual_monitor_walkthrough", "06_leakage",
                                     "07_strategies", "08_strategy_comparison", "11_cdtm",
                                     "12_cdtm_results", "13_init_settings",
                                     "14_confidence_intervals")
# Notebook 05's sections (by the start of their headings) that show the results of a seed 000
# report notebook: left off the page of a profile whose reports do not list that notebook.
SEED000_SECTIONS: dict[str, tuple[str, ...]] = {
    "05_results": ("Table II", "Protocol"),
    "06_leakage": ("Leakage",),
    "02_dual_monitor_walkthrough": ("Algorithm 1",),
}
# What the results page shows of another paper's report notebook (by the start of its section
# headings, a leading "2 · " ignored): None, every section before its exercises; a notebook not
# named here (07, 11, 14: one run opened up, for teaching) is linked from the page, not shown.
PAGE_EXCERPTS: dict[str, tuple[str, ...] | None] = {
    "08_strategy_comparison": None,  # seed 001's table, every seed, against full, the claims
    "09_truncation": ("Against full transfer",),  # seed 003: each search's cut against FTL
    "10_representations": ("The coefficient curves",),  # seed 003's Fig. 4(i) per FTL run
    "12_cdtm_results": None,  # seed 002's Tables VI-VIII, VII measured, Fig. 6, the F1
    "13_init_settings": None,  # seed 004's model x setting, the gain, claims, size, ranks
}
FALLBACK_ALT = "figure of this notebook cell (it carries no description)"
# Cells that teach rather than report (objectives, exercises, solutions): the course notebook
# keeps them, the results page leaves them out.
PAGE_HIDDEN_TAGS: tuple[str, ...] = ("course_only", "solution")
TEMPLATE_NAME = "medtl_offline.html.j2"

# nbconvert's lab template minus every resource it would fetch from outside the file.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<style type="text/css">
  /* after the lab CSS: a wide table scrolls inside its output instead of overflowing the page */
  .jp-OutputArea-output { overflow-x: auto; }
  .jp-RenderedHTMLCommon table { margin-bottom: 0.6em; }
</style>
{%- endblock html_head_css -%}
{% block data_png scoped %}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
{%- set alt = (output | get_metadata('alt', 'image/png')) or '""" + FALLBACK_ALT + """' %}
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}"
 alt="{{ alt | escape_html }}">
</div>
{%- endblock data_png %}
{% block data_jpg scoped %}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
{%- set alt = (output | get_metadata('alt', 'image/jpeg')) or '""" + FALLBACK_ALT + """' %}
<img src="data:image/jpeg;base64,{{ output.data['image/jpeg'] | escape_html }}"
 alt="{{ alt | escape_html }}">
</div>
{%- endblock data_jpg %}
"""

# A resource the browser would fetch: src / href of script, link, img, iframe, audio, video,
# source, embed, object data, CSS url(...) and @import. Plain <a href> links are navigation,
# not loads, and stay allowed (relative ones point at the run notebooks).
_LOADS = [
    re.compile(r"<(?:script|img|iframe|audio|video|source|embed|track|input)\b[^>]*?\bsrc\s*=\s*"
               r"[\"']?([^\"'\s>]+)", re.I),
    re.compile(r"<link\b[^>]*?\bhref\s*=\s*[\"']?([^\"'\s>]+)", re.I),
    re.compile(r"<object\b[^>]*?\bdata\s*=\s*[\"']?([^\"'\s>]+)", re.I),
    re.compile(r"url\(\s*[\"']?([^\"')\s]+)", re.I),
    re.compile(r"@import\s+(?:url\()?\s*[\"']?([^\"')\s;]+)", re.I),
    re.compile(r"\bimport\(\s*[\"']([^\"']+)", re.I),
]


def external_resources(html: str) -> list[str]:
    """Every resource the page would load from outside itself (anything but a ``data:`` URI or
    an in-page ``#fragment``). An empty list: the page renders with the network cut off."""
    html = re.sub(r"/\*.*?\*/", "", html, flags=re.S)  # CSS comments cite URLs, load none
    found = []
    for pattern in _LOADS:
        for target in pattern.findall(html):
            if not target.lower().startswith(("data:", "#")):
                found.append(target)
    return sorted(set(found))


def _exporter(exclude_input: bool, remove_tags: tuple[str, ...] = ()):
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter(extra_loaders=[DictLoader({TEMPLATE_NAME: OFFLINE_TEMPLATE})],
                            template_file=TEMPLATE_NAME)
    if remove_tags:
        exporter.register_preprocessor(
            TagRemovePreprocessor(remove_cell_tags=set(remove_tags), enabled=True), enabled=True)
    exporter.embed_images = True  # a markdown image becomes a data URI too
    exporter.exclude_input = exclude_input
    exporter.exclude_input_prompt = exclude_input
    exporter.exclude_output_prompt = exclude_input
    return exporter


def notebook_html(notebook, title: str, exclude_input: bool = False,
                  remove_tags: tuple[str, ...] = (), folder: str | Path | None = None) -> str:
    """An executed notebook (a path, or a notebook node whose relative links resolve against
    ``folder``) as one self-contained HTML page (cells tagged with one of ``remove_tags`` left
    out); raises if anything in it would still load from outside (a new nbconvert template
    block, an output that links a script)."""
    import nbformat

    if isinstance(notebook, (str, os.PathLike)):
        nb, folder = nbformat.read(str(notebook), as_version=4), Path(notebook).parent
    else:
        nb, notebook = notebook, f"the page in {folder}"
    nb.metadata["title"] = title
    body, _ = _exporter(exclude_input, remove_tags).from_notebook_node(
        nb, resources={"metadata": {"path": str(folder or ".")}})
    outside = external_resources(body)
    if outside:
        raise RuntimeError(f"{notebook}: the HTML export would load {outside[:3]} from outside "
                           "the page; it must render offline")
    return body


def export_notebook_html(notebook: str | Path, target: str | Path | None = None,
                         title: str = "", exclude_input: bool = False) -> Path:
    """Write ``notebook`` as HTML beside it (``03_train.ipynb`` -> ``03_train.html``), so a
    reader without Jupyter can open every executed notebook from the results page."""
    notebook = Path(notebook)
    target = Path(target) if target else notebook.with_suffix(".html")
    run = notebook.parent.name
    html = notebook_html(notebook, title or f"{run} · {notebook.stem}", exclude_input)
    target.write_text(html, encoding="utf-8")
    return target


def html_is_stale(notebook: Path) -> bool:
    """The notebook exists and its HTML copy is missing or older."""
    html = notebook.with_suffix(".html")
    return notebook.is_file() and (not html.is_file()
                                   or html.stat().st_mtime < notebook.stat().st_mtime)


def _relative(target: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(target, page_dir)).as_posix()


def notebook_link(notebook: Path, page_dir: Path) -> str:
    """Markdown links to a notebook's HTML copy (readable without Jupyter) and the .ipynb,
    relative to the page; '—' when neither exists."""
    html = notebook.with_suffix(".html")
    links = []
    if html.is_file():
        links.append(f"[{notebook.stem}]({_relative(html, page_dir)})")
    if notebook.is_file():
        links.append(f"[{'ipynb' if links else notebook.stem + '.ipynb'}]"
                     f"({_relative(notebook, page_dir)})")
    return " · ".join(links) if links else "—"


def run_links_markdown(runs: pd.DataFrame, profile_dir: str | Path,
                       page_dir: str | Path) -> str:
    """A row per run folder: its identity, status, split and links to its executed
    03_train / 04_evaluate (HTML and notebook), then the profile's executed course notebooks."""
    profile_dir, page_dir = Path(profile_dir), Path(page_dir)
    lines = ["| run | status | split | test accuracy | " + " | ".join(RUN_NOTEBOOKS) + " |",
             "|---|---|---|---|" + "---|" * len(RUN_NOTEBOOKS)]
    for _, r in runs.iterrows():
        run = Path(r["path"])
        acc = "—" if pd.isna(r.get("test_acc")) else f"{r['test_acc']:.3f}"
        cells = [f"`{run.name}`", str(r["status"]), str(r.get("split") or "—"), acc]
        cells += [notebook_link(run / f"{nb}.ipynb", page_dir) for nb in RUN_NOTEBOOKS]
        lines.append("| " + " | ".join(cells) + " |")
    if runs.empty:
        lines.append("| (no run folder yet) | | | |" + " |" * len(RUN_NOTEBOOKS))
    course = [notebook_link(profile_dir / f"{nb}.ipynb", page_dir) for nb in COURSE_NOTEBOOKS
              if (profile_dir / f"{nb}.ipynb").is_file()]
    text = "\n".join(lines) + "\n"
    if course:
        text += "\nThe profile's executed course notebooks: " + ", ".join(course) + ".\n"
    return text


def _display_path(path: str) -> str:
    """A data folder as the reader should see it: relative to the kit when inside it."""
    from ..paths import repo_root

    try:
        return Path(path).resolve().relative_to(repo_root().resolve()).as_posix()
    except (ValueError, OSError):
        return path


def _images(run_dir: Path) -> int | None:
    try:
        return int(rf.read_json(run_dir / rf.DATA_IDENTITY)["images"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def data_markdown(runs: pd.DataFrame) -> str:
    """A row per dataset the runs trained on: its folder, image count, real or synthetic and
    the split protocol."""
    if runs.empty:
        return "No run folder yet, so no data to describe.\n"
    lines = ["| dataset | data folder | images | real or synthetic | split |",
             "|---|---|---|---|---|"]
    for dataset, group in runs.groupby("dataset", sort=False):
        roots = sorted({str(r) for r in group["data_root"] if isinstance(r, str) and r})
        counts = sorted({n for n in (_images(Path(p)) for p in group["path"]) if n is not None})
        synthetic = bool(group["synthetic"].fillna(False).astype(bool).any())
        splits = sorted({str(s) for s in group["split"].dropna()})
        lines.append(" | ".join([
            f"| {dataset_name(dataset)}",
            ", ".join(f"`{_display_path(r)}`" for r in roots) or "—",
            ", ".join(str(n) for n in counts) or "—",
            "**synthetic stand-in**" if synthetic else ("real" if roots else "not recorded"),
            "; ".join(splits) or "—"]) + " |")
    return "\n".join(lines) + "\n"


def runs_synthetic(runs: pd.DataFrame) -> bool:
    """Any run of the frame trained on a synthetic stand-in."""
    return bool(len(runs)) and bool(runs["synthetic"].fillna(False).astype(bool).any())


def _finished(runs: pd.DataFrame) -> tuple[str, str] | None:
    times = []
    for p in runs.get("path", []):
        m = rf.path(p, rf.METRICS)
        if m.is_file():
            times.append(dt.datetime.fromtimestamp(m.stat().st_mtime))
    if not times:
        return None
    return (min(times).strftime("%Y-%m-%d %H:%M"), max(times).strftime("%Y-%m-%d %H:%M"))


def header_markdown(profile_name: str, runs: pd.DataFrame, description: str = "",
                    synthetic: bool = False, now: dt.datetime | None = None) -> str:
    """The top of the results page: which profile, when, on what data, and, on stand-ins,
    the warning that the numbers say nothing about the real task."""
    now = now or dt.datetime.now()
    title = f"# Results of profile `{profile_name}`"
    parts = [title]
    if synthetic:
        parts.append(f"> **{SYNTHETIC_NOTE[0].upper() + SYNTHETIC_NOTE[1:]}.** Every model here "
                     "trained on procedural images made by `medtl_lib.data.synthetic`: the page "
                     "checks that the pipeline runs end to end, not the paper.")
    if description:
        parts.append(description.strip())
    complete = int((runs["status"] == "complete").sum()) if len(runs) else 0
    when = _finished(runs)
    parts.append(f"- **Page made:** {now.strftime('%Y-%m-%d %H:%M')}"
                 + (f"; runs finished {when[0]}" + (f" to {when[1]}" if when[1] != when[0] else "")
                    if when else "")
                 + f"\n- **Runs:** {complete} complete of {len(runs)} run folder(s)")
    parts.append("**Data**\n\n" + data_markdown(runs))
    return "\n\n".join(parts) + "\n"


def caption(text: str, synthetic: bool = False, protocols: Iterable[str] = ()) -> str:
    """A table or figure caption with the split protocol(s) and, on stand-ins, the warning."""
    bits = [text.rstrip(".")]
    protocols = [p for p in dict.fromkeys(protocols) if p]
    if protocols:
        bits.append("; ".join(protocols))
    if synthetic:
        bits.append(SYNTHETIC_NOTE)
    return " — ".join(bits) + "."


def protocols_of(runs: pd.DataFrame) -> list[str]:
    """The split protocols of the complete runs, e.g. ['image-level split, as the paper']."""
    if runs.empty:
        return []
    done = runs[runs["status"] == "complete"]
    return [split_protocol(g) for g in dict.fromkeys(done["group_by"].dropna())]


def profile_title(profile_name: str) -> str:
    return f"{profile_name} results"


def export_results_page(executed: str | Path, profile_name: str = "",
                        reports: Iterable[str] | None = None,
                        report_notebooks: Iterable[str | Path] = ()) -> Path:
    """Notebook 05's executed copy as ``results.html`` beside it: no code, nothing loaded from
    outside, titled '<profile> results'.

    ``reports`` (the profile's report notebooks, ``Profile.reports``): notebook 05's sections of
    a seed 000 report the profile does not list are left out (:data:`SEED000_SECTIONS`: Table II
    and the protocol without ``05_results``, the leakage without ``06_leakage``, the walkthrough
    without ``02_dual_monitor_walkthrough``), and the results of ``report_notebooks`` (executed
    copies; :data:`PAGE_EXCERPTS` says what of each) take Table II's place, each headed by a link
    to its whole executed copy. None: the page is notebook 05 as it ran."""
    import nbformat

    executed = Path(executed)
    name = profile_name or _executed_parameter(executed, "profile_name") or executed.parent.name
    target = executed.parent / RESULTS_HTML
    page = executed
    if reports is not None:
        page = compose_page(nbformat.read(str(executed), as_version=4), set(reports),
                            [Path(p) for p in report_notebooks], executed.parent)
    target.write_text(notebook_html(page, profile_title(name), exclude_input=True,
                                    remove_tags=PAGE_HIDDEN_TAGS, folder=executed.parent),
                      encoding="utf-8")
    return target


_HEADING = re.compile(r"^(#{2,6})\s+(.*)")


def _heading(cell) -> tuple[int, str] | None:
    """(level, title) of a markdown cell that opens with a heading of level 2 or deeper; the
    title without a leading section number ("2 · ")."""
    if cell.get("cell_type") != "markdown":
        return None
    lines = cell.source.lstrip().splitlines()
    m = _HEADING.match(lines[0]) if lines else None
    if not m:
        return None
    return len(m.group(1)), re.sub(r"^\d+\s*·\s*", "", m.group(2)).strip()


def _sections(cells: list) -> list[tuple[tuple[int, str] | None, list]]:
    """The cells cut at every heading of level 2 or deeper: [(heading or None, cells)], the
    cells before the first heading first (with heading None)."""
    out: list[tuple[tuple[int, str] | None, list]] = [(None, [])]
    for cell in cells:
        head = _heading(cell)
        if head is not None:
            out.append((head, [cell]))
        else:
            out[-1][1].append(cell)
    return out


def _starts(title: str, prefixes: Iterable[str]) -> bool:
    return any(title.lower().startswith(p.lower()) for p in prefixes)


def _demoted(cell, levels: int):
    """A copy of a markdown cell with its headings ``levels`` deeper (negative: higher), h2 to
    h6."""
    import copy

    cell = copy.deepcopy(cell)
    cell.source = re.sub(r"(?m)^(#{1,6})(?=\s)",
                         lambda m: "#" * max(2, min(6, len(m.group(1)) + levels)), cell.source)
    return cell


def _title(nb, fallback: str) -> str:
    """A notebook's title, its first line without the '#': '12 · Seed 002's tables, ...'."""
    first = nb.cells[0].source.strip().splitlines() if nb.cells else []
    return re.sub(r"^#+\s*", "", first[0]) if first else fallback


def report_excerpt(executed: Path, level: int = 3, nb=None) -> list:
    """The cells of an executed report notebook that the results page shows (the sections
    :data:`PAGE_EXCERPTS` names, their headings at ``level``; none for a notebook not named
    there or not executed). ``nb``: the notebook already read from ``executed``."""
    import nbformat

    stem = executed.stem
    if stem not in PAGE_EXCERPTS or not executed.is_file():
        return []
    nb = nb if nb is not None else nbformat.read(str(executed), as_version=4)
    wanted, cells, chosen = PAGE_EXCERPTS[stem], [], []
    for head, part in _sections(nb.cells):
        if head is None:
            if wanted is None:  # what the notebook shows before its first section (run counts)
                cells += [c for c in part if c.cell_type == "code" and not {
                    "parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
            continue
        if wanted is None and _starts(head[1], ("Exercise",)):
            break
        if wanted is None or _starts(head[1], wanted):
            chosen.append((head[0], part))
    shift = level - min((lvl for lvl, _ in chosen), default=level)  # the top one at ``level``
    for _, part in chosen:
        cells += [_demoted(c, shift) if c.cell_type == "markdown" else c for c in part]
    return cells


def reports_markdown_cells(report_notebooks: list[Path], page_dir: Path) -> list:
    """The page's part for the profile's report notebooks: per notebook (in the given order) a
    heading with its title and links to its executed copies, then its excerpt; a notebook run
    once per run or search (09, 10) gets a sub-heading per folder."""
    import nbformat

    by_stem: dict[str, list[Path]] = {}
    for path in report_notebooks:
        if path.stem in PAGE_EXCERPTS and path.is_file():
            by_stem.setdefault(path.stem, []).append(path)
    cells = []
    for stem, paths in by_stem.items():
        nbs = [nbformat.read(str(p), as_version=4) for p in paths]  # each read once
        per_folder = len(paths) > 1 or paths[0].parent != page_dir
        links = ", ".join(notebook_link(p, page_dir).replace(f"[{stem}]", f"[{p.parent.name}]")
                          if per_folder else notebook_link(p, page_dir) for p in paths)
        title = _title(nbs[0], stem)
        cells.append(nbformat.v4.new_markdown_cell(
            f"## {title}\n\nNotebook {stem[:2]}'s results for this profile, from its "
            f"executed cop{'ies' if len(paths) > 1 else 'y'} (the whole notebook: {links})."))
        for path, nb in zip(paths, nbs):
            if per_folder:
                cells.append(nbformat.v4.new_markdown_cell(f"### `{path.parent.name}`"))
            cells += report_excerpt(path, level=4 if per_folder else 3, nb=nb)
    return cells


def compose_page(nb, reports: set[str], report_notebooks: list[Path], page_dir: Path):
    """Notebook 05's executed cells for a profile whose report notebooks are ``reports``: its
    sections of seed 000 reports not among them left out, and the profile's report notebooks'
    results (:func:`reports_markdown_cells`) where Table II stands: before 05's first section
    after Table II and its protocol."""
    import copy

    import nbformat

    drop = tuple(p for report, prefixes in SEED000_SECTIONS.items() if report not in reports
                 for p in prefixes)
    extra = reports_markdown_cells(report_notebooks, page_dir)
    sections = _sections(nb.cells)
    if not extra and not any(head and _starts(head[1], drop) for head, _ in sections):
        return nb  # a seed 000 profile's page: notebook 05 as it ran
    cells, placed, orphaned = [], not extra, False
    for head, part in sections:
        if (not placed and head is not None and head[0] == 2
                and not _starts(head[1], SEED000_SECTIONS["05_results"])):
            cells += extra
            placed = True
        if head is not None and head[0] == 2:
            orphaned = _starts(head[1], drop)  # its kept subsections move up a level
        if head is None or not _starts(head[1], drop):
            cells += ([_demoted(part[0], -1), *part[1:]] if orphaned and head[0] > 2 else part)
    if not placed:
        cells += extra
    page = nbformat.v4.new_notebook(metadata=copy.deepcopy(nb.metadata))
    for i, cell in enumerate(cells):  # cells of several notebooks: fresh ids, no duplicates
        cell = copy.deepcopy(cell)
        cell["id"] = f"page-{i}"
        page.cells.append(cell)
    return page


def _executed_parameter(executed: Path, name: str) -> str:
    """A parameter papermill injected into an executed notebook (its metadata keeps them)."""
    try:
        nb = json.loads(executed.read_text())
        return str(nb["metadata"]["papermill"]["parameters"].get(name) or "")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""


def file_links_markdown(files: dict[str, Path], page_dir: str | Path) -> str:
    """Links to the written table files, relative to the page."""
    if not files:
        return "No run folders yet, so no table files.\n"
    return "Written: " + ", ".join(f"[`{name}`]({_relative(Path(path), Path(page_dir))})"
                                   for name, path in files.items()) + ".\n"
