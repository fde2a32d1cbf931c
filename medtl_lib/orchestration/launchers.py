"""Where a profile's runs execute: one after another here (the default, :func:`run_steps`), side
by side on this machine (``--launcher local --jobs N``), or as jobs of a SLURM cluster through
submitit (``--launcher slurm``; ``submitit-local`` is submitit's local executor, the same code path
without a cluster). ``--launcher direct`` (:func:`run_direct`) executes no notebook: it trains
every run and cut search in this process, then prints the profile's table (machines without
Jupyter, and timing the matrix itself).

A *run group* is what one run needs: its ``03_train`` then ``04_evaluate`` (or a cut search's
``09_truncation``). Groups are independent, so they are what is spread out; the course steps
before them (00, 01) and the reports after them (02, 05, 06, 07, 08, 13) run here, once every
group has finished. Every group is an ordinary resumable run: a job that dies or is preempted is
started again and continues from its last complete epoch, and a finished run is skipped.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import run_folder as rf
from .notebooks import execute, export_step_html, short_error
from .plan import Step, complete
from .profile import Profile

NOTEBOOK_LAUNCHERS = ("inline", "local", "slurm", "submitit-local")  # what :func:`launch` takes
LAUNCHERS = NOTEBOOK_LAUNCHERS + ("direct",)


@dataclass(frozen=True)
class Task:
    """One notebook of a run group, as plain data (a job on another machine gets it pickled)."""

    name: str
    notebook: str
    output: str
    parameters: dict


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # ok | failed | skipped
    error: str = ""
    seconds: float = 0.0


def split_plan(steps: list) -> tuple[list, list[list], list]:
    """(steps before the runs, one list per run group in plan order, steps after the runs)."""
    groups: dict[str, list] = {}
    before, after = [], []
    for s in steps:
        if "/" in s.name:
            groups.setdefault(s.name.split("/")[0], []).append(s)
        else:
            (after if groups else before).append(s)
    return before, list(groups.values()), after


def run_steps(steps: list[Step], total: int, kernel: str, log: Callable[[str], None],
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
                export_step_html(s, log)
            continue
        log(f"[{i}/{total}] {s.name} ...")
        t0 = time.perf_counter()
        try:
            execute(s.notebook, s.output, s.parameters, kernel)
            s.status = "ok"
        except Exception as exc:  # report, keep going
            s.status, s.error = "failed", short_error(exc)
            if run:
                failed_runs.add(run)
        s.seconds = time.perf_counter() - t0
        log(f"[{i}/{total}] {s.name}: {s.status} in {s.seconds:.0f}s"
            + (f"\n    {s.error}\n    see {s.output}" if s.error else ""))
        if export_html and s.name != "05_results":  # before 05, which links the copies
            export_step_html(s, log)




def run_group(tasks: list[Task], kernel: str, gpu: str | None = None) -> list[Outcome]:
    """Execute one group's notebooks in order; the first failure skips the rest of the group.
    ``gpu`` pins the group to one device (CUDA_VISIBLE_DEVICES, inherited by the kernel)."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ.setdefault("MEDTL_PROGRESS", "log")
    out: list[Outcome] = []
    for t in tasks:
        if out and out[-1].status == "failed":
            out.append(Outcome(t.name, "skipped", "its training failed"))
            continue
        t0 = time.perf_counter()
        try:
            execute(Path(t.notebook), Path(t.output), t.parameters, kernel)
            out.append(Outcome(t.name, "ok", seconds=time.perf_counter() - t0))
        except Exception as exc:  # reported, the other groups go on
            out.append(Outcome(t.name, "failed", short_error(exc), time.perf_counter() - t0))
    return out


class GroupJob:
    """submitit's job for one run group. On preemption or a time limit, submitit calls
    :meth:`checkpoint`, which resubmits the same group: the run resumes from its last epoch."""

    def __init__(self, tasks: list[Task], kernel: str) -> None:
        self.tasks, self.kernel = tasks, kernel

    def __call__(self) -> list[Outcome]:
        return run_group(self.tasks, self.kernel)

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(GroupJob(self.tasks, self.kernel))


