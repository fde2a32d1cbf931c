"""The course in a real browser (issue 16): JupyterLab served on this machine, headless Chromium
(the Debian package, driven by Playwright), a student's clicks.

1. Notebook 02 opened in JupyterLab as the README says (`jupyter lab notebooks/`), Run All: no
   cell fails, the epoch slider is a live widget, and its figure follows the arrow keys (and comes
   back to the same picture) and a drag.
2. The smoke profile's `results.html` opened from disk with every request that would leave the
   machine aborted and recorded: nothing is requested, and the page is complete (title, images
   with alt text, Table II beside the paper, leakage result, walkthrough, links to every run).

Without Chromium these tests fail (never skip) and say how to install it; tests/run_tests.sh
installs it when it can (root / passwordless sudo with apt-get). MEDTL_CHROMIUM may name another
Chromium or Chrome. Deselect them with `-k "not browser"` when no browser can be had.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from browser_support import (
    chromium_page,
    copy_course,
    jupyter_lab,
    require_chromium,
    require_playwright,
)
from smoke_once import run_smoke_once

NB02 = "02_dual_monitor_walkthrough.ipynb"
KERNEL_START_S = 180  # a cold kernel importing torch on 2 shared cores
RUN_ALL_S = 300
STEP_S = 60  # one slider move: a round trip to the kernel and a redrawn figure

# ----------------------------------------------------------------------------- helpers (JS)

CODE_PROMPTS = """() => [...document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')]
    .map(e => e.textContent.trim())"""

# 'done': every code cell has an execution count; 'error': nothing queued or running any more and
# a traceback is on the page (Run All stops at a failing cell and unqueues the rest)
RUN_STATE = """() => {
  const prompts = [...document.querySelectorAll(
      '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')]
      .map(e => e.textContent.trim());
  if (!prompts.length || prompts.some(t => t.includes('*'))) return false;
  if (prompts.every(t => /\\[\\d+\\]/.test(t))) return 'done';
  const tb = [...document.querySelectorAll('.jp-OutputArea-output')]
      .some(e => /Traceback \\(most recent call last\\)/.test(e.textContent));
  return tb ? 'error' : false;
}"""

# per code cell: its prompt, the start of its source, and the text of any output that is a Python
# error (IPython renders an `error` output as a traceback on stderr)
CELL_ERRORS = """() => [...document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')].map((cell, i) => ({
  index: i,
  prompt: (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
  source: ((cell.querySelector('.jp-InputArea-editor') || {}).textContent || '').slice(0, 120),
  errors: [...cell.querySelectorAll('.jp-OutputArea-output')]
      .map(e => e.textContent)
      .filter(t => /Traceback \\(most recent call last\\)|^\\s*\\w+(Error|Exception)\\b/.test(t))
      .map(t => t.slice(0, 1500)),
})).filter(c => c.errors.length)"""

KERNEL_IDLE = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
    .some(e => /\\|\\s*Idle$/.test(e.textContent.trim()))"""

# the epoch slider's widget box: its handle value and the figure in the Output widget under it
SLIDER_STATE = """() => {
  const slider = [...document.querySelectorAll('.widget-slider')]
      .find(s => (s.querySelector('.widget-label') || {}).textContent === 'epoch');
  if (!slider) return null;
  const handle = slider.querySelector('.noUi-handle');
  const box = slider.closest('.widget-vbox') || slider.parentElement.parentElement;
  const out = box.querySelector('.widget-output');
  const img = out && out.querySelector('img');
  return {
    value: handle ? Number(handle.getAttribute('aria-valuenow')) : null,
    min: handle ? Number(handle.getAttribute('aria-valuemin')) : null,
    max: handle ? Number(handle.getAttribute('aria-valuemax')) : null,
    readout: (slider.querySelector('.widget-readout') || {}).textContent,
    src: img && img.complete && img.naturalWidth > 0 ? img.getAttribute('src') : null,
    text: out ? out.textContent : '',
  };
}"""


