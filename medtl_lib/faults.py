"""Fault points for the fault-injection tests (``tests/test_faults.py``).

``MEDTL_FAULT=<point>:<n>`` makes this process SIGKILL itself, as a power cut or the OOM killer
would, the n-th time it passes :func:`point` ``<point>``. The points sit where a kill is most
likely to hurt: between two chunks of the cache build, after an optimizer step, after an epoch's
checkpoint, between the evaluated splits, just before a run is marked complete. Without the
variable (always, outside those tests) a point costs one environment lookup.
"""
from __future__ import annotations

import os
import signal

POINTS = ("cache.chunk", "train.step", "train.epoch", "eval.split", "run.complete")
_passed: dict[str, int] = {}  # per process: how often each point was passed


def point(name: str) -> None:
    spec = os.environ.get("MEDTL_FAULT")
    if not spec:
        return
    target, _, n = spec.partition(":")
    if target != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)