def launch(groups: list[list[Task]], launcher: str, kernel: str, jobs: int = 1,
           folder: Path | None = None, slurm: dict | None = None,
           log: Callable[[str], None] = print) -> list[list[Outcome]]:
    """Run every group through ``launcher``; outcomes in the order of ``groups``."""
    if launcher not in NOTEBOOK_LAUNCHERS:
        raise ValueError(f"launcher must be one of {', '.join(NOTEBOOK_LAUNCHERS)}, "
                         f"got '{launcher}'")
    if not groups:
        return []
    if launcher == "inline":
        return [run_group(g, kernel) for g in groups]
    if launcher == "local":
        gpus = visible_gpus()
        log(f"launcher local: {len(groups)} run(s), {jobs} at a time"
            + (f", one GPU each of {gpus}" if gpus else ""))
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_group, g, kernel, gpus[i % len(gpus)] if gpus else None)
                       for i, g in enumerate(groups)]
            return [f.result() for f in futures]
    try:
        import submitit
    except ImportError:
        raise ImportError("--launcher slurm needs submitit: pip install submitit (or "
                          "pip install -e '.[cluster]')") from None
    folder = Path(folder or "submitit")
    if launcher == "submitit-local":
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=(slurm or {}).get("timeout_min", 24 * 60))
    else:
        executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        executor.update_parameters(**_slurm_parameters(slurm or {}))
    submitted = [executor.submit(GroupJob(g, kernel)) for g in groups]
    log(f"launcher {launcher}: {len(submitted)} job(s) submitted ({submitted[0].job_id} ...); "
        f"logs in {folder}")
    results = []
    for job, group in zip(submitted, groups):
        try:
            results.append(job.result())
        except Exception as exc:  # the job itself died (not a notebook failure)
            results.append([Outcome(t.name, "failed", f"job {job.job_id}: {exc}"[:600])
                            for t in group])
    return results


def _slurm_parameters(slurm: dict) -> dict:
    """submitit's SLURM parameters from the command line's: one task per run, its GPUs on one
    node, a day by default (a longer run is requeued by :meth:`GroupJob.checkpoint`)."""
    gpus = int(slurm.get("gpus_per_run", 1))
    params = {"slurm_partition": slurm.get("partition"), "gpus_per_node": gpus,
              "tasks_per_node": 1, "nodes": 1, "cpus_per_task": int(slurm.get("cpus_per_run", 8)),
              "timeout_min": int(slurm.get("timeout_min", 24 * 60)),
              "slurm_additional_parameters": {"requeue": True}}
    return {k: v for k, v in params.items() if v is not None}


