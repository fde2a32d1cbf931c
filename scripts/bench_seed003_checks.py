"""Seed 003's numbers that are not accuracies, measured: surgery counts against the spec, MACs
against Table 1, SVCCA's properties and random baseline, and (given a profile's runs) the cut
searches' time and their picks against FTL.

    python scripts/bench_seed003_checks.py                          # counts, MACs, SVCCA (~1 min)
    python scripts/bench_seed003_checks.py --runs runs/seed003_cpu  # + the searches

Everything printed is computed here; the spec's counts (Section 3, verified against the authors'
code) and Table 1's MACs are printed beside ours, never used in their place.
"""
from __future__ import annotations

import argparse
import csv
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (model, cut, the spec's backbone parameter count)
SPEC_CUTS = [("resnet50", "stem", 9_536), ("resnet50", "layer1", 225_344),
             ("resnet50", "layer2", 1_444_928), ("resnet50", "layer3.3", 6_308_928),
             ("resnet50", "layer3", 8_543_296), ("resnet50", "layer4", 23_508_032),
             ("resnet18", "layer1.0", 83_520), ("resnet18", "layer3", 2_782_784),
             ("densenet121", "features.transition1", 377_856),
             ("densenet121", "features.transition2", 1_429_632),
             ("densenet121", "features.transition3", 4_793_728),
             ("tf_efficientnet_lite0", "blocks.0", 1_824), ("tf_efficientnet_lite0", "blocks.4", 700_768),
             ("tf_efficientnet_lite0", "blocks.6", 2_958_848)]
SPEC_SLIM = [("layer4", 5_210_176), ("layer3", 3_390_272), ("layer2", 2_934_976), ("layer1", 2_814_976)]
TABLE_1 = [("FTL", "full", {}, 4.12), ("TTL-1", "ttl", {"cut": "layer3"}, 3.31),
           ("TTL-2", "ttl", {"cut": "layer3.3"}, 2.87), ("TF-1", "transfusion", {"slim_from": "layer4"}, 3.56)]
SPEC_BASELINES = [(2000, 50, 0.138), (700, 50, 0.232), (700, 256, 0.521), (700, 512, 0.732),
                  (7000, 512, 0.229)]


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def structure() -> None:
    import timm

    from medtl_lib.models.factory import create_model
    from medtl_lib.models.info import count_macs
    from medtl_lib.models.surgery import slim, truncate
    from medtl_lib.training.strategies import get_strategy

    print("== truncation: backbone parameters (ours / spec)")
    for name, cut, spec in SPEC_CUTS:
        ours = n_params(truncate(timm.create_model(name, num_classes=0), cut))
        print(f"  {name:22s} cut={cut:22s} {ours:>11,} / {spec:>11,}  {'equal' if ours == spec else 'DIFFERENT'}")
    print("== TransFusion on ResNet-18: backbone parameters (ours / spec)")
    for slim_from, spec in SPEC_SLIM:
        ours = n_params(slim(timm.create_model("resnet18", num_classes=0), slim_from))
        print(f"  slim_from={slim_from:7s} {ours:>11,} / {spec:>11,}  {'equal' if ours == spec else 'DIFFERENT'}")
    print("== ResNet-50, 2 classes, 224 px: the whole model (heads included) and MACs against Table 1")
    print(f"  {'':6s} {'params':>11s} {'flatten head':>13s} {'MACs conv+linear':>17s} "
          f"{'MACs ptflops':>13s} {'Table 1':>8s} {'diff':>7s}")
    for label, strategy, args, paper in TABLE_1:
        surgery = get_strategy(strategy, args).surgery()
        pooled, _ = create_model("resnet50", 2, weights="none", img_size=224, surgery=surgery)
        flat, _ = create_model("resnet50", 2, weights="none", img_size=224, pool="flatten",
                               surgery=surgery)
        plain = count_macs(pooled, 224) / 1e9
        authors = count_macs(pooled, 224, convention="ptflops") / 1e9
        print(f"  {label:6s} {n_params(pooled):>11,} {n_params(flat):>13,} {plain:>17.3f} "
              f"{authors:>13.3f} {paper:>8.2f} {100 * (authors / paper - 1):>+6.2f}%")


def svcca_checks() -> None:
    from medtl_lib.analysis.svcca import random_baseline, svcca

    print("== SVCCA")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1000, 64)) @ rng.standard_normal((64, 64))
    mix = rng.standard_normal((64, 64)) + 3 * np.eye(64)
    b = rng.standard_normal((1000, 48))
    print(f"  self-similarity, keep 0.99: 1 - mean = {1 - svcca(a, a).mean:.1e}")
    print(f"  against an invertible linear map of itself, keep 1.0: 1 - mean = "
          f"{1 - svcca(a, a @ mix, keep=1.0).mean:.1e}")
    print(f"  symmetry |svcca(a, b) - svcca(b, a)| = {abs(svcca(a, b).mean - svcca(b, a).mean):.1e}")
    print("  random baseline (independent Gaussians, keep 0.99, seed 0): ours / spec")
    for n, d, spec in SPEC_BASELINES:
        print(f"    n {n:>5,}, d {d:>3}: {random_baseline(n, (d, d)).mean:.3f} / {spec:.3f}")
    print("  at notebook 10's default size (100 test images per class, 4 classes: n = 400) and "
          "EfficientNet-Lite0's widths:")
    for d in (16, 24, 40, 80, 112, 192, 320):
        print(f"    n 400, d {d:>3}: {random_baseline(400, (d, d)).mean:.3f}")


