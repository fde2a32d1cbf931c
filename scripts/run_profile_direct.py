"""Train every run of a profile in this process (no notebooks), then print seed 001's table.

For machines without Jupyter (a bare GPU box) and for timing the matrix itself. Run folders are
the same as ``run_all.sh PROFILE`` writes (notebooks 03/04 are not executed), so a finished run
is skipped by either and ``05_results`` / ``08_strategy_comparison`` read them.

    python scripts/run_profile_direct.py seed001_cpu [--runs-dir runs] [--only '*lp_ft*']
        [--set device=cuda --set num_workers=8]

Data: as for every run (``--data-dir`` is per dataset in a profile, so use $MEDTL_DATA_DIR).
An offline profile writes its stand-ins under ``--data-root`` (default ./data); ``--synthetic
seed=1`` changes the stand-ins' settings, so a fresh data root and runs dir measure other data:

    HF_HUB_OFFLINE=1 python scripts/run_profile_direct.py smoke --runs-dir /tmp/s1/runs \
        --data-root /tmp/s1/data --synthetic seed=1
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from medtl_lib import profiles  # noqa: E402
from medtl_lib.config import RunConfig  # noqa: E402
from medtl_lib.evaluation.comparison import SEED001_METRICS, claims  # noqa: E402
from medtl_lib.evaluation.report import (collect_runs, strategy_table,  # noqa: E402
                                         strategy_table_markdown)
from medtl_lib.search_cut import search_cut  # noqa: E402
from medtl_lib.train_run import train_run  # noqa: E402

SYNTHETIC_KEYS = {"n_per_class", "size", "seed"}  # write_synthetic's settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--only", help="glob on run names")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a RunConfig field for every run (YAML value), e.g. device=cuda")
    ap.add_argument("--data-root", help="where an offline profile's stand-ins live "
                    "(<data-root>/synthetic/<dataset>; default ./data)")
    ap.add_argument("--synthetic", action="append", default=[], metavar="KEY=VALUE",
                    help="a stand-in setting of an offline profile (n_per_class, size, seed)")
    args = ap.parse_args(argv)
    extra = _key_values(ap, args.set, {f.name for f in dataclasses.fields(RunConfig)}, "--set")
    profile = profiles.load_profile(args.profile, runs_dir=args.runs_dir, data_root=args.data_root)
    if args.synthetic:
        if not profile.synthetic:
            ap.error(f"--synthetic: profile '{profile.name}' uses no stand-ins")
        profile.synthetic = {**profile.synthetic, **_key_values(ap, args.synthetic, SYNTHETIC_KEYS)}
    profiles.prepare_synthetic(profile)  # offline profiles: stand-ins written once
    runs = [r for r in profile.runs
            if not args.only or fnmatch.fnmatch(profile.run_name(r), args.only)]
    print(f"{profile.name}: {len(runs)} of {profile.shape()}", flush=True)
    t0 = time.perf_counter()
    failed = []
    for i, cfg in enumerate(runs, 1):
        cfg = dataclasses.replace(cfg, **extra)
        name = profile.run_name(cfg)
        print(f"[{i}/{len(runs)}] {name}", flush=True)
        try:
            result = train_run(cfg, progress=False, log=lambda *a: None)
            print(f"    {result.summary()}{' (already complete)' if result.skipped else ''}",
                  flush=True)
            print(f"    {_test_line(result.metrics)}", flush=True)
        except Exception as e:  # one failing run must not stop the others
            failed.append(name)
            print(f"    FAILED: {type(e).__name__}: {e}", flush=True)
    searches = [s for s in profile.searches if not args.only or fnmatch.fnmatch(s.name, args.only)]
    for i, search in enumerate(searches, 1):  # seed 003's cut searches (resumable like runs)
        print(f"[search {i}/{len(searches)}] {search.name}", flush=True)
        try:
            base = dataclasses.replace(search.base, **extra)
            table = search_cut(base, search.method, search.folder,
                               log=lambda line: print("   ", line, flush=True))
            chosen = json.loads((search.folder / "search.json").read_text())
            print(f"    chosen {chosen['chosen']} of {len(table)} candidates: "
                  f"{_test_line({'test': chosen['test']})}", flush=True)
        except Exception as e:
            failed.append(search.name)
            print(f"    FAILED: {type(e).__name__}: {e}", flush=True)
    print(f"matrix: {time.perf_counter() - t0:.0f} s wall, {len(failed)} failed {failed}")
    if profile.settings:  # seed 004: weights x strategy; a strategy table would merge settings
        _print_settings_tables(profile.out_root)
        return 1 if failed else 0
    table = collect_runs(profile.out_root)
    print(strategy_table_markdown(strategy_table(table, tuple(SEED001_METRICS)), SEED001_METRICS))
    if len(set(table["strategy"])) > 1 and "full" in set(table["strategy"]):
        c = claims(table)
        print(json.dumps(c, indent=1))
        (profile.out_root / "claims.json").write_text(json.dumps(c, indent=1))
    return 1 if failed else 0


def _print_settings_tables(profile_dir: Path) -> None:
    """Seed 004's model x setting table per dataset (test AUROC [95% CI]) and the paired gain
    from pretraining, as notebook 13 shows them."""
    from medtl_lib.evaluation import seed004

    runs = seed004.collect(profile_dir)
    if runs.empty:
        print("no complete run with a seed-004 setting")
        return
    for dataset in dict.fromkeys(runs["dataset"]):
        print(f"\n{dataset}: test macro AUROC [95% CI, percentile bootstrap]")
        print(seed004.settings_table(runs, dataset).to_string())
    gain = seed004.pretraining_gain(runs)
    if not gain.empty:
        print("\npretrained + all minus random + all (paired bootstrap over the same test images):")
        print(gain[["dataset", "model", "gain", "low", "high"]].to_string(
            index=False, float_format="{:+.4f}".format))


def _key_values(ap: argparse.ArgumentParser, items: list[str], known: set[str],
                flag: str = "--synthetic") -> dict:
    """KEY=VALUE strings as a dict of YAML values; an unknown key stops before any work."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in known:
            ap.error(f"{flag} {item}: unknown key '{key}'")
        out[key] = yaml.safe_load(value)
    return out


def _test_line(metrics: dict) -> str:
    """The two numbers a smoke check reads: test accuracy and AUROC (when the run has one)."""
    t = metrics["test"]
    auroc = t.get("auroc_macro")
    return (f"test accuracy {t['accuracy']:.3f}, AUROC "
            f"{'n/a' if auroc is None else format(auroc, '.3f')}")


if __name__ == "__main__":
    raise SystemExit(main())
