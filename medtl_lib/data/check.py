"""``medtl data check``: what a dataset folder holds and everything wrong with it."""
from __future__ import annotations

from .index import build_index
from .registry import DatasetLayoutError, DatasetNotFoundError, get_spec


def check_dataset(path: str, dataset: str = "folder", out=print) -> int:
    """Decode every image; print counts per class and each problem. 0: usable, 1: not usable."""
    spec = get_spec(dataset)
    try:
        root = spec.locate(path)
        index = build_index(spec, root, decode=True)
    except (DatasetLayoutError, DatasetNotFoundError) as exc:
        out(f"NOT USABLE: {exc}")
        return 1
    out(f"{spec.title}\nroot: {root}\n")
    out(index.counts().to_string())
    out(f"\n{len(index.frame)} usable images, {len(index.class_names)} classes")
    if spec.paper_count:
        out(f"the paper reports {spec.paper_count} images")
    modes = index.frame["mode"].value_counts().to_dict()
    sizes = index.frame.groupby(["width", "height"]).size().sort_values(ascending=False)
    out(f"modes: {modes}; most common sizes: "
        + ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.head(3).items()))
    if len(index.bad_files):
        out(f"\n{len(index.bad_files)} problem(s): these files cannot be used and will be skipped "
            "(or stop a --strict run):")
        for row in index.bad_files.itertuples():
            out(f"  {row.path}: {row.reason}")
    else:
        out("no problems found")
    return 0
