"""The ``medtl`` command: train, run, data check/audit/synth, bench train/loader/memory."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

from .config import RunConfig


def _help(f) -> str:
    """A field's --help text: its RunConfig metadata (written once, in config.py), the dataset
    names (a catalogue without torch), or where the registry's components are listed."""
    text = f.metadata.get("help", f.name)
    kind = f.metadata.get("kind")
    if kind == "dataset":
        from .data.catalogue import DATASETS

        text = " | ".join(DATASETS)
    elif kind:
        text += f"; `medtl components {kind}` lists them"
    return text


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, its default and help taken from RunConfig (shown in --help).
    Names (strategy, schedule, ...) are checked by RunConfig against the registries, after the
    dataset and model names, which need no torch: a typo there is answered at once."""
    for f in fields(RunConfig):
        if f.metadata.get("flag", "") is None:
            continue
        default = None if f.name in ("dataset", "model") else getattr(RunConfig, f.name, None)
        kind = f.metadata.get("type") or (str if default is None else type(default))
        flag = "--" + f.name.replace("_", "-")
        shown = "" if default is None else f" (default {default})"
        p.add_argument(flag, type=kind, default=default, required=f.name in ("dataset", "model"),
                       help=_help(f) + shown)
    p.add_argument("--strategy-arg", dest="strategy_args", action="append", default=[],
                   metavar="KEY=VALUE", help="a strategy argument, repeatable (e.g. "
                   "--strategy-arg lp_epochs=3); `medtl components strategy` lists them")
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
                   "has no image in the validation or test split (recorded in its metrics)")
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
    # every command takes --plugin (a module name or a .py file that registers components),
    # after the command's name: medtl train --plugin my_plugin.py ...
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--plugin", dest="plugins", action="append", default=[],
                        metavar="MODULE|FILE.py", help="load a plugin first: a module name or a "
                        ".py file registering components (repeatable; see medtl_lib.plugins)")
    _Sub.parents = [common]
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Sub)

    sub.add_parser("run", help="run a profile through the notebooks, as run_all.sh does "
                   "(medtl run [smoke|paper|FILE.yaml] [--only PATTERN] [--dry-run])")

    p = sub.add_parser("train", help="train and evaluate one model on one dataset")
    p.set_defaults(func=cmd_train)
    _add_train_args(p)
    p.add_argument("--out", required=True, help="run folder (rerun the same command to resume)")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="processes for this one run (one per GPU; gloo processes on the CPU): "
                   "launches torchrun --standalone --nproc_per_node N. Several nodes: call "
                   "torchrun yourself with -m medtl_lib train ...")
    p.add_argument("--dry-run", action="store_true", help="check the command (dataset, model, "
                   "every component and argument, plugins included) and print the resolved "
                   "config; train nothing")

    sc = sub.add_parser("search-cut", help="seed 003's cut search: block search, then the "
                        "layers around the best block; chosen by validation AUROC")
    sc.set_defaults(func=cmd_search_cut)
    _add_train_args(sc)
    sc.add_argument("--method", required=True, choices=("ttl", "transfusion", "lwft"))
    sc.add_argument("--no-fine", action="store_true", help="the block search only ('-1' in the "
                    "paper's tables)")
    sc.add_argument("--out", required=True, help="search folder: one run folder per candidate, "
                    "its table and choice (rerun to resume)")

    st = sub.add_parser("strategies", help="the fine-tuning strategies and schedules, with their "
                        "arguments")
    st.add_argument("--json", action="store_true", help="one JSON object, for machines")
    st.set_defaults(func=cmd_strategies)

    co = sub.add_parser("components", help="every registered component (strategies, schedules, "
                        "heads, pools, losses, optimizers, datasets, ...) with its arguments")
    co.add_argument("kind", nargs="?", help="one kind only (e.g. head, pool, dataset)")
    co.add_argument("--json", action="store_true", help="one JSON object, for machines")
    co.set_defaults(func=cmd_components)

    mi = sub.add_parser("model", help="inspect a model", parents=[]).add_subparsers(dest="model_command",
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
    info.set_defaults(func=cmd_model_info)

    rep = sub.add_parser("report", help="reports on finished runs", parents=[]).add_subparsers(
        dest="report_command", required=True)
    ci = rep.add_parser("ci", help="95%% confidence intervals of a run's test metrics, "
                        "recomputed from its test predictions")
    ci.add_argument("run_dir")
    ci.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    ci.add_argument("--seed", type=int, default=0)
    ci.add_argument("--json", action="store_true")
    ci.set_defaults(func=cmd_report_ci)

    data = sub.add_parser("data", help="inspect or generate datasets", parents=[]).add_subparsers(
        dest="data_command", required=True)
    c = data.add_parser("check", help="counts per class and every problem found")
    c.add_argument("path")
    c.add_argument("--dataset", default="folder")
    c.set_defaults(func=cmd_data_check)
    a = data.add_parser("audit", help="exact and near-duplicate images within/across classes and splits")
    a.add_argument("path")
    a.add_argument("--dataset", default="folder")
    a.add_argument("--out", help="write the duplicate groups (group,kind,path,label,split) and a summary into DIR")
    a.add_argument("--max-distance", type=int, help="near-duplicate pHash distance (bits of 256)")
    a.add_argument("--exact-only", action="store_true", help="byte-identical files only")
    a.set_defaults(func=cmd_data_audit)
    s = data.add_parser("synth", help="write a synthetic stand-in in the real layout")
    s.add_argument("name")
    s.add_argument("--out", required=True)
    s.add_argument("--n-per-class", type=int, default=40)
    s.add_argument("--size", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_data_synth)

    bench = sub.add_parser("bench", help="benchmarks", parents=[]).add_subparsers(dest="bench_command", required=True)
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
    b.set_defaults(func=cmd_bench_train)
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
    lo.set_defaults(func=cmd_bench_loader)
    m = bench.add_parser("memory", help="peak RSS and cache size of real runs on growing subsets")
    m.add_argument("--dataset", required=True)
    m.add_argument("--data-dir")
    m.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    m.add_argument("--img-size", type=int, default=224)
    m.add_argument("--model", default="efficientnet_lite0")
    m.add_argument("--epochs", type=int, default=1)
    m.add_argument("--pipeline", default="cached")
    m.add_argument("--weights", default="auto")
    m.set_defaults(func=cmd_bench_memory)
    return parser


class _Sub(argparse.ArgumentParser):
    """Every (sub)command parser: with the common options (--plugin)."""

    parents: list[argparse.ArgumentParser] = []

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("parents", list(_Sub.parents))
        super().__init__(*args, **kwargs)

    def add_subparsers(self, **kwargs):
        kwargs.setdefault("parser_class", _Sub)
        return super().add_subparsers(**kwargs)


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
        plugins, rest = _take_plugins(argv[1:])
        try:
            _load_plugins(plugins)
        except (ValueError, OSError, ImportError) as exc:
            print(f"medtl: error: {exc}", file=sys.stderr)
            return 2
        from .orchestration.run import main as run_main

        return run_main(rest)
    args = build_parser().parse_args(argv)
    try:
        _load_plugins(args.plugins)
        return args.func(args, argv)
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume from the last complete epoch",
              file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, ArithmeticError, ImportError) as exc:
        print(f"medtl: error: {exc}", file=sys.stderr)
        return 2


def _take_plugins(argv: list[str]) -> tuple[list[str], list[str]]:
    """``--plugin X`` / ``--plugin=X`` taken out of ``argv`` (for ``medtl run``)."""
    plugins, rest, it = [], [], iter(argv)
    for a in it:
        if a == "--plugin":
            plugins.append(next(it, ""))
        elif a.startswith("--plugin="):
            plugins.append(a.partition("=")[2])
        else:
            rest.append(a)
    return plugins, rest


def _load_plugins(specs: list[str]) -> None:
    """The entry-point plugins (once) and the command's ``--plugin`` ones, before any checks.
    Nothing is imported when there are none (a typo is still answered without torch)."""
    from .plugins import load_entry_point_plugins, load_plugins

    load_entry_point_plugins()
    load_plugins(specs)


# --------------------------------------------------------------------------- the subcommands
def _check_names(args: argparse.Namespace) -> None:
    """Dataset and model names before torch is imported: a typo costs no seconds."""
    from .data.catalogue import get_spec
    from .models.names import resolve_model_name

    get_spec(args.dataset)
    resolve_model_name(args.model)


def cmd_train(args: argparse.Namespace, argv: list[str]) -> int:
    _check_names(args)
    cfg = config_from_args(args)
    if args.dry_run:
        print(json.dumps({"dry_run": True, "config": cfg.resolved().to_dict()}, indent=2,
                         default=str))
        return 0
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


def cmd_search_cut(args: argparse.Namespace, argv: list[str]) -> int:
    _check_names(args)
    cfg = config_from_args(args)
    from .search_cut import search_cut

    search_cut(cfg, args.method, args.out, fine=not args.no_fine)
    return 0


def cmd_report_ci(args: argparse.Namespace, argv: list[str]) -> int:
    from .evaluation.ci import run_ci
    from .intervals import format_ci

    table = run_ci(args.run_dir, args.n_boot, args.seed)
    print(json.dumps(table, indent=2) if args.json else format_ci(table))
    return 0


def cmd_strategies(args: argparse.Namespace, argv: list[str]) -> int:
    return _print_strategies(args.json)


def cmd_components(args: argparse.Namespace, argv: list[str]) -> int:
    from .api import registries

    found = registries()
    if args.kind is not None and args.kind not in found:
        import difflib

        close = difflib.get_close_matches(args.kind, found, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"unknown kind {args.kind!r}{hint}; kinds: {', '.join(found)}")
    chosen = {args.kind: found[args.kind]} if args.kind else found
    return _print_tables({k: r for k, r in chosen.items()}, args.json)


def cmd_model_info(args: argparse.Namespace, argv: list[str]) -> int:
    return _print_model_info(args)


def cmd_data_check(args: argparse.Namespace, argv: list[str]) -> int:
    from .data.check import check_dataset

    return check_dataset(args.path, args.dataset)


def cmd_data_audit(args: argparse.Namespace, argv: list[str]) -> int:
    from .data.audit import HAMMING_THRESHOLD, audit_dataset, format_summary, write_audit

    result = audit_dataset(args.path, args.dataset, near=not args.exact_only,
                           max_distance=args.max_distance if args.max_distance is not None
                           else HAMMING_THRESHOLD)
    print(format_summary(result))
    if args.out:
        print(f"wrote {write_audit(result, args.out)}")
    return 0


def cmd_data_synth(args: argparse.Namespace, argv: list[str]) -> int:
    from .data.synthetic import write_synthetic

    out = write_synthetic(args.name, args.out, n_per_class=args.n_per_class, size=args.size,
                          seed=args.seed)
    print(f"wrote synthetic '{args.name}' to {out}")
    return 0


def _bench_kwargs(args: argparse.Namespace) -> dict:
    skip = {"command", "bench_command", "func", "plugins"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def cmd_bench_train(args: argparse.Namespace, argv: list[str]) -> int:
    from .bench import bench_train

    print(json.dumps(bench_train(**_bench_kwargs(args)), indent=2))
    return 0


def cmd_bench_loader(args: argparse.Namespace, argv: list[str]) -> int:
    from .bench import bench_loader

    print(json.dumps(bench_loader(**_bench_kwargs(args)), indent=2))
    return 0


def cmd_bench_memory(args: argparse.Namespace, argv: list[str]) -> int:
    from .bench import bench_memory

    kwargs = _bench_kwargs(args)
    kwargs["fractions"] = tuple(kwargs["fractions"])
    print(json.dumps(bench_memory(**kwargs), indent=2))
    return 0


def _print_strategies(as_json: bool) -> int:
    from .training.schedules import SCHEDULES
    from .training.strategies import STRATEGIES

    return _print_tables({"strategies": STRATEGIES, "schedules": SCHEDULES}, as_json)


def _print_tables(registries: dict, as_json: bool) -> int:
    """Each registry's components with their arguments (``medtl strategies``, ``components``)."""
    tables = {title: reg.table() for title, reg in registries.items()}
    if as_json:
        print(json.dumps(tables, indent=2, default=str))
        return 0
    for title, rows in tables.items():
        reg = registries[title]
        flag = f"arguments: {reg.flag} KEY=VALUE" if reg.flag else ""
        if title != reg.kind:  # medtl strategies: its own titles, as it always printed them
            print(f"{title} ({flag})")
        else:
            print(f"{title}: {reg.description}" + (f" ({flag})" if flag else ""))
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
