"""Resuming a run from its checkpoints (the verified file I/O is :mod:`medtl_lib.checkpoint_files`).

:func:`load_resume_state` also reads the single-stage checkpoints of a MedTL from before stages,
so a seed-000 run interrupted then resumes where it stopped.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import run_folder as rf
from ..checkpoint_files import PREVIOUS, CorruptCheckpointError, load_checkpoint


def load_resume_state(ckpt_dir: Path, stages: Sequence[Any]) -> dict | None:
    """The newest intact resume checkpoint of a run folder, in today's (staged) form: the last
    one, else the one before it (a damaged or missing one costs one epoch, not the run); None
    when there is none. ``stages``: the strategy's stages (``name``, ``epochs``), to check where
    the checkpoint stopped and to place an old one."""
    last = ckpt_dir / rf.LAST
    damaged: list[str] = []
    state = None
    for path in (last, ckpt_dir / PREVIOUS[rf.LAST]):
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path)
        except CorruptCheckpointError as exc:
            damaged.append(str(exc))
            continue
        if damaged or path.name != rf.LAST:
            warnings.warn(f"{'; '.join(damaged) or f'{rf.LAST} is missing'}: resuming from "
                          f"{path} (after epoch {state.get('epoch')})", stacklevel=3)
        break
    if state is None:
        if damaged:
            raise CorruptCheckpointError(
                "; ".join(damaged) + ". No intact checkpoint to resume from: delete "
                f"{last} (and {rf.LAST_PREVIOUS}) to train this run again from its first epoch")
        return None
    if "stage_index" not in state:
        state = from_single_stage_checkpoint(state, stages, last)
    if state["stage"] != stages[state["stage_index"]].name:
        raise ValueError(f"{last} stopped in stage '{state['stage']}', "
                         "which this strategy does not have at that position")
    return state


def from_single_stage_checkpoint(state: dict, stages: Sequence[Any], path: Path) -> dict:
    """A resume checkpoint of a MedTL before stages (one stage, the dual monitor) in today's
    form."""
    if "monitor" not in state or len(stages) != 1:
        raise ValueError(f"{path} was written by an older MedTL and does "
                         "not fit this strategy; delete it to restart the run")
    stage = stages[0]
    stopped = state["monitor"]["reductions"] >= state["monitor"]["stop_patience"]
    history = [{"stage": stage.name, **row} for row in state["history"]]
    return {**state, "stage_index": 0, "stage": stage.name, "stage_epoch": state["epoch"],
            "stage_done": stopped or state["epoch"] >= stage.epochs, "history": history,
            "schedule": state["monitor"], "selector": {"best": None, "since_best": 0},
            "strategy": {},
            "stages": [{"name": stage.name, "epochs_run": state["epoch"],
                        "best_epoch": state["best_epoch"], "stopped_early": stopped}]}
