"""The report notebooks a profile declares (``reports:``, else its ``paper:``, else its shape),
and what each needs; :mod:`.plan` turns them into steps.

Report notebooks: ``reports:`` lists what runs after the training runs, by name or number::

    reports: [11_cdtm, 12_cdtm_results]   # or [11, 12]

==============================  =========  =================================================
report                          paper      runs with
==============================  =========  =================================================
02_dual_monitor_walkthrough     seed 000   the first run (``walkthrough: simulated``: none)
05_results                      seed 000   Table II (the page always runs 05, see below)
06_leakage                      seed 000   the profile's ``leakage:`` section (required)
07_strategies                   seed 001   the first run's seed, the profile's YAML
08_strategy_comparison          seed 001   the profile folder
09_truncation                   seed 003   each of ``searches:`` (required), in its folder
10_representations              seed 003   each run of the first strategy (the FTL baseline)
11_cdtm                         seed 002   the first run with ``head: cdtm`` (required)
12_cdtm_results                 seed 002   the profile folder
13_init_settings                seed 004   the profile folder (``settings:`` required)
14_confidence_intervals         seed 004   the first run (and a sibling on its test images)
==============================  =========  =================================================

A plan runs the per-run and per-search ones first (10, 09), then the profile's in the table's
order, and ``05_results`` always last: it builds the results page of every profile. Listing
``05_results`` puts seed 000's Table II and its protocol section on that page; without it the
page leaves them out (and 05's walkthrough and leakage sections without 02 and 06) and shows the
listed reports' results instead (:func:`medtl_lib.evaluation.results_page.export_results_page`),
so a seed 002 profile's page shows seed 002's tables. Without ``reports:``, ``paper: seed00N`` gives
that paper's reports (:func:`paper_reports`; 06 and 09 only where the profile has ``leakage:`` /
``searches:``), and without either the profile's shape decides, as before the key existed: 02, 06
with ``leakage:``, 05, 10 and 09 with ``searches:``, and 13 with ``settings:`` or 07 and 08 with
several strategies. A name that is not a report notebook, a report whose inputs the profile lacks
and a ``leakage:`` / ``searches:`` section that no listed report uses are errors.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import run_folder as rf
from ..config import RunConfig
from ..registry import Arg, Registry

if TYPE_CHECKING:
    from .profile import Profile

#: the report notebooks a profile may list, registered in the order a plan runs them; a new one is
#: a notebook plus a :class:`Report` class in ``orchestration/report_<name>.py`` (found by that
#: name: ``REPORTS.load_all()`` imports them) or in a plugin
REPORTS: Registry["Report"] = Registry("report", "report notebooks a profile lists (reports:)",
                                       lazy=(__package__, "report_"))
RESULTS_PAGE = "05_results"  # every plan ends with it: its HTML export is the results page
EVERY_PLAN = ("00_setup", "01_data_exploration", "03_train", "04_evaluate")  # not reports
#: what a report may need of a profile (``Report.requires``), in the words of the error
FACTS = {"leakage": "a 'leakage:' section (its parameters)",
         "searches": "'searches:' (the cut searches it runs)",
         "cdtm_head": "a run with 'head: cdtm'",
         "settings": "'settings:' (seed 004's five settings)"}

#: ``make(step_name, report, output, parameters, done=None)`` -> a plan Step (given by :mod:`.plan`)
MakeStep = Callable[..., Any]


class Report:
    """A report notebook: its paper, its place in a plan and what it needs of a profile; its
    :meth:`steps` say what the notebook is run with."""

    name = ""  # the notebook's file name without .ipynb
    description = ""
    args: tuple[Arg, ...] = ()
    paper = ""  # seed00N: listed by ``paper: seed00N``
    order = 0  # the plan runs reports by this order (per run / per search ones first)
    notebook: Path | None = None  # None: notebooks/<name>.ipynb of the kit (a plugin's elsewhere)
    requires: str | None = None  # a key of FACTS the profile must have
    section: str | None = None  # a profile section only this report reads (an error if unlisted)

    @classmethod
    def steps(cls, profile: "Profile", selected: list[tuple[str, RunConfig]], only: str | None,
              make: MakeStep) -> list:
        """Default: once over the whole profile folder (a table of its runs)."""
        root = profile.out_root
        return cls.once(profile, make, {"profile_dir": str(root),
                                        "figures_dir": str(root / "figures")})

    @classmethod
    def once(cls, profile: "Profile", make: MakeStep, parameters: dict[str, Any]) -> list:
        return [make(cls.name, cls, profile.out_root / f"{cls.name}.ipynb", parameters)]


@REPORTS.register
class Representations(Report):
    name, paper, order = "10_representations", "seed003", 10
    description = "what fine-tuning changed (SVCCA), in each run of the first strategy"

    @classmethod
    def steps(cls, profile, selected, only, make):
        baseline = profile.runs[0].strategy
        out = []
        for name, cfg in selected:
            if cfg.strategy == baseline:
                run = Path(cfg.out or "")
                out.append(make(f"{name}/{cls.name}", cls, run / f"{cls.name}.ipynb",
                                {"run_dir": str(run), "figures_dir": str(run / "figures")},
                                done=lambda o=run: (o / f"{cls.name}.ipynb").is_file()))
        return out


@REPORTS.register
class Truncation(Report):
    name, paper, order = "09_truncation", "seed003", 20
    description = "each cut search, run (or resumed) by the notebook"
    requires = section = "searches"

    @classmethod
    def steps(cls, profile, selected, only, make):
        out = []
        for search in profile.searches:
            if only and not fnmatch.fnmatch(search.name, only) and not any(
                    search.name.endswith(n) for n, _ in selected):
                continue
            base = {k: v for k, v in search.base.to_dict().items() if k != "out"}
            out.append(make(f"{search.name}/{cls.name}", cls,
                            search.folder / f"{cls.name}.ipynb",
                            {"search_dir": str(search.folder), "method": search.method,
                             "search_config": base,
                             "figures_dir": str(search.folder / "figures")},
                            done=lambda f=search.folder: (f / rf.SEARCH_CHOICE).is_file()
                            and (f / f"{cls.name}.ipynb").is_file()))
        return out


@REPORTS.register
class DualMonitorWalkthrough(Report):
    name, paper, order = "02_dual_monitor_walkthrough", "seed000", 30
    description = "seed 000's Algorithm 1 on the first run (walkthrough: simulated: none)"

    @classmethod
    def steps(cls, profile, selected, only, make):
        first = Path(selected[0][1].out or "")
        root = profile.out_root
        return cls.once(profile, make, {
            "run_dir": str(first) if profile.walkthrough == "recorded" else "",
            "static": True, "figure_out": str(root / "figures" / "walkthrough.png")})


@REPORTS.register
class Leakage(Report):
    name, paper, order = "06_leakage", "seed000", 40
    description = "the profile's leakage: section"
    requires = section = "leakage"

    @classmethod
    def steps(cls, profile, selected, only, make):
        return cls.once(profile, make, {**(profile.leakage or {}),
                                        "figures_dir": str(profile.out_root / "figures")})


@REPORTS.register
class Strategies(Report):
    name, paper, order = "07_strategies", "seed001", 50
    description = "one seed's runs side by side (the profile's YAML)"

    @classmethod
    def steps(cls, profile, selected, only, make):
        root = profile.out_root
        return cls.once(profile, make, {"profile": profile.source, "runs_dir": str(root.parent),
                                        "seed": selected[0][1].seed, "train_missing": False,
                                        "figures_dir": str(root / "figures")})


@REPORTS.register
class StrategyComparison(Report):
    name, paper, order = "08_strategy_comparison", "seed001", 60
    description = "seed 001's table and claims over the profile folder"


@REPORTS.register
class CDTM(Report):
    name, paper, order = "11_cdtm", "seed002", 70
    description = "the CDTM module opened up on a trained run (cdtm_lp first)"
    requires = "cdtm_head"

    @classmethod
    def steps(cls, profile, selected, only, make):
        cdtm = ([cfg for _, cfg in selected if cfg.head == "cdtm"]
                or [cfg for cfg in profile.runs if cfg.head == "cdtm"])
        cdtm.sort(key=lambda cfg: cfg.strategy != "cdtm_lp")  # stable: plan order otherwise
        return cls.once(profile, make, {"run_dir": str(cdtm[0].out),
                                        "figures_dir": str(profile.out_root / "figures")})


@REPORTS.register
class CDTMResults(Report):
    name, paper, order = "12_cdtm_results", "seed002", 80
    description = "seed 002's tables over the profile folder"


@REPORTS.register
class InitSettings(Report):
    name, paper, order = "13_init_settings", "seed004", 90
    description = "seed 004's model x setting table over the profile folder"
    requires = "settings"


@REPORTS.register
class ConfidenceIntervals(Report):
    name, paper, order = "14_confidence_intervals", "seed004", 100
    description = "the first run's intervals (and a sibling on its test images)"

    @classmethod
    def steps(cls, profile, selected, only, make):
        return cls.once(profile, make, {"run_dir": str(Path(selected[0][1].out or "")),
                                        "run_dir_b": ""})


@REPORTS.register
class Results(Report):
    name, paper, order = RESULTS_PAGE, "seed000", 1000
    description = "Table II and the results page of the profile (always last)"

    @classmethod
    def steps(cls, profile, selected, only, make):
        root = profile.out_root
        return cls.once(profile, make, {
            "profile_dir": str(root), "figures_dir": str(root / "figures"),
            "profile_name": profile.name, "description": profile.description,
            "synthetic": bool(profile.synthetic), "page_dir": str(root),
            "twin_dir": str(root.parent / profile.twin) if profile.twin else ""})


def report_names() -> list[str]:
    """Every report notebook, in the order a plan runs them."""
    return sorted(REPORTS, key=lambda n: REPORTS.get(n).order)


def paper_reports() -> dict[str, tuple[str, ...]]:
    """Each paper's report notebooks (``paper: seed00N`` without ``reports:``)."""
    out: dict[str, tuple[str, ...]] = {}
    for name in report_names():
        out[REPORTS.get(name).paper] = out.get(REPORTS.get(name).paper, ()) + (name,)
    return dict(sorted(out.items()))


