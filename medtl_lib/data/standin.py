"""The offline stand-ins a profile or a notebook trains on: written once with the generator of
:mod:`.synthetic`, rewritten when their stamp is stale, and never written over a user's data."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import yaml

SMOKE_PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "smoke.yaml"


def smoke_settings() -> dict:
    """The smoke profile's stand-in settings (its ``synthetic:``), the course's default."""
    return dict(yaml.safe_load(SMOKE_PROFILE.read_text())["synthetic"])


def prepare_synthetic(profile: Any, log: Callable[[str], None] = print) -> None:
    """Write the offline stand-ins a profile asks for (``profile``: a
    :class:`medtl_lib.orchestration.Profile`, or anything with its ``synthetic``, ``datasets``,
    ``data_dirs`` and ``out_root``). One whose stamp differs (an older generator, other settings, a
    write cut short) is rewritten, so an upgrade never trains on stale images; a non-empty folder
    that is not a stand-in (a user's own data) is never touched."""
    if not profile.synthetic:
        return
    import shutil

    from .synthetic import (MARK_FILE, STAMP_FILE, read_stamp, standin_state, synthetic_stamp,
                            write_synthetic)

    rewritten = False
    for ds in profile.datasets:
        target = Path(profile.data_dirs[ds])
        state = standin_state(ds, target, **profile.synthetic)
        if state == "current":
            continue
        if state == "foreign":
            log(f"{target} holds files but is not a synthetic stand-in (no {MARK_FILE} or "
                f"{STAMP_FILE}), so it is left as it is and used as the {ds} data. For the "
                "stand-in, move those files elsewhere or empty the folder.")
            continue
        if state == "stale":
            want, have = synthetic_stamp(ds, **profile.synthetic), read_stamp(target)
            was = ("no stamp: an older generator or a write cut short" if have is None else
                   ", ".join(f"{k} {have.get(k)}" for k in want if have.get(k) != want[k]))
            log(f"rewriting synthetic stand-in {ds} -> {target} (it had {was}; now generator "
                f"version {want['version']}, {profile.synthetic})")
            shutil.rmtree(target)
            rewritten = True
        else:
            log(f"writing synthetic stand-in {ds} -> {target}")
        write_synthetic(ds, target, **profile.synthetic)
    if rewritten and profile.out_root.is_dir() and any(profile.out_root.iterdir()):
        log(f"runs already in {profile.out_root} were trained on the old stand-ins: finished ones "
            "are kept as they are, unfinished ones refuse to resume. Delete that folder (or use "
            "another --runs-dir) to train them on the new images.")


def ensure_standin(dataset: str, target: str | os.PathLike, settings: dict | None = None,
                   log: Callable[[str], None] = print) -> Path:
    """The course's stand-in of one dataset in ``target``, written (or rewritten when its stamp
    is stale) with the smoke profile's settings unless ``settings`` are given; a folder there that
    is not a stand-in is refused, never deleted (notebooks 01, 03 and 11 fall back to this)."""
    import shutil

    from .synthetic import MARK_FILE, standin_state, write_synthetic

    settings = settings or smoke_settings()
    target = Path(target)
    state = standin_state(dataset, target, **settings)
    if state == "current":
        return target
    if state == "foreign":
        raise FileExistsError(f"{target} holds files but is not a synthetic stand-in (no "
                              f"{MARK_FILE}); move them, or point data_dir at your data")
    if state == "stale":
        log(f"rewriting the stale synthetic stand-in {dataset} in {target}")
        shutil.rmtree(target)
    return write_synthetic(dataset, target, **settings)