def visible_gpus() -> list[str]:
    """The GPUs this machine offers, as CUDA_VISIBLE_DEVICES values ([] on a CPU machine)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


# --- direct: no notebooks, every run and cut search trained in this process --------------------

def direct_plan(profile: Profile, only: str | None = None) -> list[tuple[str, Any]]:
    """What :func:`run_direct` trains, in order: (run name, RunConfig) for the runs ``only``
    matches, then (search name, Search) for the cut searches it matches."""
    runs = [(profile.run_name(r), r) for r in profile.runs
            if not only or fnmatch.fnmatch(profile.run_name(r), only)]
    searches = [(s.name, s) for s in profile.searches if not only or fnmatch.fnmatch(s.name, only)]
    return runs + searches


def direct_done(item: Any) -> bool:
    """Whether a run (RunConfig) or cut search of :func:`direct_plan` has finished."""
    if hasattr(item, "method"):  # a Search
        return (item.folder / rf.SEARCH_CHOICE).is_file()
    return complete(Path(item.out or ""))


def run_direct(profile: Profile, only: str | None = None, extra: dict | None = None,
               log: Callable[[str], None] = functools.partial(print, flush=True)
               ) -> list[Outcome]:
    """Train every run of the profile (``only``: a glob on run names) with ``train_run``, then its
    cut searches with ``search_cut``, in this process and without notebooks; then log seed 001's
    strategy table (and write the claims file) or, for a profile of settings, seed 004's tables.
    Run folders are those the notebooks write (03/04 are not executed), so a finished run is
    skipped by either launcher. ``extra``: RunConfig fields for every run (``device=cuda``).
    Stand-ins are not written here (:func:`medtl_lib.data.standin.prepare_synthetic`)."""
    from ..evaluation.comparison import SEED001_METRICS, claims
    from ..evaluation.report import collect_runs, strategy_table, strategy_table_markdown
    from ..search_cut import search_cut
    from ..train_run import train_run

    extra = extra or {}
    items = direct_plan(profile, only)
    runs = [(n, r) for n, r in items if not hasattr(r, "method")]
    searches = [s for _, s in items if hasattr(s, "method")]
    log(f"{profile.name}: {len(runs)} of {profile.shape()}")
    t0 = time.perf_counter()
    outcomes: list[Outcome] = []
    for i, (_, cfg) in enumerate(runs, 1):
        cfg = dataclasses.replace(cfg, **extra)
        name = profile.run_name(cfg)
        log(f"[{i}/{len(runs)}] {name}")
        t1 = time.perf_counter()
        try:
            result = train_run(cfg, progress=False, log=lambda *a: None)
            log(f"    {result.summary()}{' (already complete)' if result.skipped else ''}")
            log(f"    {_test_line(result.metrics)}")
            outcomes.append(Outcome(name, "skipped" if result.skipped else "ok",
                                    seconds=time.perf_counter() - t1))
        except Exception as e:  # one failing run must not stop the others
            outcomes.append(Outcome(name, "failed", f"{type(e).__name__}: {e}",
                                    time.perf_counter() - t1))
            log(f"    FAILED: {type(e).__name__}: {e}")
    for i, search in enumerate(searches, 1):  # seed 003's cut searches (resumable like runs)
        log(f"[search {i}/{len(searches)}] {search.name}")
        t1 = time.perf_counter()
        try:
            base = dataclasses.replace(search.base, **extra)
            table = search_cut(base, search.method, search.folder,
                               log=lambda line: log(f"    {line}"))
            chosen = json.loads((search.folder / rf.SEARCH_CHOICE).read_text())
            log(f"    chosen {chosen['chosen']} of {len(table)} candidates: "
                f"{_test_line({'test': chosen['test']})}")
            outcomes.append(Outcome(search.name, "ok", seconds=time.perf_counter() - t1))
        except Exception as e:
            outcomes.append(Outcome(search.name, "failed", f"{type(e).__name__}: {e}",
                                    time.perf_counter() - t1))
            log(f"    FAILED: {type(e).__name__}: {e}")
    failed = [o.name for o in outcomes if o.status == "failed"]
    log(f"matrix: {time.perf_counter() - t0:.0f} s wall, {len(failed)} failed {failed}")
    if profile.settings:  # seed 004: weights x strategy; a strategy table would merge settings
        _print_settings_tables(profile.out_root, log)
        return outcomes
    table = collect_runs(profile.out_root)
    log(strategy_table_markdown(strategy_table(table, tuple(SEED001_METRICS)), SEED001_METRICS))
    if len(set(table["strategy"])) > 1 and "full" in set(table["strategy"]):
        c = claims(table)
        log(json.dumps(c, indent=1))
        (profile.out_root / rf.CLAIMS).write_text(json.dumps(c, indent=1))
    return outcomes


def _print_settings_tables(profile_dir: Path,
                           log: Callable[[str], None] = functools.partial(print, flush=True)
                           ) -> None:
    """Seed 004's model x setting table per dataset (test AUROC [95% CI]) and the paired gain
    from pretraining, as notebook 13 shows them."""
    from ..evaluation import paper004

    runs = paper004.collect(profile_dir)
    if runs.empty:
        log("no complete run with a seed-004 setting")
        return
    for dataset in dict.fromkeys(runs["dataset"]):
        log(f"\n{dataset}: test macro AUROC [95% CI, percentile bootstrap]")
        log(paper004.settings_table(runs, dataset).to_string())
    gain = paper004.pretraining_gain(runs)
    if not gain.empty:
        log("\npretrained + all minus random + all (paired bootstrap over the same test images):")
        log(gain[["dataset", "model", "gain", "low", "high"]].to_string(
            index=False, float_format="{:+.4f}".format))


def _test_line(metrics: dict) -> str:
    """The two numbers a smoke check reads: test accuracy and AUROC (when the run has one)."""
    t = metrics["test"]
    auroc = t.get("auroc_macro")
    return (f"test accuracy {t['accuracy']:.3f}, AUROC "
            f"{'n/a' if auroc is None else format(auroc, '.3f')}")
