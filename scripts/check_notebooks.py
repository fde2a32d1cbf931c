"""Execute every course notebook with its default parameters, as a student opening it would, and
time each one: the numbers behind docs/teaching.md and issue 16's "runs from notebooks/ and from the
root".

    python scripts/check_notebooks.py --cwd notebooks [--workdir DIR] [--only 03_train,04_evaluate]
    python scripts/check_notebooks.py --cwd root

Runs and stand-ins go to --workdir (MEDTL_WORKDIR; default: a fresh temporary folder), never into
the checkout; the executed copies land there too. Notebooks run in their course order, so 04, 10
and 14 find the run that 03 trained. Exit code 1 if any notebook fails.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cwd", choices=("notebooks", "root"), default="notebooks")
    ap.add_argument("--workdir", default="")
    ap.add_argument("--only", default="", help="comma-separated notebook names (default: all)")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medtl-notebooks-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MEDTL_WORKDIR"] = str(work)  # before the kit is imported: kernels inherit it
    import papermill as pm

    from medtl_lib.orchestration.notebooks import kernel_manager

    names = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - set(names)
        if unknown:
            ap.error(f"unknown notebook(s) {sorted(unknown)}")
        names = [n for n in names if n in wanted]
    cwd = REPO / "notebooks" if args.cwd == "notebooks" else REPO
    (work / "executed").mkdir(exist_ok=True)
    print(f"workdir {work}; notebooks run from {cwd}")
    failed = []
    for name in names:
        t = time.perf_counter()
        try:
            pm.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"),
                                str(work / "executed" / f"{name}.ipynb"), cwd=str(cwd),
                                kernel_name="python3", progress_bar=False,
                                kernel_manager_class=kernel_manager())
            status = "ok"
        except Exception as exc:  # report and go on
            status = f"FAILED: {getattr(exc, 'ename', type(exc).__name__)}: {getattr(exc, 'evalue', exc)}"
            failed.append(name)
        print(f"{name:<30} {time.perf_counter() - t:7.1f} s  {status}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
