"""Notebooks: executed by papermill in a kernel of their own (:func:`execute`), and exported to
HTML (each executed notebook's copy, and notebook 05's as the results page)."""
from __future__ import annotations

import functools
import logging
import os
import traceback
from pathlib import Path
from typing import Any, Callable

from .plan import Step, plan
from .profile import NOTEBOOKS, Profile

KERNEL = "python3"  # ipykernel's own kernel: present wherever ipykernel is installed


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
        extra = {"kernel_manager_class": kernel_manager()} if os.name == "posix" else {}
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel,
                            cwd=str(NOTEBOOKS), log_output=True, progress_bar=False, **extra)
    finally:
        logger.removeHandler(handler)
        handler.close()


def kernel_manager():
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


def export_step_html(step: Step, log: Callable[[str], None] = print) -> None:
    """An executed notebook's HTML copy beside it (``03_train.html``), so the results page can
    link every run's notebooks for readers without Jupyter; a failed one too (it shows the
    error). Skipped when the copy is newer than the notebook; never fails the profile."""
    from ..evaluation.results_page import export_notebook_html, html_is_stale

    if not html_is_stale(step.output):
        return
    try:
        export_notebook_html(step.output)
    except Exception as exc:  # a page we could not write is reported, not fatal
        log(f"    no HTML copy of {step.output.name}: {short_error(exc)}")


def export_html_report(executed: Path, profile_name: str = "",
                       profile: Profile | None = None) -> Path:
    """Notebook 05's executed copy as ``results.html`` beside it: no code cells, titled
    '<profile> results', every figure embedded with its alt text and nothing loaded from
    outside the file (medtl_lib.evaluation.results_page). With the ``profile``, the page shows
    its report notebooks' results: seed 000's sections only where its reports list them, the
    other papers' report notebooks (their executed copies, every run's) where Table II stands."""
    from ..evaluation.results_page import export_results_page

    if profile is None:
        return export_results_page(executed, profile_name)
    executed_reports = [s.output for s in plan(profile) if s.name.split("/")[-1] in
                        profile.reports and s.output.is_file()]
    return export_results_page(executed, profile_name, profile.reports, executed_reports)


def short_error(exc: Exception) -> str:
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    text = f"{name}: {value}".strip()
    if not text:
        return traceback.format_exc(limit=1)
    return text if len(text) < 600 else text[:600] + " ..."