def searches(root: Path) -> None:
    from medtl_lib.evaluation.paper003 import search_summary

    for found in sorted(root.glob("search_*__*/search.csv")):
        folder = found.parent
        rows = list(csv.DictReader(found.open()))
        print(f"== {folder.name}")
        for stage in ("block", "layer"):
            part = [r for r in rows if r["stage"] == stage]
            if not part:
                continue
            seconds = sum(float(h["seconds"]) for r in part
                          for h in csv.DictReader((Path(r["path"]) / "history.csv").open()))
            start = min((Path(r["path"]) / "config.yaml").stat().st_mtime for r in part)
            end = max((Path(r["path"]) / "metrics.json").stat().st_mtime for r in part)
            print(f"  {stage} search: {len(part)} runs, {seconds:,.0f} s in epochs, "
                  f"{(end - start) / 60:.1f} min wall ({datetime.fromtimestamp(start):%H:%M} to "
                  f"{datetime.fromtimestamp(end):%H:%M}; the wall time is from file times, so it "
                  "holds only if nothing paused the search)")
        for r in rows:
            print(f"    {r['stage']:5s} {r['point']:10s} {int(r['params']):>10,} params  "
                  f"val AUROC {float(r['val_auroc']):.4f}{'  <- chosen' if r['chosen'] == 'True' else ''}")
    for label, share in (("the search's choice", None), ("best within half of FTL's parameters", 0.5)):
        table = search_summary(root, max_share=share)
        print(f"== {label} against FTL (test macro AUROC, 95% bootstrap; paired difference)")
        for _, r in table.iterrows():
            print(f"  {r['method']:5s} {r['chosen']:10s} {r['params_share']:5.1%} of the parameters: "
                  f"{r['auroc']:.4f} [{r['auroc_low']:.4f}, {r['auroc_high']:.4f}] vs FTL "
                  f"{r['ftl_auroc']:.4f} [{r['ftl_low']:.4f}, {r['ftl_high']:.4f}]; diff "
                  f"{100 * r['diff']:+.2f} points [{100 * r['diff_low']:+.2f}, {100 * r['diff_high']:+.2f}]")
        if table.empty:
            print("  none")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", help="a profile's runs folder with finished cut searches")
    args = ap.parse_args(argv)
    if args.runs and not any(Path(args.runs).glob("search_*__*/search.csv")):
        ap.error(f"--runs {args.runs}: no finished search (search_*/search.csv) there")
    structure()
    svcca_checks()
    if args.runs:
        searches(Path(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