def report_name(value: Any) -> str | None:
    """A report notebook's name from its name, its file name or its number ('12', 12), or None."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip().removesuffix(".ipynb")
    for name in report_names():
        if text == name or (text.isdigit() and text.zfill(2) == name[:2]):
            return name
    return None


def _valid_reports() -> str:
    return ", ".join(f"{n} ({n[:2]})" for n in sorted(report_names()))


def resolve_reports(spec: dict, path: Path, runs: list[RunConfig], strategies: list[str],
                    settings: dict, has_leakage: bool,
                    has_searches: bool) -> tuple[list[str], str]:
    """(the profile's report notebooks in plan order, its paper or ''): ``reports:``, else the
    paper's (``paper:``), else the profile's shape; each checked against what it needs."""
    papers = paper_reports()
    facts = {"leakage": has_leakage, "searches": has_searches,
             "cdtm_head": any(r.head == "cdtm" for r in runs), "settings": bool(settings)}
    paper = spec.get("paper") or ""
    if paper and (not isinstance(paper, str) or paper not in papers):
        raise ValueError(f"{path}: 'paper' is one of {', '.join(papers)}, got {paper!r}")
    if "reports" in spec:
        listed = spec["reports"]
        listed = [listed] if isinstance(listed, (str, int)) else listed
        if not isinstance(listed, list) or not listed:
            raise ValueError(f"{path}: 'reports' lists report notebooks, e.g. [12_cdtm_results] "
                             f"or [12]; got {spec['reports']!r}. Valid: {_valid_reports()}")
        chosen = []
        for value in listed:
            name = report_name(value)
            if name is None:
                text = str(value).strip().removesuffix(".ipynb")
                always = text in EVERY_PLAN or (text.isdigit()
                                                and text.zfill(2) in {n[:2] for n in EVERY_PLAN})
                why = "runs in every plan, it is not a report" if always else "is not a report"
                raise ValueError(f"{path}: reports: '{value}' {why}; valid reports (name or "
                                 f"number): {_valid_reports()}")
            if name in chosen:
                raise ValueError(f"{path}: reports: '{name}' is listed twice")
            chosen.append(name)
    elif paper:
        chosen = [n for n in papers[paper]
                  if REPORTS.get(n).section is None or facts[REPORTS.get(n).section]]
    else:  # the profile's shape, as before the key existed
        chosen = ["02_dual_monitor_walkthrough", RESULTS_PAGE]
        chosen += ["06_leakage"] if has_leakage else []
        chosen += ["10_representations", "09_truncation"] if has_searches else []
        chosen += (["13_init_settings"] if settings else
                   ["07_strategies", "08_strategy_comparison"] if len(strategies) > 1 else [])
    for name in chosen:
        need = REPORTS.get(name).requires
        if need is not None and not facts[need]:
            raise ValueError(f"{path}: report {name} needs {FACTS[need]}, which this profile lacks")
    for name in sorted(report_names(), key=lambda n: REPORTS.get(n).section or ""):
        key = REPORTS.get(name).section
        if key is not None and facts[key] and name not in chosen:
            raise ValueError(f"{path}: '{key}:' is for notebook {name}, which 'reports' does not "
                             f"list: add {name} to it, or remove '{key}:'")
    return [n for n in report_names() if n in chosen], paper


REPORTS.load_all()  # orchestration/report_<name>.py (report names are not module names)
