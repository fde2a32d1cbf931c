"""``medtl run PROFILE``: a profile's plan executed through a launcher (:func:`run_profile`,
:func:`main`). ``bash run_all.sh [PROFILE|FILE.yaml] [--only PATTERN] [--dry-run]`` and
``medtl_lib.orchestration.run_profile(...)`` are the same thing."""
from __future__ import annotations

import os
import sys
from typing import Callable

from ..data.standin import prepare_synthetic
from .launchers import (
    LAUNCHERS,
    Outcome,
    Task,
    direct_done,
    direct_plan,
    launch,
    run_direct,
    run_steps,
    split_plan,
)
from .notebooks import KERNEL, export_html_report, export_step_html
from .plan import Step, plan
from .profile import REPO, Profile, load_profile
from .reports import RESULTS_PAGE


def run_profile(profile: Profile | str, only: str | None = None, dry_run: bool = False,
                kernel: str = KERNEL, log: Callable[[str], None] = print,
                export_html: bool = True, launcher: str = "inline", jobs: int = 1,
                slurm: dict | None = None) -> list[Step] | list[Outcome]:
    """Execute the plan; returns every step with its status. Never stops at the first failure.

    ``launcher`` (:mod:`.launchers`): 'inline' runs everything here in order; 'local' runs
    ``jobs`` runs side by side (one GPU each where there are GPUs); 'slurm' submits one job per
    run through submitit (``slurm``: partition, gpus_per_run, cpus_per_run, timeout_min);
    'submitit-local' is submitit's local executor. The course and report steps run here.
    'direct' executes no notebook: it trains the runs and cut searches in this process
    (:func:`.launchers.run_direct`) and returns their outcomes (each with a ``status``)."""
    if isinstance(profile, str):
        profile = load_profile(profile)
    if launcher == "direct":
        return _run_direct(profile, only, dry_run, log)
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
        run_steps(steps, len(steps), kernel, log, export_html)
    else:
        before, groups, after = split_plan(steps)
        run_steps(before, len(steps), kernel, log, export_html)
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
                    export_step_html(s, log)
        run_steps(after, len(steps), kernel, log, export_html, start=len(steps) - len(after))
    if export_html:
        results = profile.out_root / f"{RESULTS_PAGE}.ipynb"
        if results.is_file():
            html = export_html_report(results, profile.name, profile)
            log(f"results page: {html}")
    failed = [s for s in steps if s.status == "failed"]
    log(f"done: {sum(s.status == 'ok' for s in steps)} ran, "
        f"{sum(s.status == 'skipped' for s in steps)} skipped, {len(failed)} failed")
    return steps




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
    p.add_argument("--launcher", default="inline", choices=LAUNCHERS,
                   help="inline: one run after another here; local: --jobs runs side by side "
                   "(one GPU each); slurm: one SLURM job per run through submitit; "
                   "submitit-local: submitit's local executor; direct: no notebooks, every run "
                   "and cut search trained in this process, then the profile's table")
    p.add_argument("--jobs", type=int, default=2, help="runs at once with --launcher local")
    p.add_argument("--slurm-partition", help="SLURM partition (--launcher slurm)")
    p.add_argument("--gpus-per-run", type=int, default=1, help="GPUs per SLURM job")
    p.add_argument("--cpus-per-run", type=int, default=8, help="CPU cores per SLURM job")
    p.add_argument("--timeout-min", type=int, default=24 * 60,
                   help="a job's time limit; a run cut off there is requeued and resumes")
    args = p.parse_args(argv)
    try:  # a user's mistake (name, key, YAML, --only, a plugin) is one line and exit code 2
        profile = load_profile(args.profile, runs_dir=args.runs_dir)
        plan(profile, args.only)
    except (OSError, ValueError, ImportError) as exc:  # ImportError: plugins.PluginError
        print(f"medtl run: error: {exc}", file=sys.stderr)
        return 2
    slurm = {"partition": args.slurm_partition, "gpus_per_run": args.gpus_per_run,
             "cpus_per_run": args.cpus_per_run, "timeout_min": args.timeout_min}
    steps = run_profile(profile, args.only, args.dry_run, args.kernel, launcher=args.launcher,
                        jobs=args.jobs, slurm=slurm)
    return 1 if any(s.status == "failed" for s in steps) else 0


def _run_direct(profile: Profile, only: str | None, dry_run: bool,
                log: Callable[[str], None]) -> list:
    """``--launcher direct``: the runs and cut searches trained here, without notebooks."""
    if dry_run:
        items = direct_plan(profile, only)
        log(f"profile '{profile.name}': {profile.shape()} -> {profile.out_root} "
            "(direct: no notebooks)")
        width = max(50, *(len(n) + 1 for n, _ in items)) if items else 50
        for name, item in items:
            log(f"  {name:<{width}} {'done, would skip' if direct_done(item) else 'would run'}")
        return []
    prepare_synthetic(profile, log)
    os.environ.setdefault("MEDTL_PROGRESS", "log")
    return run_direct(profile, only, log=log)
