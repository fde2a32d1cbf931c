"""The ``medtl`` command: train, run, data check/audit/synth, bench train/loader/memory."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

from .config import RunConfig
from .data.registry import DATASETS


#: help text per RunConfig field; every default comes from RunConfig itself (written once)
_HELP = {
    "dataset": " | ".join(DATASETS),
    "data_dir": "dataset folder (default: search $MEDTL_DATA_DIR, ./data, Kaggle)",
    "model": "preset (resnet, densenet, convnext, vit, vit_star, efficientnet_lite0) or any timm "
             "model name",
    "weights": "auto | none | PATH",
    "strategy": "`medtl strategies` lists them with their arguments",
    "pool": "avg | token (a ViT's class token) | flatten | tokens (the token sequence, for cdtm) "
            "| avg_raw (mean of forward_features, no head norm)",
    "normalize": "input mean/std: model (the backbone's) | clip (seed 002's code)",
    "head": "classifier head: linear | cdtm (seed 002; needs --pool tokens)",
    "img_size": "input size in pixels",
    "epochs": "default: 10 (brain MRI) or 20; a staged strategy splits them",
    "batch_size": "images per batch",
    "lr": "default: the preset's (1e-3; ViT* 1e-5)",
    "optimizer": "adamax (seed 000) | adam | adamw | sgd",
    "momentum": "sgd momentum",
    "weight_decay": "weight decay (coupled L2, decoupled for adamw)",
    "schedule": "LR schedule (dual_monitor: seed 000's)",
    "select_by": "theta*: dual_monitor | val_loss | val_acc | val_macro_acc | val_auroc",
    "early_stop_patience": "end a stage after this many epochs without a better select_by value",
    "select_ties": "of equally good epochs keep the first | last (seed 002's code)",
    "loss": "ce | weighted_ce",
    "threshold": "T of the dual monitor",
    "patience": "p of the dual monitor",
    "stop_patience": "P of the dual monitor",
    "factor": "phi of the dual monitor",
    "split": "stratified (0.8/0.1/0.1) | predefined (the dataset's test folder) | folds (the "
             "paper's own k-fold split, e.g. seed 002's BreaKHis)",
    "val_frac": "validation fraction",
    "test_frac": "test fraction",
    "split_csv": "reuse the split of an earlier run (its split.csv)",
    "group_by": "keep groups in one split: duplicates | patient (BreaKHis patients + duplicates) "
                "| none (image-level, leaks)",
    "crop_scale_min": "random-resized-crop area lower bound",
    "hflip": "horizontal flip probability",
    "augmentation": "timm (random-resized crop + flip) | cdtm (seed 002's flips, colour, "
                    "shift-scale-rotate, on the device; --pipeline cached)",
    "pipeline": "cached (decode once into $MEDTL_CACHE_DIR, augment batches on the device) | "
                "per_image (the authors': PIL + timm transforms per image per epoch)",
    "seed": "random seed",
    "num_workers": "loader processes (default: 0 on CPU, min(8, cores) on CUDA)",
    "device": "auto | cpu | cuda",
    "amp": "auto | off | bf16 | fp16",
}
#: RunConfig fields given as flags of another shape (below) or not on the command line
_SPECIAL = {"augment", "cache_features", "strict", "strategy_args", "schedule_args", "out",
            "allow_small_classes", "head_args", "dual_monitor_readings"}


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, its default taken from RunConfig (shown in --help). Names
    (strategy, schedule, ...) are checked by RunConfig against the registries, after the
    dataset and model names, which need no torch: a typo there is answered at once."""
    for f in fields(RunConfig):
        if f.name in _SPECIAL:
            continue
        default = None if f.name in ("dataset", "model") else getattr(RunConfig, f.name, None)
        kind = str if default is None else type(default)
        if f.name in ("epochs", "lr", "early_stop_patience", "num_workers"):
            kind = {"epochs": int, "lr": float, "early_stop_patience": int, "num_workers": int}[f.name]
        flag = "--" + f.name.replace("_", "-")
        shown = "" if default is None else f" (default {default})"
        p.add_argument(flag, type=kind, default=default, required=f.name in ("dataset", "model"),
                       help=_HELP.get(f.name, f.name) + shown)
    p.add_argument("--strategy-arg", dest="strategy_args", action="append", default=[],
                   metavar="KEY=VALUE", help="a strategy argument, repeatable (e.g. "
                   "--strategy-arg lp_epochs=3); `medtl strategies` lists them")
    p.add_argument("--head-arg", dest="head_args", action="append", default=[],
                   metavar="KEY=VALUE", help="a head argument, repeatable (e.g. --head cdtm "
                   "--head-arg centers=300 --head-arg variant=paper)")
    p.add_argument("--schedule-arg", dest="schedule_args", action="append", default=[],
                   metavar="KEY=VALUE", help="a schedule argument, repeatable (e.g. "
                   "--schedule-arg patience=5)")
    p.add_argument("--dual-monitor-reading", dest="dual_monitor_readings", action="append",
                   default=[], metavar="KEY=VALUE", help="a reading of the dual monitor's "
                   "ambiguous rules, repeatable (e.g. best_train_acc=phase_a, the authors' code; "
                   "see medtl_lib.training.dual_monitor.Readings)")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="train on the eval transform (no crop/flip); lets a frozen-backbone stage "
                   "cache features")
    p.add_argument("--no-cache-features", dest="cache_features", action="store_false",
                   help="frozen-backbone stages: run the backbone every epoch even when features "
                   "could be computed once")
    p.add_argument("--strict", action="store_true", help="stop on unreadable images instead of "
                   "skipping them")
    p.add_argument("--allow-small-classes", action="store_true", help="train although a class "
                   "has no image in the validation or test split (recorded in metrics.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    from .registry import parse_key_values

    names = {f.name for f in fields(RunConfig)}
    d = {k: v for k, v in vars(args).items() if k in names and v is not None}
    d["strategy_args"] = parse_key_values(args.strategy_args, "--strategy-arg")
    d["schedule_args"] = parse_key_values(args.schedule_args, "--schedule-arg")
    d["head_args"] = parse_key_values(args.head_args, "--head-arg")
    d["dual_monitor_readings"] = parse_key_values(args.dual_monitor_readings,
                                                  "--dual-monitor-reading")
    return RunConfig.from_dict(d)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medtl", description="MedTL: transfer learning for "
                                     "medical image classification (seed 000 reproduction kit)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="run a profile through the notebooks, as run_all.sh does "
                   "(medtl run [smoke|paper|FILE.yaml] [--only PATTERN] [--dry-run])")

    p = sub.add_parser("train", help="train and evaluate one model on one dataset")
    _add_train_args(p)
    p.add_argument("--out", required=True, help="run folder (rerun the same command to resume)")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="processes for this one run (one per GPU; gloo processes on the CPU): "
                   "launches torchrun --standalone --nproc_per_node N. Several nodes: call "
                   "torchrun yourself with -m medtl_lib train ...")

    sc = sub.add_parser("search-cut", help="seed 003's cut search: block search, then the "
                        "layers around the best block; chosen by validation AUROC")
    _add_train_args(sc)
    sc.add_argument("--method", required=True, choices=("ttl", "transfusion", "lwft"))
    sc.add_argument("--no-fine", action="store_true", help="the block search only ('-1' in the "
                    "paper's tables)")
    sc.add_argument("--out", required=True, help="search folder: one run folder per candidate, "
                    "search.csv, search.json (rerun to resume)")

    st = sub.add_parser("strategies", help="the fine-tuning strategies and schedules, with their "
                        "arguments")
    st.add_argument("--json", action="store_true", help="one JSON object, for machines")

    mi = sub.add_parser("model", help="inspect a model").add_subparsers(dest="model_command",
                                                                       required=True)
    info = mi.add_parser("info", help="parameters, trainable parameters, MACs and latency of a "
                         "model as a run would build it")
    info.add_argument("--model", required=True)
    info.add_argument("--weights", default="none", help="auto | none | PATH (default none: the "
                      "numbers do not depend on the weights)")
    info.add_argument("--img-size", type=int, default=224)
    info.add_argument("--num-classes", type=int, default=2)
    info.add_argument("--pool", default=RunConfig.pool)
    info.add_argument("--head", default=RunConfig.head)
    info.add_argument("--head-arg", dest="head_args", action="append", default=[],
                      metavar="KEY=VALUE")
    info.add_argument("--strategy", default=RunConfig.strategy)
    info.add_argument("--strategy-arg", dest="strategy_args", action="append", default=[],
                      metavar="KEY=VALUE")
    info.add_argument("--epochs", type=int, default=10, help="run epochs (staged strategies)")
    info.add_argument("--device", default="cpu", help="where latency is measured")
    info.add_argument("--no-latency", action="store_true", help="skip the timing")
    info.add_argument("--json", action="store_true", help="one JSON object")

    rep = sub.add_parser("report", help="reports on finished runs").add_subparsers(
        dest="report_command", required=True)
    ci = rep.add_parser("ci", help="95%% confidence intervals of a run's test metrics, "
                        "recomputed from its predictions_test.csv")
    ci.add_argument("run_dir")
    ci.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    ci.add_argument("--seed", type=int, default=0)
    ci.add_argument("--json", action="store_true")

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


