"""Scaling on paper: the expected wall time of a profile on 1, 4 and 16 GPUs, two ways.

    python scripts/scaling_estimate.py [--profile paper] [--throughput resnet=1352 ...]

* **A run per GPU** (``medtl run --launcher local`` / ``slurm``): the runs are independent, so the
  wall time is the longest GPU's share when runs are dealt longest first.
* **One run on G GPUs** (``medtl train --nproc G``, DDP): each step's compute is split G ways,
  plus a ring all-reduce of the fp32 gradients per step; validation is evaluated whole on every
  rank and does not shrink (medtl_lib.distributed), nor does the final evaluation on rank 0.

Inputs, and what is measured and what is assumed (printed with the table):
* images/s per GPU for training: ``--throughput PRESET=IMG_PER_S`` (measure with ``medtl bench
  train`` on the GPU). Defaults: the H100 figures of ``scripts/bench_strategies_cuda.py``
  (224 px, bf16, channels_last, batch 96) where one was measured for the preset's architecture;
  other presets are scaled from ResNet-50's by their MACs (counted here), marked "estimated".
* evaluation runs at 3x the training rate (no backward pass), an assumption;
* the all-reduce link: ``--link-gbs`` (GB/s per GPU, 4 GPUs on one node over NVLink) and
  ``--net-gbs`` (16 GPUs on several nodes, the slowest link decides), assumptions;
* the data: the cached loader gathers ~126k img/s per node on a 2-core CPU (``medtl bench
  loader``), so it never limits; the per-image pipeline delivers ~0.65k img/s per core, so
  ``--cores-per-gpu`` decides whether it does.
* every run trains its profile's maximum epochs (the dual monitor usually stops earlier: an
  upper bound).
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# H100, 224 px, bf16, channels_last, batch 96, full fine-tuning (scripts/bench_strategies_cuda.py,
# issue 10's note): architecture -> images/s
MEASURED_H100 = {"resnet50": 1352.0, "densenet121": 637.0, "vgg19": 1555.0}
PER_IMAGE_PER_CORE = 650.0  # the per-image pipeline, img/s per loader process (2 workers: 1.3k)


def run_list(profile_name: str) -> list[dict]:
    from medtl_lib import orchestration as profiles
    from medtl_lib.data.catalogue import get_spec

    p = profiles.load_profile(profile_name, runs_dir="/tmp/unused", data_root="/tmp/unused")
    out = []
    for r in p.runs:
        spec = get_spec(r.dataset)
        n = spec.paper_count or 5000
        epochs = r.epochs if r.epochs else spec.default_epochs
        out.append({"name": p.run_name(r), "model": r.model, "img_size": r.img_size,
                    "n_train": int(n * (1 - r.val_frac - r.test_frac)), "n_val": int(n * r.val_frac),
                    "n_all": n, "epochs": epochs, "batch": r.batch_size})
    return out


@functools.cache  # each (preset, size) is built once: a reference model serves several presets
def model_facts(preset: str, img_size: int) -> tuple[int, int, str]:
    """(MACs per image, parameters, timm architecture) of a preset, built without weights."""
    import torch

    from medtl_lib.models.factory import create_model
    from medtl_lib.models.info import count_macs

    model, info = create_model(preset, 4, weights="none", img_size=img_size)
    arch = info.timm_name.split(".")[0]
    with torch.no_grad():
        macs = count_macs(model, img_size)
    return macs, sum(p.numel() for p in model.parameters()), arch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--throughput", action="append", default=[], metavar="PRESET=IMG_PER_S")
    ap.add_argument("--link-gbs", type=float, default=100.0, help="all-reduce GB/s within a node")
    ap.add_argument("--net-gbs", type=float, default=12.5, help="all-reduce GB/s across nodes")
    ap.add_argument("--cores-per-gpu", type=int, default=8)
    ap.add_argument("--gpus", default="1,4,16")
    args = ap.parse_args()
    given = {k: float(v) for k, v in (t.split("=", 1) for t in args.throughput)}
    runs = run_list(args.profile)
    facts = {m: model_facts(m, runs[0]["img_size"]) for m in dict.fromkeys(r["model"] for r in runs)}
    rate, source = {}, {}
    for m, (macs, _, arch) in facts.items():
        if m in given:
            rate[m], source[m] = given[m], "given"
            continue
        # the measured model of its family (DenseNets are memory-bound: scaled from ResNet-50
        # they would look twice as fast), else ResNet-50; measured at 224 px, so scaled by MACs
        ref = arch if arch in MEASURED_H100 else next(
            (a for a in MEASURED_H100 if arch.startswith(a.rstrip("0123456789"))), "resnet50")
        rate[m] = MEASURED_H100[ref] * model_facts(ref, 224)[0] / macs
        if ref == arch and runs[0]["img_size"] == 224:
            source[m] = "measured (H100, 224 px)"
        else:
            source[m] = f"estimated: {ref} measured on an H100 at 224 px, scaled by MACs"
    print(f"profile '{args.profile}': {len(runs)} runs; training images/s per GPU:")
    for m, (macs, params, arch) in facts.items():
        print(f"  {m:10s} {arch:28s} {macs / 1e9:5.2f} GMACs {params / 1e6:6.1f} M params  "
              f"{rate[m]:7.0f} img/s  ({source[m]})")

    def seconds(r: dict, g: int) -> tuple[float, dict]:
        """One run on g GPUs: compute, all-reduce, evaluation."""
        img_s = rate[r["model"]]
        steps = r["epochs"] * -(-r["n_train"] // (r["batch"] * g))
        compute = r["epochs"] * r["n_train"] / (img_s * g)
        grad_bytes = facts[r["model"]][1] * 4
        bw = (args.link_gbs if g <= 8 else args.net_gbs) * 1e9
        allreduce = steps * 2 * (g - 1) / g * grad_bytes / bw if g > 1 else 0.0
        evaluation = (r["epochs"] * r["n_val"] + r["n_all"]) / (3 * img_s)  # not divided by g
        data_limit = args.cores_per_gpu * PER_IMAGE_PER_CORE  # per GPU, per-image pipeline
        return compute + allreduce + evaluation, {"compute": compute, "allreduce": allreduce,
                                                  "evaluation": evaluation,
                                                  "per_image_data_bound": img_s > data_limit}

    total1 = sum(seconds(r, 1)[0] for r in runs)
    print(f"\none GPU, runs one after another: {total1 / 3600:.2f} h")
    print("\n| GPUs | a run per GPU (launcher) | one run on all GPUs (DDP), runs in turn | "
          "DDP time split: compute / all-reduce / evaluation |")
    print("|---|---|---|---|")
    for g in (int(x) for x in args.gpus.split(",")):
        loads = [0.0] * g
        for t in sorted((seconds(r, 1)[0] for r in runs), reverse=True):
            i = loads.index(min(loads))
            loads[i] += t
        ddp = [seconds(r, g) for r in runs]
        parts = {k: sum(d[1][k] for d in ddp) for k in ("compute", "allreduce", "evaluation")}
        whole = sum(d[0] for d in ddp)
        print(f"| {g} | {max(loads) / 3600:.2f} h | {whole / 3600:.2f} h | "
              + " / ".join(f"{100 * v / whole:.0f}%" for v in parts.values()) + " |")
    bound = any(seconds(r, 1)[1]["per_image_data_bound"] for r in runs)
    print(f"\nper-image pipeline with {args.cores_per_gpu} loader cores per GPU "
          f"({args.cores_per_gpu * PER_IMAGE_PER_CORE:.0f} img/s): "
          + ("slower than some models train: use the cached pipeline (the default)" if bound
             else "keeps up with every model"))
    print(f"assumed: all-reduce {args.link_gbs} GB/s in a node, {args.net_gbs} GB/s across "
          "nodes; evaluation 3x the training rate; every run to its maximum epochs")


if __name__ == "__main__":
    main()