def _wait_figure(page, epoch: int, not_src: str | None = None, src: str | None = None) -> dict:
    """Wait until the slider stands at `epoch` and the Output widget under it shows a loaded
    figure (different from `not_src` / equal to `src`) and a sentence about that epoch."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            f"""([epoch, notSrc, src]) => {{
              const s = ({SLIDER_STATE})();
              if (!s || s.value !== epoch || !s.src) return false;
              if (notSrc !== null && s.src === notSrc) return false;
              if (src !== null && s.src !== src) return false;
              return new RegExp('\\\\bepoch ' + epoch + '\\\\b', 'i').test(s.text);
            }}""", arg=[epoch, not_src, src], timeout=STEP_S * 1000, polling=200)
    except PlaywrightTimeout:
        state = page.evaluate(SLIDER_STATE) or {}
        seen = {k: (v[:60] + "..." if isinstance(v, str) and len(v) > 60 else v)
                for k, v in state.items()}
        want = ("the same figure as before" if src else
                "a new figure" if not_src else "a figure")
        raise AssertionError(f"after {STEP_S}s the slider does not show epoch {epoch} with "
                             f"{want}; it shows {seen}") from None
    return page.evaluate(SLIDER_STATE)


class _Evidence:
    """On failure: a screenshot and the server log, printed so pytest shows where they are."""

    def __init__(self, page, folder: Path, lab=None, traffic=None):
        self.page, self.folder, self.lab, self.traffic = page, folder, lab, traffic

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            return False
        shot = self.folder / "failure.png"
        try:
            self.page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the page at the failure: {shot}")
        except Exception as e:  # the page may be gone
            print(f"(no screenshot: {e})")
        if self.traffic is not None:
            print("browser console errors:", self.traffic.console_errors[-10:])
            print("page errors:", self.traffic.page_errors[-10:])
        if self.lab is not None:
            print(f"JupyterLab log ({self.lab.log}):\n{self.lab.log_tail()}")
        return False


# ----------------------------------------------------------------------------- 1. JupyterLab


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium executable (checked before anything expensive starts)."""
    path = require_chromium()
    require_playwright()
    return path


def test_notebook_02_runs_in_jupyterlab_and_its_slider_redraws_the_figure(chromium, tmp_path):
    notebooks = copy_course(tmp_path / "course")
    n_cells = len(nbformat.read(str(notebooks / NB02), as_version=4).cells)

    with jupyter_lab(notebooks, tmp_path / "lab") as lab:
        server = urlparse(lab.url).netloc  # 127.0.0.1:PORT, for http:// and ws:// alike

        def allow(url: str) -> bool:
            return url.startswith(("data:", "blob:")) or urlparse(url).netloc == server

        with chromium_page(chromium, allow) as (page, traffic), \
                _Evidence(page, tmp_path, lab, traffic):
            page.set_default_timeout(60_000)
            page.goto(lab.lab_url(NB02))
            # the notebook is open (all its cells rendered) and its kernel has started
            page.wait_for_function(
                "n => document.querySelectorAll("
                "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell').length === n",
                arg=n_cells, timeout=KERNEL_START_S * 1000)
            page.wait_for_function(KERNEL_IDLE, timeout=KERNEL_START_S * 1000, polling=250)

            # Run > Run All Cells, as a student would
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator("#jp-mainmenu-run li.lm-Menu-item").filter(
                has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
            ).click()
            state = page.wait_for_function(RUN_STATE, timeout=RUN_ALL_S * 1000,
                                           polling=500).json_value()
            errors = page.evaluate(CELL_ERRORS)
            assert not errors, "cells failed in JupyterLab:\n" + "\n".join(
                f"cell {e['prompt']} {e['source']!r}:\n{e['errors'][0]}" for e in errors)
            assert state == "done", f"Run All stopped early: prompts {page.evaluate(CODE_PROMPTS)}"
            page.wait_for_function(KERNEL_IDLE, timeout=STEP_S * 1000, polling=250)

            # the slider is a live widget (not the static fallback) with a figure for its epoch
            body = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").inner_text()
            assert "Static view (" not in body, "step_through fell back to the static view"
            s0 = page.evaluate(SLIDER_STATE)
            assert s0 is not None, "no ipywidgets slider labelled 'epoch' on the page"
            assert s0["max"] > s0["min"], s0
            first = _wait_figure(page, s0["value"])
            e0 = first["value"]

            # keyboard: the focused handle, one step right -> the next epoch's figure
            slider = page.locator(".widget-slider").filter(
                has=page.locator(".widget-label", has_text=re.compile(r"^epoch$"))).first
            handle = slider.locator(".noUi-handle")
            handle.scroll_into_view_if_needed()
            handle.focus()
            page.keyboard.press("ArrowRight")
            right = _wait_figure(page, e0 + 1, not_src=first["src"])
            assert right["readout"].strip() == str(e0 + 1)

            # and back: the same picture as before
            page.keyboard.press("ArrowLeft")
            _wait_figure(page, e0, src=first["src"])

            # mouse: drag the handle to the end of the track -> the last epoch's figure
            track = slider.locator(".noUi-base").bounding_box()
            box = handle.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(track["x"] + track["width"] + 40, box["y"] + box["height"] / 2,
                            steps=8)
            page.mouse.up()
            last = _wait_figure(page, s0["max"], not_src=first["src"])
            assert last["src"] not in (first["src"], right["src"])

            assert not traffic.blocked, f"JupyterLab reached beyond this machine: {traffic.blocked}"


