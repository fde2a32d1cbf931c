"""A profile: its YAML file read and checked, and its matrix of runs (:func:`load_profile`).

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

``plugins: [my_package.medtl_plugin]`` loads those modules (:func:`medtl_lib.plugins.load_plugins`)
before the runs are built, so their models and strategies can be named in the profile.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..config import RunConfig
from .reports import RESULTS_PAGE, resolve_reports

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
PROFILES = REPO / "profiles"
RUN_FIELDS = {f.name for f in fields(RunConfig)}
PROFILE_KEYS = ("name", "description", "synthetic", "datasets", "models", "strategies", "settings",
                "seeds", "defaults", "overrides", "data_dirs", "walkthrough", "leakage", "twin",
                "searches", "paper", "reports", "plugins")
MERGED_FIELDS = ("strategy_args", "schedule_args")  # mappings merged key by key, not replaced
MATRIX_FIELDS = ("dataset", "model", "strategy", "seed", "out")  # set per run by the matrix
DEFAULT_STRATEGY = "full"
DEFAULT_SEED = 42


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
    plugins: list[str] = field(default_factory=list)  # loaded by load_profile (``plugins:``)

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
    from ..search_cut import METHOD_ARG

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
    plugins = _name_list(spec, "plugins", path)
    if plugins:  # before any RunConfig: a plugin may add the models and strategies it names
        from ..plugins import load_plugins

        load_plugins(plugins)
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
    reports, paper = resolve_reports(spec, path, runs, strategies, settings, leakage is not None,
                                    bool(searches))
    return Profile(name, runs, out_root, spec.get("description", ""), synthetic, data_dirs,
                   walkthrough, leakage, list(strategies), list(seeds), legacy,
                   str(path.resolve()), twin, settings=settings, searches=searches,
                   reports=reports, paper=paper, plugins=plugins)


