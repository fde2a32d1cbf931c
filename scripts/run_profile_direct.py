"""Train every run of a profile in this process (no notebooks), then print seed 001's table.

The same as ``medtl run PROFILE --launcher direct`` (medtl_lib.orchestration.launchers.run_direct),
with three options of its own: ``--set`` (a RunConfig field for every run), ``--data-root`` and
``--synthetic`` (the stand-ins' folder and settings). For machines without Jupyter (a bare GPU
box) and for timing the matrix itself. Run folders are the same as ``run_all.sh PROFILE`` writes
(notebooks 03/04 are not executed), so a finished run is skipped by either and ``05_results`` /
``08_strategy_comparison`` read them.

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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from medtl_lib.config import RunConfig  # noqa: E402
from medtl_lib.data.standin import prepare_synthetic  # noqa: E402
from medtl_lib.orchestration import load_profile  # noqa: E402
from medtl_lib.orchestration.launchers import _print_settings_tables, run_direct  # noqa: E402,F401

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
    profile = load_profile(args.profile, runs_dir=args.runs_dir, data_root=args.data_root)
    if args.synthetic:
        if not profile.synthetic:
            ap.error(f"--synthetic: profile '{profile.name}' uses no stand-ins")
        profile.synthetic = {**profile.synthetic, **_key_values(ap, args.synthetic, SYNTHETIC_KEYS)}
    prepare_synthetic(profile)  # offline profiles: stand-ins written once
    outcomes = run_direct(profile, args.only, extra)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


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


if __name__ == "__main__":
    raise SystemExit(main())