# ----------------------------------------------------------------------------- 2. results.html


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """The smoke profile as `bash run_all.sh` runs it (minutes; shared with any other module that
    asks smoke_once for it in the same session)."""
    run = run_smoke_once(tmp_path_factory)
    return run.profile, run.steps, run.lines


PAGE_FACTS = """() => ({
  title: document.title,
  images: [...document.images].map(i => ({
      alt: (i.getAttribute('alt') || '').trim(), src: (i.getAttribute('src') || '').slice(0, 40),
      complete: i.complete, width: i.naturalWidth, shown: i.getBoundingClientRect().width})),
  tables: [...document.querySelectorAll('table')].map(t => ({
      text: t.innerText, rows: t.querySelectorAll('tr').length,
      width: t.getBoundingClientRect().width})),
  links: [...document.querySelectorAll('a[href]')].map(a => ({
      href: a.getAttribute('href'), url: a.href, text: a.innerText.trim()})),
  scripts: [...document.querySelectorAll('script[src]')].map(s => s.getAttribute('src')),
  text: document.body.innerText,
})"""


# what nbconvert, or the kit's page builder, writes into an image output that has no alt text of
# its own: not a description
NO_DESCRIPTION = {"No description has been provided for this image"}
try:
    from medtl_lib.evaluation.results_page import FALLBACK_ALT

    NO_DESCRIPTION.add(FALLBACK_ALT)
except ImportError:
    pass


def _local(url: str) -> bool:
    return url.startswith(("file:", "data:", "blob:", "about:"))


@dataclass
class ResultsPage:
    profile: object
    facts: dict  # PAGE_FACTS of results.html as Chromium rendered it
    blocked: list[str]  # requests results.html made beyond file: / data: (all aborted)
    linked_pages: dict[str, list[str]]  # each linked local .html page -> its blocked requests


@pytest.fixture(scope="module")
def results_page(chromium, smoke_results, tmp_path_factory) -> ResultsPage:
    profile, steps, lines = smoke_results
    html = profile.out_root / "results.html"
    assert html.is_file(), "the smoke profile wrote no results.html:\n" + "\n".join(lines)
    shots = tmp_path_factory.mktemp("results_page")
    with chromium_page(chromium, _local) as (page, traffic), _Evidence(page, shots, None, traffic):
        page.goto(html.as_uri(), wait_until="load", timeout=60_000)
        # let late scripts try whatever they would fetch: wait until nothing is in flight
        page.wait_for_load_state("networkidle", timeout=60_000)
        facts = page.evaluate(PAGE_FACTS)
        page.screenshot(path=str(shots / "results.png"), full_page=True)
        result = ResultsPage(profile, facts, list(traffic.blocked), {})
        # the executed notebooks' HTML copies it links to, each opened the same way
        linked = {link["url"].split("#")[0] for link in facts["links"]}
        for url in sorted(u for u in linked if u.startswith("file:") and u.endswith(".html")
                          and u != html.as_uri() and Path(unquote(urlparse(u).path)).is_file()):
            before = len(traffic.blocked)
            page.goto(url, wait_until="load", timeout=60_000)
            page.wait_for_load_state("networkidle", timeout=60_000)
            result.linked_pages[url] = traffic.blocked[before:]
    return result


