"""Issue 14: what a skeptical user runs into on small folders. Each case is reproduced first,
then the fix is checked: other data refused, small classes named, a failed attempt retried."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medtl_lib.cli import main
from medtl_lib.config import RunConfig
from medtl_lib.data.identity import RunDataMismatchError
from medtl_lib.data.prepare import SmallClassError
from medtl_lib.data.synthetic import write_synthetic
from medtl_lib.train_run import RunConfigMismatchError, train_run

QUIET = {"progress": False, "log": lambda *a: None}


def _cfg(data: Path, out: Path, **kw) -> RunConfig:
    base = dict(dataset="sarscov2_ct", data_dir=str(data), model="test_resnet", weights="none",
                img_size=32, epochs=1, batch_size=16, out=str(out))
    return RunConfig(**{**base, **kw})


def _data(tmp_path: Path, name: str, n: int = 20, seed: int = 0) -> Path:
    return write_synthetic("sarscov2_ct", tmp_path / name, n_per_class=n, size=32, seed=seed)


# ---------------------------------------------------------------- 1. the data are the run's
def test_a_finished_run_refuses_other_data_and_accepts_the_same_data_moved(tmp_path):
    a = _data(tmp_path, "a")
    out = tmp_path / "run"
    first = train_run(_cfg(a, out), **QUIET)
    other = _data(tmp_path, "b", n=25, seed=1)
    with pytest.raises(RunDataMismatchError, match=r"40 image\(s\) at .* then, 50 at .* now"):
        train_run(_cfg(other, out), **QUIET)
    moved = tmp_path / "moved"
    shutil.copytree(a, moved)
    lines: list[str] = []
    again = train_run(_cfg(moved, out), progress=False, log=lines.append)
    assert again.skipped and again.metrics == first.metrics
    assert any("same data as before" in line for line in lines)
    # one image replaced by another of the same class and name: the same counts, other data
    victim = next((moved / "COVID").iterdir())
    victim.write_bytes(next((moved / "non-COVID").iterdir()).read_bytes())
    with pytest.raises(RunDataMismatchError, match="files differ"):
        train_run(_cfg(moved, out), **QUIET)


def test_the_cli_says_so_in_one_line(tmp_path, capsys):
    a, b = _data(tmp_path, "a"), _data(tmp_path, "b", n=21)
    argv = ["train", "--dataset", "sarscov2_ct", "--model", "test_resnet", "--weights", "none",
            "--img-size", "32", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv + ["--data-dir", str(a)]) == 0
    capsys.readouterr()
    assert main(argv + ["--data-dir", str(b)]) == 2
    err = capsys.readouterr().err
    assert "trained on other data" in err and "COVID: 20 -> 21" in err


# ---------------------------------------------------------------- 2. small classes
def _shrink(data: Path, cls: str, keep: int) -> None:
    for f in sorted((data / cls).iterdir())[keep:]:
        f.unlink()


@pytest.mark.parametrize("keep, message", [(3, "class 'COVID' (3 image(s): train"),
                                           (1, "class 'COVID' (1 image) cannot be split")])
def test_a_class_too_small_for_every_split_is_refused_by_name(tmp_path, keep, message):
    data = _data(tmp_path, "d")
    _shrink(data, "COVID", keep)
    with pytest.raises(SmallClassError) as err:
        train_run(_cfg(data, tmp_path / "run"), **QUIET)
    assert message in str(err.value)
    assert not (tmp_path / "run" / "history.csv").exists()  # refused before any training


def test_allow_small_classes_trains_and_records_them(tmp_path):
    data = _data(tmp_path, "d")
    _shrink(data, "COVID", 3)
    out = tmp_path / "run"
    with pytest.raises(SmallClassError):
        train_run(_cfg(data, out), **QUIET)
    result = train_run(_cfg(data, out, allow_small_classes=True), **QUIET)  # retried freely
    small = json.loads((out / "metrics.json").read_text())["small_classes"]
    assert set(small) == {"COVID"} and small["COVID"]["total"] == 3
    assert result.metrics["test"]["n"] >= 1


# ---------------------------------------------------------------- 3. a failed attempt
def test_an_attempt_that_failed_before_its_first_epoch_does_not_block_its_retry(tmp_path):
    data = _data(tmp_path, "d")
    out = tmp_path / "run"
    with pytest.raises(Exception, match="missing.pth"):
        train_run(_cfg(data, out, weights=str(tmp_path / "missing.pth")), **QUIET)
    assert (out / "config.yaml").is_file() and (out / "split.csv").is_file()
    lines: list[str] = []
    result = train_run(_cfg(data, out), progress=False, log=lines.append)
    assert result.metrics["status"] == "complete" and not result.skipped
    assert any("stopped before its first epoch; starting over" in line for line in lines)
    # with training progress in the folder, another configuration is still refused
    with pytest.raises(RunConfigMismatchError, match="another configuration"):
        train_run(_cfg(data, out, lr=0.5), **QUIET)


# ---------------------------------------------------------------- 4. damaged checkpoints
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_damaged_last_pt_resumes_from_the_one_before_with_identical_numbers(loaders,
                                                                               tmp_path):
    from test_strategies_seed001 import _trainer, assert_same_run

    train, val = loaders

    def make(ckpt):
        return _trainer("full", epochs=3, ckpt=ckpt, schedule="cosine")

    ref = make(tmp_path / "ref").fit(train, val, seed=4)
    t = make(tmp_path / "run")

    def kill(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    t.callbacks.append(kill)
    with pytest.raises(KeyboardInterrupt):
        t.fit(train, val, seed=4)
    assert (tmp_path / "run" / "last.prev.pt").is_file()
    _truncate(tmp_path / "run" / "last.pt")
    with pytest.warns(UserWarning, match=r"last\.pt is damaged.*resuming from .*last\.prev\.pt "
                                         r"\(after epoch 1\)"):
        resumed = make(tmp_path / "run").fit(train, val, seed=4)
    assert resumed.resumed_from == 1
    assert_same_run(ref, resumed, tmp_path / "ref", tmp_path / "run")


def test_no_intact_checkpoint_is_a_named_error_that_keeps_the_files(loaders, tmp_path):
    from medtl_lib.checkpoint_files import CorruptCheckpointError
    from test_strategies_seed001 import _trainer

    train, val = loaders
    t = _trainer("full", epochs=3, ckpt=tmp_path)
    t.callbacks.append(lambda row: (_ for _ in ()).throw(KeyboardInterrupt)
                       if row["epoch"] == 2 else None)
    with pytest.raises(KeyboardInterrupt):
        t.fit(train, val)
    for name in ("last.pt", "last.prev.pt"):
        _truncate(tmp_path / name)
    with pytest.raises(CorruptCheckpointError, match=r"last\.pt is damaged.*No intact checkpoint"):
        _trainer("full", epochs=3, ckpt=tmp_path).fit(train, val)
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "history.csv").is_file()


def test_a_damaged_best_pt_of_a_finished_run_is_said(tmp_path):
    from medtl_lib.checkpoint_files import CorruptCheckpointError
    from medtl_lib.models.factory import load_run_model

    data = _data(tmp_path, "d")
    out = tmp_path / "run"
    first = train_run(_cfg(data, out), **QUIET)
    assert not (out / "last.pt").exists() and not (out / "last.prev.pt").exists()
    assert set(json.loads((out / "checkpoints.json").read_text())) == {"best.pt"}
    load_run_model(out)  # intact: loads
    _truncate(out / "best.pt")
    lines: list[str] = []
    again = train_run(_cfg(data, out), progress=False, log=lines.append)
    assert again.skipped and again.metrics == first.metrics  # the metrics stand
    assert any("best.pt is damaged" in line for line in lines)
    with pytest.raises(CorruptCheckpointError, match="best.pt is damaged"):
        load_run_model(out)


# ---------------------------------------------------------------- 5. caches and workers
def test_an_unwritable_cache_names_the_variable_and_the_fallback(tmp_path):
    from medtl_lib.data.cache import check_writable

    target = tmp_path / "ro"
    target.write_text("a file where the cache folder should be")  # fails even for root
    with pytest.raises(OSError, match="MEDTL_CACHE_DIR.*per_image"):
        check_writable(target / "decoded", "the decoded-image cache",
                       "or use --pipeline per_image")


def test_offline_weights_work_with_an_unwritable_weights_cache(tmp_path, monkeypatch):
    from medtl_lib.models import weights as W
    from medtl_lib.models.factory import create_model

    if W.offline_weights("tf_efficientnet_lite0") is None:
        pytest.skip("the offline EfficientNet-Lite0 package is not installed")
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")  # MEDTL_CACHE_DIR/weights cannot be created
    monkeypatch.setenv("MEDTL_CACHE_DIR", str(blocker))
    monkeypatch.setattr("medtl_lib.models.weights.hub_reachable", lambda *a, **k: False)
    with pytest.warns(UserWarning, match="cannot be kept.*MEDTL_CACHE_DIR"):
        _, info = create_model("efficientnet_lite0", 3, weights="auto", img_size=64)
    assert info.weights_source.startswith("offline:")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_decode_workers_die_with_a_killed_parent(tmp_path):
    marker = f"medtl-orphan-test-{os.getpid()}"
    data = write_synthetic("brain_tumor_mri", tmp_path / "d", n_per_class=150, size=192)
    script = tmp_path / "build.py"
    script.write_text(
        "import sys, pathlib\n"
        "from medtl_lib.data.cache import build_cache\n"
        "root = pathlib.Path(sys.argv[1])\n"
        "paths = sorted(str(p.relative_to(root)) for p in root.rglob('*') if p.suffix in ('.jpg', '.png'))\n"
        "build_cache(root, paths * 20, 160, sys.argv[2], workers=2, progress=False)\n")
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(script), str(data), str(cache), marker])
    deadline = time.time() + 60
    while not list(cache.glob(".*.tmp")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the workers are decoding
    workers = _processes_with(marker) - {proc.pid}
    assert workers, "no decode workers found: the build ended too soon"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5
    while _processes_with(marker) & workers and time.time() < deadline:
        time.sleep(0.1)
    left = _processes_with(marker) & workers
    for pid in left:  # leave no orphan behind, even when failing
        os.kill(pid, signal.SIGKILL)
    assert not left, "decode workers outlived their parent"


def _processes_with(marker: str) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
                status = (entry / "status").read_text()
            except OSError:
                continue
            if marker.encode() in cmd and "State:\tZ" not in status:
                found.add(int(entry.name))
    return found


# ---------------------------------------------------------------- 8. data check, all at once
def test_data_check_reports_every_problem_in_one_go(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    root = tmp_path / "ds"
    rng = np.random.default_rng(0)

    def image(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)

    for i in range(12):
        image(root / "benign" / f"{i}.png")
        image(root / "Benign" / f"{i}.png")  # a second folder for the same class
    for i in range(3):
        image(root / "tumour" / f"{i}.png")
    (root / "empty").mkdir()
    (root / "tumour" / "scan.dcm").write_bytes(b"DICM" * 10)
    (root / "tumour" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    shutil.copy(root / "benign" / "0.png", root / "tumour" / "copy.png")
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    for expected in ("ERROR [empty class] class 'empty'", "ERROR [case twins] folders 'Benign/', "
                     "'benign/'", "warning [small class] class 'tumour' has 4 image(s)",
                     "warning [unreadable] tumour/broken.png",
                     "warning [unsupported format] 1 .dcm file(s) skipped, e.g. tumour/scan.dcm",
                     "warning [conflicting labels] identical files in classes 'benign' "
                     "(benign/0.png), 'tumour' (tumour/copy.png)", "NOT USABLE as it is"):
        assert expected in out, expected


# ---------------------------------------------------------------- read-only folders
def _nobody() -> list[str]:
    """A command prefix that runs as an unprivileged user (root ignores permissions)."""
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(prefix + [sys.executable, "-c", "import medtl_lib"],
                           capture_output=True, cwd="/")
    if probe.returncode != 0:
        pytest.skip("the unprivileged user cannot read this checkout")
    return prefix


def test_read_only_run_and_cache_folders_are_named_and_the_fallback_works():
    import tempfile

    prefix = _nobody()
    shared = Path(tempfile.mkdtemp(prefix="medtl-ro-"))
    try:
        shared.chmod(0o755)
        data = write_synthetic("sarscov2_ct", shared / "data", n_per_class=20, size=32)
        for d in (shared / "ro_run", shared / "ro_cache"):
            d.mkdir(mode=0o755)  # root's: read-only for the unprivileged user
        for d in (shared / "rw_run", shared / "rw_cache"):
            d.mkdir()
            d.chmod(0o777)

        def medtl(out: str, cache: str, *extra: str) -> subprocess.CompletedProcess:
            env = {**os.environ, "MEDTL_CACHE_DIR": str(shared / cache), "HF_HUB_OFFLINE": "1"}
            return subprocess.run(
                prefix + [sys.executable, "-m", "medtl_lib", "train", "--dataset", "sarscov2_ct",
                          "--data-dir", str(data), "--model", "test_resnet", "--weights", "none",
                          "--img-size", "32", "--epochs", "1", "--no-progress",
                          "--out", str(shared / out / "run"), *extra],
                env=env, capture_output=True, text=True, cwd="/", timeout=300)

        r = medtl("ro_run", "rw_cache")
        assert r.returncode == 2 and "the run folder cannot be written" in r.stderr, r.stderr
        r = medtl("rw_run", "ro_cache")
        assert r.returncode == 2, r.stderr
        assert "MEDTL_CACHE_DIR" in r.stderr and "--pipeline per_image" in r.stderr
        r = medtl("rw_run", "ro_cache", "--pipeline", "per_image")  # the fallback, retried freely
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)