def _torchrun(nproc: int, argv: list[str]) -> int:
    """``medtl train --nproc N ...`` as ``torchrun --standalone --nproc_per_node N -m medtl_lib
    train ...`` (the same arguments, without --nproc), waiting for it."""
    import subprocess

    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "medtl_lib", *rest]
    print("launching:", " ".join(cmd[1:]), flush=True)
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:  # its own options; argparse's REMAINDER would not pass them through
        from .profiles import main as run_main

        return run_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            from .data.registry import get_spec
            from .models.names import resolve_model_name

            get_spec(args.dataset)  # before torch is imported: a typo costs no seconds
            resolve_model_name(args.model)
            cfg = config_from_args(args)
            if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
                return _torchrun(args.nproc, argv)
            from .distributed import shutdown
            from .train_run import train_run

            try:
                result = train_run(cfg, progress=False if args.no_progress else None)
            finally:
                shutdown()
            if result.metrics:  # rank 0 (the only one under torchrun that evaluates)
                print(json.dumps({"out": str(result.out), "test": {
                    k: result.metrics["test"][k] for k in
                    ("accuracy", "precision_macro", "recall_macro", "f1_macro")}}, indent=2))
            return 0
        if args.command == "search-cut":
            from .data.registry import get_spec
            from .models.names import resolve_model_name

            get_spec(args.dataset)
            resolve_model_name(args.model)
            cfg = config_from_args(args)
            from .search_cut import search_cut

            search_cut(cfg, args.method, args.out, fine=not args.no_fine)
            return 0
        if args.command == "report" and args.report_command == "ci":
            from .evaluation.ci import format_ci, run_ci

            table = run_ci(args.run_dir, args.n_boot, args.seed)
            print(json.dumps(table, indent=2) if args.json else format_ci(table))
            return 0
        if args.command == "strategies":
            return _print_strategies(args.json)
        if args.command == "model" and args.model_command == "info":
            return _print_model_info(args)
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


