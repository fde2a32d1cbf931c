"""The ``medtl`` command: train, run, data check/audit/synth, bench train/loader/memory."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from .config import RunConfig


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="sarscov2_ct | breakhis_400x | brain_tumor_mri | folder")
    p.add_argument("--data-dir", help="dataset folder (default: search $MEDTL_DATA_DIR, ./data, Kaggle)")
    p.add_argument("--model", required=True, help="preset (resnet, densenet, convnext, vit, vit_star, "
                   "efficientnet_lite0) or any timm model name")
    p.add_argument("--weights", default="auto", help="auto | none | PATH (default: auto)")
    p.add_argument("--strategy", default="full", help="full | linear_probe")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--epochs", type=int, help="default: 10 (brain MRI) or 20")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, help="default: the preset's (1e-3; ViT* 1e-5)")
    p.add_argument("--threshold", type=float, default=0.9, help="T (default 0.9)")
    p.add_argument("--patience", type=int, default=2, help="p (default 2)")
    p.add_argument("--stop-patience", type=int, default=2, help="P (default 2)")
    p.add_argument("--factor", type=float, default=0.5, help="phi (default 0.5)")
    p.add_argument("--split", default="stratified", help="stratified (0.8/0.1/0.1) | predefined")
    p.add_argument("--split-csv", help="reuse the split of an earlier run (its split.csv)")
    p.add_argument("--group-by", default="duplicates", help="keep groups in one split: duplicates "
                   "(default) | patient (BreaKHis patients + duplicates) | none (image-level, leaks)")
    p.add_argument("--crop-scale-min", type=float, default=0.5,
                   help="random-resized-crop area lower bound (default 0.5)")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="train on the eval transform (no crop/flip); lets linear_probe cache features")
    p.add_argument("--pipeline", default="cached", help="cached (default: decode once into "
                   "$MEDTL_CACHE_DIR, augment batches on the device) | per_image (the authors': "
                   "PIL + timm transforms per image per epoch)")
    p.add_argument("--no-cache-features", dest="cache_features", action="store_false",
                   help="linear_probe: run the frozen backbone every epoch even when features "
                   "could be computed once")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--amp", default="auto", help="auto | off | bf16 | fp16")
    p.add_argument("--strict", action="store_true", help="stop on unreadable images instead of skipping them")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    names = {f.name for f in fields(RunConfig)}
    return RunConfig.from_dict({k: v for k, v in vars(args).items() if k in names and v is not None})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medtl", description="MedTL: transfer learning for "
                                     "medical image classification (seed 000 reproduction kit)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="run a profile through the notebooks, as run_all.sh does "
                   "(medtl run [smoke|paper|FILE.yaml] [--only PATTERN] [--dry-run])")

    p = sub.add_parser("train", help="train and evaluate one model on one dataset")
    _add_train_args(p)
    p.add_argument("--out", required=True, help="run folder (rerun the same command to resume)")

    data = sub.add_parser("data", help="inspect or generate datasets").add_subparsers(
        dest="data_command", required=True)
    c = data.add_parser("check", help="counts per class and every problem found")
    c.add_argument("path")
    c.add_argument("--dataset", default="folder")
    a = data.add_parser("audit", help="exact and near-duplicate images within/across classes and splits")
    a.add_argument("path")
    a.add_argument("--dataset", default="folder")
    a.add_argument("--out", help="write DIR/duplicates.csv (group,kind,path,label,split) and a summary")
    a.add_argument("--max-distance", type=int, help="near-duplicate pHash distance (bits of 256)")
    a.add_argument("--exact-only", action="store_true", help="byte-identical files only")
    s = data.add_parser("synth", help="write a synthetic stand-in in the real layout")
    s.add_argument("name")
    s.add_argument("--out", required=True)
    s.add_argument("--n-per-class", type=int, default=40)
    s.add_argument("--size", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    b = bench.add_parser("train", help="kit loop vs a plain PyTorch loop, images/s")
    b.add_argument("--dataset", required=True)
    b.add_argument("--data-dir")
    b.add_argument("--model", required=True)
    b.add_argument("--weights", default="none", help="weights do not change speed (default none)")
    b.add_argument("--img-size", type=int, default=128)
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--batches", type=int, default=20, help="timed batches per repeat")
    b.add_argument("--repeats", type=int, default=5)
    b.add_argument("--device", default="auto")
    lo = bench.add_parser("loader", help="authors' per-image pipeline vs the decoded cache, images/s")
    lo.add_argument("--dataset", required=True)
    lo.add_argument("--data-dir")
    lo.add_argument("--img-size", type=int, default=224)
    lo.add_argument("--batch-size", type=int, default=32)
    lo.add_argument("--workers", type=int, help="loader processes for both (default: one per core)")
    lo.add_argument("--repeats", type=int, default=3)
    lo.add_argument("--model", default="resnet", help="whose data config (mean/std, "
                    "interpolation, crop_pct) to use (default resnet)")
    lo.add_argument("--device", default="auto", help="where the cached path augments")
    lo.add_argument("--max-images", type=int, help="time on at most this many training images")
    m = bench.add_parser("memory", help="peak RSS and cache size of real runs on growing subsets")
    m.add_argument("--dataset", required=True)
    m.add_argument("--data-dir")
    m.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    m.add_argument("--img-size", type=int, default=224)
    m.add_argument("--model", default="efficientnet_lite0")
    m.add_argument("--epochs", type=int, default=1)
    m.add_argument("--pipeline", default="cached")
    m.add_argument("--weights", default="auto")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:  # its own options; argparse's REMAINDER would not pass them through
        from .experiments import main as run_main

        return run_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            from .run import train_run

            cfg = config_from_args(args)
            result = train_run(cfg, progress=False if args.no_progress else None)
            print(json.dumps({"out": str(result.out), "test": {
                k: result.metrics["test"][k] for k in
                ("accuracy", "precision_macro", "recall_macro", "f1_macro")}}, indent=2))
            return 0
        if args.command == "data" and args.data_command == "check":
            from .data.check import check_dataset

            return check_dataset(args.path, args.dataset)
        if args.command == "data" and args.data_command == "audit":
            from .data.audit import HAMMING_THRESHOLD, audit_dataset, format_summary, write_audit

            result = audit_dataset(args.path, args.dataset, near=not args.exact_only,
                                   max_distance=args.max_distance if args.max_distance is not None
                                   else HAMMING_THRESHOLD)
            print(format_summary(result))
            if args.out:
                print(f"wrote {write_audit(result, args.out)}")
            return 0
        if args.command == "data" and args.data_command == "synth":
            from .data.synthetic import write_synthetic

            out = write_synthetic(args.name, args.out, n_per_class=args.n_per_class,
                                  size=args.size, seed=args.seed)
            print(f"wrote synthetic '{args.name}' to {out}")
            return 0
        if args.command == "bench" and args.bench_command == "train":
            from .bench import bench_train

            print(json.dumps(bench_train(**{k: v for k, v in vars(args).items()
                                            if k not in ("command", "bench_command")}), indent=2))
            return 0
        if args.command == "bench" and args.bench_command in ("loader", "memory"):
            from . import bench

            fn = bench.bench_loader if args.bench_command == "loader" else bench.bench_memory
            kwargs = {k: v for k, v in vars(args).items() if k not in ("command", "bench_command")}
            if "fractions" in kwargs:
                kwargs["fractions"] = tuple(kwargs["fractions"])
            print(json.dumps(fn(**kwargs), indent=2))
            return 0
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume from the last complete epoch",
              file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, ArithmeticError) as exc:
        print(f"medtl: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
