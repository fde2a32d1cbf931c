"""Run a profile (a matrix of datasets x models x strategies x seeds) through the notebooks.

``bash run_all.sh [PROFILE|FILE.yaml] [--only PATTERN] [--dry-run]`` and
``medtl_lib.profiles.run_profile(...)`` are the same thing. Each training run (one dataset,
model, strategy and seed) gets its own folder ``runs/<profile>/<run name>/`` holding the executed
``03_train.ipynb`` and ``04_evaluate.ipynb`` next to the run's files; the profile folder gets
``00_setup`` and ``01_data_exploration``, the profile's report notebooks (``reports:``, below) and
last ``05_results``, whose HTML export is the results page ``results.html``.

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
that paper's reports (:data:`PAPER_REPORTS`; 06 and 09 only where the profile has ``leakage:`` /
``searches:``), and without either the profile's shape decides, as before the key existed: 02, 06
with ``leakage:``, 05, 10 and 09 with ``searches:``, and 13 with ``settings:`` or 07 and 08 with
several strategies. A name that is not a report notebook, a report whose inputs the profile lacks
and a ``leakage:`` / ``searches:`` section that no listed report uses are errors.

A run whose ``metrics.json`` says complete is skipped; an interrupted one is executed again and
resumes from its last complete epoch; a failing one is reported and the others go on.

Profile format (YAML)::

    name: my_profile               # default: the file name
    datasets: [sarscov2_ct, brain_tumor_mri]
    models: [resnet, vit_star]
    strategies: [full, lp_ft]      # default [full] (or [defaults.strategy])
    seeds: [0, 1, 2]               # default [defaults.seed], else [42]
    reports: [07_strategies, 08_strategy_comparison]  # default: from paper:, else the shape
    defaults: {img_size: 224}      # RunConfig fields for every run
    overrides:                     # RunConfig fields for some runs
      vit_star: {batch_size: 16}
      lp_ft: {strategy_args: {lp_epochs: 3}}
      brain_tumor_mri__vit_star__lp_ft: {strategy_args: {ft_lr_factor: 0.05}}

The matrix is every dataset x model x strategy x seed. A run's fields come from, later winning:

1. ``defaults``;
2. single-name overrides, in the order ``<dataset>``, ``<model>``, ``<strategy>``;
3. two-name overrides: ``<dataset>__<model>``, ``<dataset>__<strategy>``, ``<model>__<strategy>``;
4. ``<dataset>__<model>__<strategy>``;

that is, a more specific key wins over a less specific one, and among keys naming as many parts
the later one in that list wins. The names in a key are always in the order dataset, model,
strategy. Mapping fields (``strategy_args``, ``schedule_args``) are merged key by key in the same
order instead of replaced: with the overrides above, brain_tumor_mri x vit_star x lp_ft runs get
``{lp_epochs: 3, ft_lr_factor: 0.05}``; a key set to ``null`` removes it (a run whose strategy
or schedule lacks an argument that ``defaults`` gives, e.g. ``schedule: none`` with
``schedule_args: {t_max: null}``). Each strategy accepts only its own arguments (``medtl
strategies``), so ``strategy_args`` belong under a strategy's key, not in ``defaults`` of a
profile with several strategies. An override key that names no run of the matrix is an error (a
typo would otherwise change nothing). ``dataset``, ``model``, ``strategy``, ``seed`` and
``out`` are set by the matrix: they may not appear in overrides (use ``strategies:`` and
``seeds:``), and ``defaults`` may hold ``strategy`` / ``seed`` only when the profile has no
``strategies:`` / ``seeds:`` list.

Instead of ``strategies:``, a profile may list named ``settings:``, each a mapping of RunConfig
fields that must include ``strategy`` (seed 004's five initialisation x freezing settings)::

    settings:
      pretrained_frozen: {weights: auto, strategy: linear_probe}
      random_all: {weights: none, strategy: full}

A setting is an axis value like a strategy: its name takes the strategy's place in run names and
override keys, and its fields sit between ``defaults`` and the overrides.

Run names (the folder and what ``--only`` globs on, see :func:`run_name`):
``<dataset>__<model>__<strategy>__s<seed>``, except that a profile of ``full`` runs with exactly
one seed keeps the older ``<dataset>__<model>``, so existing run folders still resume.
"""
from __future__ import annotations

import dataclasses
import functools
import fnmatch
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import yaml

from .config import RunConfig

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
PROFILES = REPO / "profiles"
KERNEL = "python3"  # ipykernel's own kernel: present wherever ipykernel is installed
RUN_FIELDS = {f.name for f in fields(RunConfig)}
PROFILE_KEYS = ("name", "description", "synthetic", "datasets", "models", "strategies", "settings",
                "seeds", "defaults", "overrides", "data_dirs", "walkthrough", "leakage", "twin",
                "searches", "paper", "reports")