def _print_strategies(as_json: bool) -> int:
    from .training.schedules import SCHEDULES
    from .training.strategies import STRATEGIES

    tables = {"strategies": STRATEGIES.table(), "schedules": SCHEDULES.table()}
    if as_json:
        print(json.dumps(tables, indent=2))
        return 0
    for kind, rows in tables.items():
        flag = "--strategy-arg" if kind == "strategies" else "--schedule-arg"
        print(f"{kind} (arguments: {flag} KEY=VALUE)")
        for r in rows:
            print(f"  {r['name']:<16} {r['description']}")
            for a in r["arguments"]:
                choices = f" [{'|'.join(map(str, a['choices']))}]" if "choices" in a else ""
                print(f"      {a['name']}: {a['type']} = {a['default']!r}{choices}  {a['help']}")
        print()
    return 0


def _print_model_info(args: argparse.Namespace) -> int:
    import torch

    from .models.factory import create_model
    from .models.groups import group_sizes
    from .models.info import model_info
    from .registry import parse_key_values
    from .training.strategies import count_params, get_strategy

    strategy = get_strategy(args.strategy, parse_key_values(args.strategy_args))
    import yaml

    head_args = {k: yaml.safe_load(v)
                 for k, v in parse_key_values(args.head_args, "--head-arg").items()}
    model, info = create_model(args.model, args.num_classes, weights=args.weights,
                               img_size=args.img_size, pool=args.pool, head=args.head,
                               head_args=head_args, surgery=strategy.surgery())
    stage = strategy.stages(args.epochs)[0]
    trainable = count_params(strategy.param_groups(model, 1.0, stage))
    out = model_info(model, args.img_size, trainable_params=trainable,
                     device=torch.device(args.device), latency=not args.no_latency)
    out.update(model=args.model, timm_name=info.timm_name, strategy=strategy.name,
               first_stage=stage.name, num_classes=args.num_classes,
               groups=dict(group_sizes(model)))
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        for k, v in out.items():
            print(f"{k:>18}: {v:,}" if isinstance(v, int) else f"{k:>18}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
