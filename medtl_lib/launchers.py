"""Where a profile's runs execute: one after another here (the default), side by side on this
machine (``--launcher local --jobs N``), or as jobs of a SLURM cluster through submitit
(``--launcher slurm``; ``submitit-local`` is submitit's local executor, the same code path without
a cluster).

A *run group* is what one run needs: its ``03_train`` then ``04_evaluate`` (or a cut search's
``09_truncation``). Groups are independent, so they are what is spread out; the course steps
before them (00, 01) and the reports after them (02, 05, 06, 07, 08, 13) run here, once every
group has finished. Every group is an ordinary resumable run: a job that dies or is preempted is
started again and continues from its last complete epoch, and a finished run is skipped.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

LAUNCHERS = ("inline", "local", "slurm", "submitit-local")


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


def run_group(tasks: list[Task], kernel: str, gpu: str | None = None) -> list[Outcome]:
    """Execute one group's notebooks in order; the first failure skips the rest of the group.
    ``gpu`` pins the group to one device (CUDA_VISIBLE_DEVICES, inherited by the kernel)."""
    from .profiles import _short_error, execute

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
            out.append(Outcome(t.name, "failed", _short_error(exc), time.perf_counter() - t0))
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
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}, got '{launcher}'")
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
