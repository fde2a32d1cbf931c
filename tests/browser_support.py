"""Helpers for the browser tests (tests/test_browser.py): find Chromium, serve JupyterLab.

The course is tested as a student meets it: JupyterLab served from this machine, opened in the
Debian Chromium that Playwright drives (Playwright's own browser download is never used). Every
process started here is started in its own process group and ended by its id, also when a test
fails half-way.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_NAMES = ("chromium", "chromium-browser")
INSTALL_HINT = ("Install Chromium (Debian/Ubuntu: `sudo apt-get install -y chromium`; "
                "tests/run_tests.sh does this itself when run as root) or point MEDTL_CHROMIUM "
                "at a Chromium/Chrome executable.")


def chromium_path() -> str | None:
    """MEDTL_CHROMIUM if set, else the Debian Chromium, else chromium / chromium-browser on PATH."""
    env = os.environ.get("MEDTL_CHROMIUM", "").strip()
    if env:
        found = shutil.which(env) or (env if os.access(env, os.X_OK) else None)
        return found
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The Chromium to drive, or a failing test (never a skip) that says how to install one."""
    import pytest

    path = chromium_path()
    if path is None:
        env = os.environ.get("MEDTL_CHROMIUM", "").strip()
        where = f"MEDTL_CHROMIUM={env!r} is not an executable" if env else \
            f"no Chromium at {', '.join(CHROMIUM_CANDIDATES)} or on PATH"
        pytest.fail(f"The browser tests need Chromium: {where}. {INSTALL_HINT}", pytrace=False)
    return path


def require_playwright():
    import pytest

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The browser tests need the Python package playwright (the `test` extra: "
                    "bash tests/run_tests.sh installs it).", pytrace=False)
    return sync_playwright


# ----------------------------------------------------------------------------- JupyterLab

@dataclass
class Lab:
    url: str  # http://127.0.0.1:PORT/ (base URL, ends with /)
    token: str
    root: Path  # the folder JupyterLab serves
    log: Path  # the server's stdout + stderr

    def lab_url(self, path: str = "") -> str:
        return f"{self.url}lab/tree/{path}?token={self.token}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no server log)"


# JupyterLab user settings for the test session: nothing is ever saved (autosave off), all cells
# stay in the DOM (no windowing), no news fetched from the internet.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}


def copy_course(target: Path) -> Path:
    """A throwaway copy of notebooks/ beside a link to the kit, laid out like the repository.

    JupyterLab then runs the notebooks exactly as `jupyter lab notebooks/` does (the kernel starts
    in the notebooks folder, the boot cell finds `../medtl_lib`, which resolves to this checkout)
    while nothing it writes - executed outputs, checkpoints - can reach the repository's notebooks.
    """
    target.mkdir(parents=True, exist_ok=True)
    nb = target / "notebooks"
    shutil.copytree(REPO / "notebooks", nb, ignore=_not_course_files)
    (target / "medtl_lib").symlink_to(REPO / "medtl_lib", target_is_directory=True)
    return nb


def _not_course_files(folder: str, names: list[str]) -> set[str]:
    """Skip checkpoints, caches and anything that is neither a file nor a folder (the IPC
    sockets of kernels that papermill may be running in notebooks/ right now)."""
    skip = {".ipynb_checkpoints", "__pycache__"}
    return {n for n in names if n in skip
            or not (os.path.isfile(os.path.join(folder, n)) or os.path.isdir(os.path.join(folder, n)))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (Linux /proc; empty elsewhere)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM to the server (it shuts its kernels down), SIGKILL to whatever of the process group
    we created for it (start_new_session=True) is still alive after `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for pid in _group_members(proc.pid):  # kernels left behind by an unclean shutdown
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def jupyter_lab(root: Path, work: Path, timeout: float = 180.0) -> Iterator[Lab]:
    """Serve `root` with the venv's JupyterLab on a free localhost port (no browser opened, a
    known token, private config / runtime / settings folders under `work`), stop it afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "MEDTL_STATIC"))}
    dirs = {name: work / name for name in ("config", "runtime", "data", "settings", "workspaces",
                                           "ipython")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    for rel, value in LAB_SETTINGS.items():
        f = dirs["settings"] / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
               JUPYTER_DATA_DIR=str(dirs["data"]), JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
               JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]), IPYTHONDIR=str(dirs["ipython"]),
               HF_HUB_OFFLINE="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    token = "medtl-" + os.urandom(12).hex()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={_free_port()}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--ServerApp.allow_remote_access=False",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
           "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = work / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=str(root), env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        lab = _wait_ready(proc, dirs["runtime"], token, root, log, timeout)
        yield lab
    finally:
        _stop(proc)


def _wait_ready(proc, runtime: Path, token: str, root: Path, log: Path, timeout: float) -> Lab:
    """The server's own record of its URL (runtime/jpserver-PID.json), then /api/status = 200."""
    deadline = time.monotonic() + timeout
    info_file = runtime / f"jpserver-{proc.pid}.json"
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n"
                               + log.read_text(errors="replace")[-4000:])
        if url is None and info_file.is_file():
            try:
                url = json.loads(info_file.read_text())["url"]
            except (ValueError, KeyError):
                url = None
        if url:
            url = url if url.endswith("/") else url + "/"
            req = urllib.request.Request(f"{url}api/status",
                                         headers={"Authorization": f"token {token}"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200:
                        return Lab(url, token, root, log)
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f}s:\n"
                       + log.read_text(errors="replace")[-4000:])


# ----------------------------------------------------------------------------- Chromium

@dataclass
class Traffic:
    """What a page asked for: `allowed` went through, `blocked` was aborted by the route."""

    allowed: list[str]
    blocked: list[str]
    console_errors: list[str]
    page_errors: list[str]


@contextmanager
def chromium_page(executable: str, allow, viewport=(1400, 1000)) -> Iterator[tuple]:
    """(page, traffic) in a fresh headless Chromium; every request whose URL `allow(url)` rejects
    is aborted and recorded, so nothing the page does can leave the machine unnoticed."""
    from playwright.sync_api import sync_playwright

    traffic = Traffic([], [], [], [])

    def route(r):
        url = r.request.url
        if allow(url):
            traffic.allowed.append(url)
            r.continue_()
        else:
            traffic.blocked.append(url)
            r.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=["--disable-dev-shm-usage", "--no-first-run",
                                           "--disable-background-networking",
                                           "--disable-component-update"])
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                          service_workers="block")
            context.route("**/*", route)
            # websockets are not routed; record any that does not go to an allowed host
            page = context.new_page()
            page.on("websocket", lambda ws: None if allow(ws.url) else traffic.blocked.append(ws.url))
            page.on("console", lambda m: traffic.console_errors.append(m.text)
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: traffic.page_errors.append(str(e)))
            yield page, traffic
        finally:
            browser.close()