def test_results_page_requests_nothing_beyond_this_machine(results_page):
    assert not results_page.blocked, f"results.html asked the network for {results_page.blocked}"
    remote = [s for s in results_page.facts["scripts"] if not _local(s) and "://" in s]
    assert not remote, f"external <script src>: {remote}"


def test_results_page_has_a_real_title(results_page):
    profile, facts = results_page.profile, results_page.facts
    title = facts["title"].strip()
    assert title and title != "Notebook", f"title is {title!r}"
    assert profile.name.lower() in title.lower(), f"title {title!r} does not name '{profile.name}'"


def test_results_page_images_are_embedded_loaded_and_described(results_page):
    facts = results_page.facts
    images = facts["images"]
    assert len(images) >= 3, f"expected Fig. 3, the confusion grid and the walkthrough: {images}"
    for img in images:
        assert img["alt"] and img["alt"] not in NO_DESCRIPTION, \
            f"<img src={img['src']!r}...> has no alt text of its own: {img['alt']!r}"
        assert img["complete"] and img["width"] > 0, f"{img['alt']!r} did not load"
        assert img["src"].startswith("data:image/"), f"{img['alt']!r} is not embedded"


def test_results_page_shows_table_ii_beside_the_paper(results_page):
    facts = results_page.facts
    tables = [t for t in facts["tables"] if t["rows"] > 1 and t["width"] > 0]
    assert tables, "no rendered table on the page"
    datasets = ("SARS-COV-2", "BreaKHis", "Brain Tumor")
    table_ii = [t for t in tables if all(d.lower() in t["text"].lower() for d in datasets)]
    assert table_ii, "no table holds the Table II rows of all three datasets"
    paper_models = ("ResNet", "DenseNet", "ConvNeXt", "ViT")
    assert any(all(m.lower() in t["text"].lower() for m in paper_models) for t in table_ii), \
        "Table II does not show the paper's rows (ResNet, DenseNet, ConvNeXt, ViT) beside ours"
    assert re.search(r"synthetic", facts["text"], re.I), "the page does not say the data are synthetic"


def test_results_page_has_the_leakage_result_and_the_walkthrough(results_page):
    facts = results_page.facts
    leakage = [t for t in facts["tables"] if t["width"] > 0
               and "image-level" in t["text"].lower() and "grouped" in t["text"].lower()]
    assert leakage, "no table of the leakage result (image-level split beside the grouped split)"
    walkthrough = [i for i in facts["images"]
                   if re.search(r"walkthrough|dual.monitor", i["alt"], re.I)]
    assert walkthrough, "no figure of the dual-monitor walkthrough (notebook 02) on the page"


def test_results_page_links_every_run_to_its_executed_notebooks(results_page):
    profile, facts = results_page.profile, results_page.facts
    local = {}
    for link in facts["links"]:
        url = urlparse(link["url"])
        if url.scheme == "file":
            local[link["href"]] = Path(unquote(url.path))
    missing_targets = sorted(h for h, p in local.items() if not p.exists())
    assert not missing_targets, f"links to files that do not exist: {missing_targets}"
    for cfg in profile.runs:
        run = Path(cfg.out)
        linked = {p.stem for p in local.values() if p.parent == run}
        missing = {"03_train", "04_evaluate"} - linked
        assert not missing, f"{run.name}: no link to its executed {sorted(missing)}"


def test_pages_linked_from_results_request_nothing_beyond_this_machine(results_page):
    """The executed notebooks' HTML copies the page links to are opened offline in a lab too."""
    linked = results_page.linked_pages  # empty when the page links .ipynb files only
    reaching = {Path(urlparse(page).path).name: urls for page, urls in linked.items() if urls}
    assert not reaching, f"linked pages asked the network for: {reaching}"