MERGED_FIELDS = ("strategy_args", "schedule_args")  # mappings merged key by key, not replaced
MATRIX_FIELDS = ("dataset", "model", "strategy", "seed", "out")  # set per run by the matrix
DEFAULT_STRATEGY = "full"
DEFAULT_SEED = 42
# The notebooks a profile may list in ``reports:``, in the order a plan runs them (per run and per
# search first, then the profile's; 05_results, the results page, runs last whatever the list).
REPORTS = ("10_representations", "09_truncation", "02_dual_monitor_walkthrough", "06_leakage",
           "07_strategies", "08_strategy_comparison", "11_cdtm", "12_cdtm_results",
           "13_init_settings", "14_confidence_intervals", "05_results")
RESULTS_PAGE = "05_results"  # every plan ends with it: its HTML export is the results page
EVERY_PLAN = ("00_setup", "01_data_exploration", "03_train", "04_evaluate")  # not reports
# Each paper's report notebooks (``paper: seed00N`` without ``reports:``); 06 and 09 only where
# the profile has ``leakage:`` / ``searches:``.
PAPER_REPORTS: dict[str, tuple[str, ...]] = {
    "seed000": ("02_dual_monitor_walkthrough", "06_leakage", "05_results"),
    "seed001": ("07_strategies", "08_strategy_comparison"),
    "seed002": ("11_cdtm", "12_cdtm_results"),
    "seed003": ("10_representations", "09_truncation"),
    "seed004": ("13_init_settings", "14_confidence_intervals"),
}


@dataclass
class Profile:
    name: str
    runs: list[RunConfig]
    out_root: Path
    description: str = ""
    synthetic: dict[str, Any] | None = None  # stand-in settings when the profile is offline
    data_dirs: dict[str, str] = field(default_factory=dict)
    walkthrough: str = "recorded"  # notebook 02 replays the first run, or a simulated one
    leakage: dict[str, Any] | None = None  # parameters of notebook 06, when the profile has it
    strategies: list[str] = field(default_factory=lambda: [DEFAULT_STRATEGY])
    seeds: list[int] = field(default_factory=lambda: [DEFAULT_SEED])
    legacy_names: bool = True  # runs named <dataset>__<model> (full runs, one seed)
    source: str = ""  # the YAML file it was read from (notebook 07 loads it again)
    twin: str = ""  # a profile of the same runs under another split protocol (05 shows both)
    settings: dict[str, dict] = field(default_factory=dict)  # named settings, when it has them
    searches: list["Search"] = field(default_factory=list)  # seed 003's cut searches
    reports: list[str] = field(default_factory=lambda: [RESULTS_PAGE])  # in plan order
    paper: str = ""  # seed00N when the profile says so (its default reports)

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(r.dataset for r in self.runs))

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.runs))

    def run_name(self, cfg: RunConfig) -> str:
        """The run's folder name (a setting's name where the profile has settings)."""
        return Path(cfg.out).name if cfg.out else run_name(cfg, self.legacy_names)

    def shape(self) -> str:
        """'12 run(s) = 2 datasets x 1 model x 3 strategies x 2 seeds'."""
        def n(k: int, one: str, many: str) -> str:
            return f"{k} {one if k == 1 else many}"

        arms = (n(len(self.settings), "setting", "settings") if self.settings
                else n(len(self.strategies), "strategy", "strategies"))
        searches = (f" + {n(len(self.searches), 'cut search', 'cut searches')}"
                    if self.searches else "")
        return (f"{len(self.runs)} run(s) = {n(len(self.datasets), 'dataset', 'datasets')} x "
                f"{n(len(self.models), 'model', 'models')} x {arms} x "
                f"{n(len(self.seeds), 'seed', 'seeds')}{searches}")


@dataclass(frozen=True)
class Search:
    """One cut search of seed 003 (``medtl search-cut``): a method on the settings of one run of
    the matrix, written to its own folder of candidate runs."""

    method: str  # ttl | transfusion | lwft
    base: RunConfig  # the run whose settings every candidate shares (its out is the search's)

    @property
    def folder(self) -> Path:
        return Path(self.base.out)

    @property
    def name(self) -> str:
        return self.folder.name


def _searches(spec: dict, runs: list[RunConfig], path: Path) -> list[Search]:
    """``searches: [ttl, lwft]``: each method once per run of the profile's first strategy (the
    FTL baseline), in ``search_<method>__<run name>``. A mapping gives a method its own
    strategy_args (``searches: {ttl: {}, lwft: {frozen_bn: train}}``): that search's base then
    has the method as its strategy, and every candidate (``search_cut``) inherits the args."""
    methods = spec.get("searches") or []
    if not methods:
        return []
    from .search_cut import METHOD_ARG

    extra = methods if isinstance(methods, dict) else {}
    if (not isinstance(methods, (list, dict)) or not set(methods) <= set(METHOD_ARG)
            or not all(isinstance(v, dict) or v is None for v in extra.values())):
        raise ValueError(f"{path}: searches lists cut-search methods ({', '.join(METHOD_ARG)}), "
                         f"or maps them to strategy_args, got {methods!r}")
    first = runs[0].strategy
    out = []
    for cfg in (r for r in runs if r.strategy == first):
        for method in methods:
            folder = Path(cfg.out).parent / f"search_{method}__{Path(cfg.out).name}"
            args = extra.get(method) or {}
            base = (dataclasses.replace(cfg, out=str(folder), strategy=method, strategy_args=args)
                    if args else dataclasses.replace(cfg, out=str(folder)))
            out.append(Search(method, base))
    return out


def uses_legacy_names(strategies: list[str], seeds: list[int]) -> bool:
    """Full runs with one seed keep the folder names of profiles from before strategies."""
    return list(strategies) == [DEFAULT_STRATEGY] and len(seeds) == 1


def run_name(cfg: RunConfig, legacy: bool) -> str:
    """The run's folder name: ``<dataset>__<model>__<strategy>__s<seed>``, or with ``legacy``
    (a profile of full runs with one seed) ``<dataset>__<model>``."""
    if legacy:
        return f"{cfg.dataset}__{cfg.model}"
    return f"{cfg.dataset}__{cfg.model}__{cfg.strategy}__s{cfg.seed}"


def override_keys(dataset: str, model: str, strategy: str) -> list[str]:
    """The override keys that apply to one run, least specific first (later ones win)."""
    return [dataset, model, strategy,
            f"{dataset}__{model}", f"{dataset}__{strategy}", f"{model}__{strategy}",
            f"{dataset}__{model}__{strategy}"]


def merge_fields(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; the mapping fields (strategy_args, schedule_args) merge key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            if k in MERGED_FIELDS and isinstance(v, dict):
                merged = {**out[k], **v} if isinstance(out.get(k), dict) else dict(v)
                out[k] = {a: b for a, b in merged.items() if b is not None}  # null: remove
            else:
                out[k] = v
    return out


def _settings(spec: dict, path: Path) -> dict[str, dict]:
    """The profile's named settings (``settings:``), each with its ``strategy``; {} when none."""
    settings = spec.get("settings") or {}
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: 'settings' maps a name to RunConfig fields")
    for name, fields_ in settings.items():
        if not isinstance(fields_, dict) or "strategy" not in fields_:
            raise ValueError(f"{path}: setting '{name}' needs its fields, 'strategy' among them")
        bad = sorted(set(fields_) - RUN_FIELDS) + sorted(set(fields_) & {"dataset", "model",
                                                                         "seed", "out"})
        if bad:
            raise ValueError(f"{path}: setting '{name}' sets {bad}, which a setting cannot")
        if "__" in str(name):
            raise ValueError(f"{path}: setting name '{name}' may not contain '__'")
    return {str(k): dict(v) for k, v in settings.items()}


def _name_list(spec: dict, key: str, path: Path) -> list[str]:
    value = spec.get(key) or []
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{path}: '{key}' must be a list of names, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{path}: '{key}' lists a name twice: {value}")
    return value


def _axis(spec: dict, defaults: dict, key: str, field_name: str, default: Any,
          path: Path) -> list:
    """strategies / seeds: the profile's list, else the one value in defaults, else default."""
    if key in spec and field_name in defaults:
        raise ValueError(f"{path}: give either '{key}:' or '{field_name}' in defaults, not both")
    if key not in spec:
        return [defaults.get(field_name, default)]
    if field_name == "seed":
        value = spec[key]
        value = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise ValueError(f"{path}: 'seeds' must be a list of integers, got {value!r}")
        if len(set(value)) != len(value):
            raise ValueError(f"{path}: 'seeds' lists a seed twice: {value}")
        return value
    value = _name_list(spec, key, path)
    if not value:
        raise ValueError(f"{path}: '{key}' is empty")
    return value


def report_name(value: Any) -> str | None:
    """A report notebook's name from its name, its file name or its number ('12', 12), or None."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip().removesuffix(".ipynb")
    for name in REPORTS:
        if text == name or (text.isdigit() and text.zfill(2) == name[:2]):
            return name
    return None


def _valid_reports() -> str:
    return ", ".join(f"{n} ({n[:2]})" for n in sorted(REPORTS))


def _reports(spec: dict, path: Path, runs: list[RunConfig], strategies: list[str],
             settings: dict, has_leakage: bool, has_searches: bool) -> tuple[list[str], str]:
    """(the profile's report notebooks in plan order, its paper or ''): ``reports:``, else the
    paper's (``paper:``), else the profile's shape; each checked against what it needs."""
    paper = spec.get("paper") or ""
    if paper and (not isinstance(paper, str) or paper not in PAPER_REPORTS):
        raise ValueError(f"{path}: 'paper' is one of {', '.join(PAPER_REPORTS)}, got {paper!r}")
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
        chosen = [n for n in PAPER_REPORTS[paper]
                  if (n != "06_leakage" or has_leakage) and (n != "09_truncation" or has_searches)]
    else:  # the profile's shape, as before the key existed
        chosen = ["02_dual_monitor_walkthrough", RESULTS_PAGE]
        chosen += ["06_leakage"] if has_leakage else []
        chosen += ["10_representations", "09_truncation"] if has_searches else []
        chosen += (["13_init_settings"] if settings else
                   ["07_strategies", "08_strategy_comparison"] if len(strategies) > 1 else [])
    needs = {"06_leakage": (has_leakage, "a 'leakage:' section (its parameters)"),
             "09_truncation": (has_searches, "'searches:' (the cut searches it runs)"),
             "11_cdtm": (any(r.head == "cdtm" for r in runs), "a run with 'head: cdtm'"),
             "13_init_settings": (bool(settings), "'settings:' (seed 004's five settings)")}
    for name, (ok, what) in needs.items():
        if name in chosen and not ok:
            raise ValueError(f"{path}: report {name} needs {what}, which this profile lacks")
    unused = [(key, n) for key, n, have in (("leakage", "06_leakage", has_leakage),
                                            ("searches", "09_truncation", has_searches))
              if have and n not in chosen]
    if unused:
        key, name = unused[0]
        raise ValueError(f"{path}: '{key}:' is for notebook {name}, which 'reports' does not "
                         f"list: add {name} to it, or remove '{key}:'")
    return [n for n in REPORTS if n in chosen], paper


def _check_overrides(overrides: Any, datasets: list[str], models: list[str],
                     strategies: list[str], path: Path) -> dict[str, dict]:
    if not isinstance(overrides, dict):
        raise ValueError(f"{path}: 'overrides' must map a key to RunConfig fields")
    valid = {k for ds in datasets for m in models for st in strategies
             for k in override_keys(ds, m, st)}
    for key, value in overrides.items():
        if key not in valid:
            import difflib

            close = difflib.get_close_matches(str(key), sorted(valid), n=1)
            raise ValueError(
                f"{path}: override '{key}' names no run of the profile"
                + (f" (did you mean '{close[0]}'?)" if close else "")
                + "; keys are a dataset, model or strategy of the profile, or "
                "<dataset>__<model>, <dataset>__<strategy>, <model>__<strategy>, "
                "<dataset>__<model>__<strategy>")
        if not isinstance(value, dict):
            raise ValueError(f"{path}: override '{key}' must map RunConfig fields to values")
        fixed = sorted(set(value) & set(MATRIX_FIELDS))
        if fixed:
            raise ValueError(f"{path}: override '{key}' sets {fixed}, which the matrix sets "
                             "(use datasets:, models:, strategies:, seeds:)")
    return overrides


def load_profile(name_or_path: str | os.PathLike, runs_dir: str | os.PathLike = "runs",
                 data_root: str | os.PathLike | None = None) -> Profile:
    """A profile by name (``profiles/<name>.yaml``) or path to a YAML file (format: module doc)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES / f"{name_or_path}.yaml"
    if not path.is_file():
        import difflib

        known = sorted(p.stem for p in PROFILES.glob("*.yaml"))
        close = difflib.get_close_matches(str(name_or_path), known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise FileNotFoundError(f"profile '{name_or_path}' not found ({hint}known: "
                                f"{', '.join(known)}; or give a path to a YAML file)")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a profile is a YAML mapping (name:, datasets:, models:, ...)")
    unknown = set(spec) - set(PROFILE_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown profile key(s) {sorted(unknown)}")
    name = spec.get("name") or path.stem
    out_root = (Path(runs_dir) / name).resolve()
    data_root = Path(data_root).resolve() if data_root else (REPO / "data").resolve()
    datasets = _name_list(spec, "datasets", path)
    models = _name_list(spec, "models", path)
    defaults = spec.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ValueError(f"{path}: 'defaults' must map RunConfig fields to values")
    fixed = sorted(set(defaults) & {"dataset", "model", "out"})
    if fixed:
        raise ValueError(f"{path}: defaults set {fixed}, which the matrix sets "
                         "(use datasets: and models:)")
    if not datasets or not models:
        raise ValueError(f"{path}: the profile names no runs (needs 'datasets' and 'models')")
    settings = _settings(spec, path)
    if settings and "strategies" in spec:
        raise ValueError(f"{path}: give either 'strategies' or 'settings', not both")
    strategies = list(settings) if settings else _axis(spec, defaults, "strategies", "strategy",
                                                        DEFAULT_STRATEGY, path)
    seeds = _axis(spec, defaults, "seeds", "seed", DEFAULT_SEED, path)
    defaults = {k: v for k, v in defaults.items() if k not in ("strategy", "seed")}
    overrides = _check_overrides(spec.get("overrides") or {}, datasets, models, strategies, path)
    synthetic = spec.get("synthetic")
    data_dirs = {k: str(Path(v).expanduser().resolve()) for k, v in (spec.get("data_dirs") or {}).items()}
    if synthetic:
        for ds in datasets:
            data_dirs.setdefault(ds, str(data_root / "synthetic" / ds))
    legacy = not settings and uses_legacy_names(strategies, seeds)
    runs = []
    for ds in datasets:
        for model in models:
            for arm in strategies:  # a strategy, or a setting's name
                layers = [overrides.get(k, {}) for k in override_keys(ds, model, arm)]
                setting = settings.get(arm, {})
                for seed in seeds:
                    d = merge_fields(defaults, setting, *layers)
                    d.update(dataset=ds, model=model, strategy=setting.get("strategy", arm),
                             seed=seed)
                    if ds in data_dirs:
                        d["data_dir"] = data_dirs[ds]
                    cfg = RunConfig.from_dict(d)
                    folder = (f"{ds}__{model}__{arm}__s{seed}" if settings
                              else run_name(cfg, legacy))
                    runs.append(dataclasses.replace(cfg, out=str(out_root / folder)))
    names = [Path(r.out).name for r in runs]
    if len(set(names)) != len(names):  # cannot happen with unique lists; a guard for the future
        raise ValueError(f"{path}: two runs would share a folder: {names}")
    walkthrough = spec.get("walkthrough", "recorded")
    if walkthrough not in ("recorded", "simulated"):
        raise ValueError(f"{path}: walkthrough must be 'recorded' or 'simulated'")
    leakage = spec.get("leakage")
    if leakage is not None:
        leakage = {**leakage, "out_dir": str(out_root / "leakage")}
        ds = leakage.get("dataset", "brain_tumor_mri")
        if ds in data_dirs:
            leakage.setdefault("data_dir", data_dirs[ds])
    twin = spec.get("twin") or ""
    if not isinstance(twin, str) or twin == name:
        raise ValueError(f"{path}: 'twin' names another profile (its runs folder sits beside "
                         f"this one), got {twin!r}")
    searches = _searches(spec, runs, path)
    reports, paper = _reports(spec, path, runs, strategies, settings, leakage is not None,
                              bool(searches))
    return Profile(name, runs, out_root, spec.get("description", ""), synthetic, data_dirs,
                   walkthrough, leakage, list(strategies), list(seeds), legacy,
                   str(path.resolve()), twin, settings=settings, searches=searches,
                   reports=reports, paper=paper)


@dataclass
class Step:
    """One notebook execution of the plan."""

    name: str  # e.g. 'brain_tumor_mri__resnet/03_train'
    notebook: Path
    output: Path
    parameters: dict[str, Any]
    done: Callable[[], bool] = lambda: False
    status: str = "pending"  # pending | skipped | ok | failed
    error: str = ""
    seconds: float = 0.0


def plan(profile: Profile, only: str | None = None) -> list[Step]:
    """The notebook executions a profile needs, in order."""
    root = profile.out_root
    named = [(profile.run_name(r), r) for r in profile.runs]
    selected = [(n, r) for n, r in named if not only or fnmatch.fnmatch(n, only)]
    if not selected:
        raise ValueError(f"--only {only!r} matches no run of profile '{profile.name}' "
                         f"(runs: {', '.join(n for n, _ in named)})")
    steps = [Step("00_setup", NOTEBOOKS / "00_setup.ipynb", root / "00_setup.ipynb",
                  {"data_dirs": profile.data_dirs, "datasets": profile.datasets,
                   "install_missing": False}),
             Step("01_data_exploration", NOTEBOOKS / "01_data_exploration.ipynb",
                  root / "01_data_exploration.ipynb",
                  {"datasets": profile.datasets, "data_dirs": profile.data_dirs})]
    for name, cfg in selected:
        out = Path(cfg.out or "")
        # a reproduction never falls back to made-up data
        params = {**cfg.to_dict(), "synthetic_fallback": False}
        steps.append(Step(f"{name}/03_train", NOTEBOOKS / "03_train.ipynb",
                          out / "03_train.ipynb", params, done=lambda o=out: _complete(o)))
        steps.append(Step(f"{name}/04_evaluate", NOTEBOOKS / "04_evaluate.ipynb",
                          out / "04_evaluate.ipynb", {"run_dir": str(out)},
                          done=lambda o=out: _complete(o) and (o / "04_evaluate.ipynb").is_file()))
    for name in [n for n in profile.reports if n != RESULTS_PAGE] + [RESULTS_PAGE]:
        steps += _report_steps(profile, name, selected, only)  # the results page last, always
    return steps


def _report_steps(profile: Profile, report: str, selected: list[tuple[str, RunConfig]],
                  only: str | None) -> list[Step]:
    """The steps of one report notebook of the plan (several for 09 and 10: one per search or
    run); what each notebook needs is in the module doc's table."""
    root = profile.out_root
    figures = str(root / "figures")
    first = Path(selected[0][1].out or "")

    def step(parameters: dict[str, Any]) -> list[Step]:
        return [Step(report, NOTEBOOKS / f"{report}.ipynb", root / f"{report}.ipynb", parameters)]

    if report == "10_representations":  # seed 003: what fine-tuning changed in each FTL run
        baseline = profile.runs[0].strategy
        out = []
        for name, cfg in selected:
            if cfg.strategy == baseline:
                run = Path(cfg.out or "")
                out.append(Step(f"{name}/{report}", NOTEBOOKS / f"{report}.ipynb",
                                run / f"{report}.ipynb",
                                {"run_dir": str(run), "figures_dir": str(run / "figures")},
                                done=lambda o=run: (o / f"{report}.ipynb").is_file()))
        return out
    if report == "09_truncation":  # seed 003: each cut search, run (or resumed) by notebook 09
        out = []
        for search in profile.searches:
            if only and not fnmatch.fnmatch(search.name, only) and not any(
                    search.name.endswith(n) for n, _ in selected):
                continue
            base = {k: v for k, v in search.base.to_dict().items() if k != "out"}
            out.append(Step(f"{search.name}/{report}", NOTEBOOKS / f"{report}.ipynb",
                            search.folder / f"{report}.ipynb",
                            {"search_dir": str(search.folder), "method": search.method,
                             "search_config": base,
                             "figures_dir": str(search.folder / "figures")},
                            done=lambda f=search.folder: (f / "search.json").is_file()
                            and (f / f"{report}.ipynb").is_file()))
        return out
    if report == "02_dual_monitor_walkthrough":  # seed 000's Algorithm 1 on the first run
        return step({"run_dir": str(first) if profile.walkthrough == "recorded" else "",
                     "static": True, "figure_out": str(root / "figures" / "walkthrough.png")})
    if report == "06_leakage":
        return step({**(profile.leakage or {}), "figures_dir": figures})
    if report == "07_strategies":  # seed 001: one seed's runs side by side
        return step({"profile": profile.source, "runs_dir": str(root.parent),
                     "seed": selected[0][1].seed, "train_missing": False,
                     "figures_dir": figures})
    if report == "11_cdtm":  # seed 002: the module opened up on a trained run (cdtm_lp first)
        cdtm = ([cfg for _, cfg in selected if cfg.head == "cdtm"]
                or [cfg for cfg in profile.runs if cfg.head == "cdtm"])
        cdtm.sort(key=lambda cfg: cfg.strategy != "cdtm_lp")  # stable: plan order otherwise
        return step({"run_dir": str(cdtm[0].out), "figures_dir": figures})
    if report == "14_confidence_intervals":  # the first run; section 4 finds a sibling itself
        return step({"run_dir": str(first), "run_dir_b": ""})
    if report == RESULTS_PAGE:
        return step({"profile_dir": str(root), "figures_dir": figures,
                     "profile_name": profile.name, "description": profile.description,
                     "synthetic": bool(profile.synthetic), "page_dir": str(root),
                     "twin_dir": str(root.parent / profile.twin) if profile.twin else ""})
    # 08, 12, 13: a table of the whole profile folder
    return step({"profile_dir": str(root), "figures_dir": figures})


def _complete(run_dir: Path) -> bool:
    import json

    m = run_dir / "metrics.json"
    try:
        return m.is_file() and json.loads(m.read_text()).get("status") == "complete"
    except ValueError:
        return False


def prepare_synthetic(profile: Profile, log: Callable[[str], None] = print) -> None:
    """Write the offline stand-ins a profile asks for. One whose stamp differs (an older generator,
    other settings, a write cut short) is rewritten, so an upgrade never trains on stale images; a
    non-empty folder that is not a stand-in (a user's own data) is never touched."""
    if not profile.synthetic:
        return
    import shutil

    from .data.synthetic import (MARK_FILE, STAMP_FILE, read_stamp, standin_state,
                                 synthetic_stamp, write_synthetic)

    rewritten = False
    for ds in profile.datasets:
        target = Path(profile.data_dirs[ds])
        state = standin_state(ds, target, **profile.synthetic)
        if state == "current":
            continue
        if state == "foreign":
            log(f"{target} holds files but is not a synthetic stand-in (no {MARK_FILE} or "
                f"{STAMP_FILE}), so it is left as it is and used as the {ds} data. For the "
                "stand-in, move those files elsewhere or empty the folder.")
            continue
        if state == "stale":
            want, have = synthetic_stamp(ds, **profile.synthetic), read_stamp(target)
            was = ("no stamp: an older generator or a write cut short" if have is None else
                   ", ".join(f"{k} {have.get(k)}" for k in want if have.get(k) != want[k]))
            log(f"rewriting synthetic stand-in {ds} -> {target} (it had {was}; now generator "
                f"version {want['version']}, {profile.synthetic})")
            shutil.rmtree(target)
            rewritten = True
        else:
            log(f"writing synthetic stand-in {ds} -> {target}")
        write_synthetic(ds, target, **profile.synthetic)
    if rewritten and profile.out_root.is_dir() and any(profile.out_root.iterdir()):
        log(f"runs already in {profile.out_root} were trained on the old stand-ins: finished ones "
            "are kept as they are, unfinished ones refuse to resume. Delete that folder (or use "
            "another --runs-dir) to train them on the new images.")


def ensure_standin(dataset: str, target: str | os.PathLike, settings: dict | None = None,
                   log: Callable[[str], None] = print) -> Path:
    """The course's stand-in of one dataset in ``target``, written (or rewritten when its stamp
    is stale) with the smoke profile's settings unless ``settings`` are given; a folder there that
    is not a stand-in is refused, never deleted (notebooks 01, 03 and 11 fall back to this)."""
    import shutil

    from .data.synthetic import MARK_FILE, standin_state, write_synthetic

    settings = settings or load_profile("smoke").synthetic
    target = Path(target)
    state = standin_state(dataset, target, **settings)
    if state == "current":
        return target
    if state == "foreign":
        raise FileExistsError(f"{target} holds files but is not a synthetic stand-in (no "
                              f"{MARK_FILE}); move them, or point data_dir at your data")
    if state == "stale":
        log(f"rewriting the stale synthetic stand-in {dataset} in {target}")
        shutil.rmtree(target)
    return write_synthetic(dataset, target, **settings)


def run_profile(profile: Profile | str, only: str | None = None, dry_run: bool = False,
                kernel: str = KERNEL, log: Callable[[str], None] = print,
                export_html: bool = True, launcher: str = "inline", jobs: int = 1,
                slurm: dict | None = None) -> list[Step]:
    """Execute the plan; returns every step with its status. Never stops at the first failure.

    ``launcher`` (medtl_lib.launchers): 'inline' runs everything here in order; 'local' runs
    ``jobs`` runs side by side (one GPU each where there are GPUs); 'slurm' submits one job per
    run through submitit (``slurm``: partition, gpus_per_run, cpus_per_run, timeout_min);
    'submitit-local' is submitit's local executor. The course and report steps run here."""
    if isinstance(profile, str):
        profile = load_profile(profile)
    steps = plan(profile, only)
    log(f"profile '{profile.name}': {profile.shape()} -> {profile.out_root}")
    log(f"reports: {', '.join(n for n in profile.reports if n != RESULTS_PAGE) or 'none'}; "
        f"results page: {RESULTS_PAGE}"
        + (" with seed 000's Table II" if RESULTS_PAGE in profile.reports else
           ", showing these reports instead of seed 000's Table II"))
    if dry_run:
        width = max(50, *(len(s.name) + 1 for s in steps))
        for s in steps:
            state = "done, would skip" if s.done() else "would run"
            log(f"  {s.name:<{width}} {state}")
        return steps
    prepare_synthetic(profile, log)
    os.environ.setdefault("MEDTL_PROGRESS", "log")  # one line per epoch, no tqdm spam in logs
    if launcher == "inline":
        _run_steps(steps, len(steps), kernel, log, export_html)
    else:
        from .launchers import Task, launch, split_plan

        before, groups, after = split_plan(steps)
        _run_steps(before, len(steps), kernel, log, export_html)
        pending = []
        for group in groups:
            todo = [s for s in group if not s.done()]
            for s in group:
                if s not in todo:
                    s.status = "skipped"
            if todo:
                pending.append(todo)
        tasks = [[Task(s.name, str(s.notebook), str(s.output), s.parameters) for s in g]
                 for g in pending]
        outcomes = launch(tasks, launcher, kernel, jobs, profile.out_root / "jobs", slurm, log)
        for group, results in zip(pending, outcomes):
            for s, o in zip(group, results):
                s.status, s.error, s.seconds = o.status, o.error, o.seconds
                log(f"{s.name}: {s.status}" + (f" in {s.seconds:.0f}s" if s.seconds else "")
                    + (f"\n    {s.error}\n    see {s.output}" if s.status == "failed" else ""))
                if export_html and s.status != "skipped":
                    _export_step_html(s, log)
        _run_steps(after, len(steps), kernel, log, export_html, start=len(steps) - len(after))
    if export_html:
        results = profile.out_root / f"{RESULTS_PAGE}.ipynb"
        if results.is_file():
            html = export_html_report(results, profile.name, profile)
            log(f"results page: {html}")
    failed = [s for s in steps if s.status == "failed"]
    log(f"done: {sum(s.status == 'ok' for s in steps)} ran, "
        f"{sum(s.status == 'skipped' for s in steps)} skipped, {len(failed)} failed")
    return steps


def _run_steps(steps: list[Step], total: int, kernel: str, log: Callable[[str], None],
               export_html: bool, start: int = 0) -> None:
    """Execute steps here, in order; a run whose training failed skips its other steps."""
    failed_runs: set[str] = set()
    for i, s in enumerate(steps, start + 1):
        run = s.name.split("/")[0] if "/" in s.name else ""
        if run in failed_runs:
            s.status, s.error = "skipped", "its training failed"
            log(f"[{i}/{total}] {s.name}: skipped (training failed)")
            continue
        if s.done():
            s.status = "skipped"
            log(f"[{i}/{total}] {s.name}: already done")
            if export_html:  # a run finished before HTML copies existed gets one now
                _export_step_html(s, log)
            continue
        log(f"[{i}/{total}] {s.name} ...")
        t0 = time.perf_counter()
        try:
            execute(s.notebook, s.output, s.parameters, kernel)
            s.status = "ok"
        except Exception as exc:  # report, keep going
            s.status, s.error = "failed", _short_error(exc)
            if run:
                failed_runs.add(run)
        s.seconds = time.perf_counter() - t0
        log(f"[{i}/{total}] {s.name}: {s.status} in {s.seconds:.0f}s"
            + (f"\n    {s.error}\n    see {s.output}" if s.error else ""))
        if export_html and s.name != "05_results":  # before 05, which links the copies
            _export_step_html(s, log)


def execute(notebook: Path, output: Path, parameters: dict[str, Any], kernel: str = KERNEL) -> None:
    """papermill with the kernel named explicitly and the notebook's output log kept beside it."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("papermill")
    handler = logging.FileHandler(output.with_suffix(".log"), mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        extra = {"kernel_manager_class": _kernel_manager()} if os.name == "posix" else {}
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel,
                            cwd=str(NOTEBOOKS), log_output=True, progress_bar=False, **extra)
    finally:
        logger.removeHandler(handler)
        handler.close()


def _kernel_manager():
    """Kernels over local IPC sockets: nothing listens on TCP, and recent ipykernel stops
    printing its 'running over TCP without encryption' warning once per notebook.

    Each kernel gets its own socket path in a private temporary folder: jupyter_client's default
    ('kernel-ipc' in the working directory) is shared by every kernel started there, so two
    papermill runs at once (tests, two terminals) talked over each other's sockets."""
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc")

        @default("ip")
        def _unique_ipc_path(self) -> str:
            return os.path.join(_ipc_folder(), f"kernel-{uuid.uuid4().hex[:8]}")

    return IPCKernelManager


@functools.cache
def _ipc_folder() -> str:
    """One private folder per process for the kernels' sockets, removed when the process ends."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="medtl-ipc-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _export_step_html(step: Step, log: Callable[[str], None] = print) -> None:
    """An executed notebook's HTML copy beside it (``03_train.html``), so the results page can
    link every run's notebooks for readers without Jupyter; a failed one too (it shows the
    error). Skipped when the copy is newer than the notebook; never fails the profile."""
    from .evaluation.results_page import export_notebook_html, html_is_stale

    if not html_is_stale(step.output):
        return
    try:
        export_notebook_html(step.output)
    except Exception as exc:  # a page we could not write is reported, not fatal
        log(f"    no HTML copy of {step.output.name}: {_short_error(exc)}")


def export_html_report(executed: Path, profile_name: str = "",
                       profile: Profile | None = None) -> Path:
    """Notebook 05's executed copy as ``results.html`` beside it: no code cells, titled
    '<profile> results', every figure embedded with its alt text and nothing loaded from
    outside the file (medtl_lib.evaluation.results_page). With the ``profile``, the page shows
    its report notebooks' results: seed 000's sections only where its reports list them, the
    other papers' report notebooks (their executed copies, every run's) where Table II stands."""
    from .evaluation.results_page import export_results_page

    if profile is None:
        return export_results_page(executed, profile_name)
    executed_reports = [s.output for s in plan(profile) if s.name.split("/")[-1] in
                        profile.reports and s.output.is_file()]
    return export_results_page(executed, profile_name, profile.reports, executed_reports)


def _short_error(exc: Exception) -> str:
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    text = f"{name}: {value}".strip()
    if not text:
        return traceback.format_exc(limit=1)
    return text if len(text) < 600 else text[:600] + " ..."


def main(argv: list[str] | None = None) -> int:
    """``medtl run``: the entry run_all.sh calls."""
    import argparse

    p = argparse.ArgumentParser(prog="medtl run", description="run a profile through the notebooks")
    p.add_argument("profile", nargs="?", default="smoke", help="smoke | paper | FILE.yaml")
    p.add_argument("--only", help="runs to include, a glob on the run name "
                   "<dataset>__<model>__<strategy>__s<seed> (<dataset>__<model> in a profile of "
                   "full runs with one seed), e.g. 'brain*' or '*__lp_ft__*'; --dry-run lists them")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--runs-dir", default=str(REPO / "runs"))
    p.add_argument("--kernel", default=KERNEL)
    p.add_argument("--launcher", default="inline", choices=("inline", "local", "slurm",
                                                           "submitit-local"),
                   help="inline: one run after another here; local: --jobs runs side by side "
                   "(one GPU each); slurm: one SLURM job per run through submitit; "
                   "submitit-local: submitit's local executor")
    p.add_argument("--jobs", type=int, default=2, help="runs at once with --launcher local")
    p.add_argument("--slurm-partition", help="SLURM partition (--launcher slurm)")
    p.add_argument("--gpus-per-run", type=int, default=1, help="GPUs per SLURM job")
    p.add_argument("--cpus-per-run", type=int, default=8, help="CPU cores per SLURM job")
    p.add_argument("--timeout-min", type=int, default=24 * 60,
                   help="a job's time limit; a run cut off there is requeued and resumes")
    args = p.parse_args(argv)
    try:  # a user's mistake (name, key, YAML, --only) is one line and exit code 2
        profile = load_profile(args.profile, runs_dir=args.runs_dir)
        plan(profile, args.only)
    except (OSError, ValueError) as exc:
        print(f"medtl run: error: {exc}", file=sys.stderr)
        return 2
    slurm = {"partition": args.slurm_partition, "gpus_per_run": args.gpus_per_run,
             "cpus_per_run": args.cpus_per_run, "timeout_min": args.timeout_min}
    steps = run_profile(profile, args.only, args.dry_run, args.kernel, launcher=args.launcher,
                        jobs=args.jobs, slurm=slurm)
    return 1 if any(s.status == "failed" for s in steps) else 0
