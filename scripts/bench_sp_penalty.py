"""L1-SP / L2-SP: the fused penalty (strategy_sp._SumOfNorms, multi-tensor kernels forward and
backward) against the per-tensor Python loop it replaced, on the GPU profile's CNNs with the
CUDA paths on.

For each model: the penalty alone (forward + backward of Omega, milliseconds per call), both
implementations' Omega and gradient on the same weights (they must agree to float rounding), and
training throughput of `full`, `l2_sp` and `l1_sp` as scripts/bench_strategies_cuda.py measures
it, with the loop patched in for the "loop" rows. The loop lives here only as the baseline.

    python scripts/bench_sp_penalty.py [--models resnet50.tv_in1k ...] [--batches 20]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench_strategies_cuda import bench  # noqa: E402
from medtl_lib.bench import _sync  # noqa: E402
from medtl_lib.device import select_device  # noqa: E402
from medtl_lib.models.factory import create_model  # noqa: E402
from medtl_lib.training.strategies import get_strategy  # noqa: E402
from medtl_lib.training.strategy_sp import StartingPointPenalty  # noqa: E402


def loop_terms(self, model):
    """The per-tensor implementation before the fused one: a few kernels per tensor."""
    params = dict(model.named_parameters())
    dev = next(iter(self.reference.values())).device
    norm = (lambda t: t.pow(2).sum() / 2) if self.order == 2 else (lambda t: t.abs().sum())
    back = torch.zeros((), device=dev)
    for n, ref in self.reference.items():
        back = back + norm(params[n] - ref)
    head = torch.zeros((), device=dev)
    for n in self.head_names:  # beta/2 ||w||^2 for every -SP variant (Li et al., 2018)
        head = head + params[n].pow(2).sum() / 2
    return back, head


@contextmanager
def loop_penalty():
    fused = StartingPointPenalty.terms
    StartingPointPenalty.terms = loop_terms
    try:
        yield
    finally:
        StartingPointPenalty.terms = fused


def penalty_alone(model_name: str, name: str, device, calls: int = 50) -> dict:
    """ms per Omega forward + backward, fused and loop, and how far apart they are."""
    torch.manual_seed(0)
    model, _ = create_model(model_name, 4, weights="none", img_size=224)
    model = model.to(device.device, memory_format=torch.channels_last)
    s = get_strategy(name, {"alpha": 0.01, "beta": 0.01})
    s.setup(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    out = {"model": model_name, "strategy": name,
           "tensors": len(s.reference) + len(s.head_names)}
    grads = {}
    for impl in ("fused", "loop"):
        with loop_penalty() if impl == "loop" else nullcontext():
            for i in range(calls + 5):  # 5 warm-up calls
                if i == 5:
                    _sync(device.device)
                    t0 = time.perf_counter()
                model.zero_grad(set_to_none=True)
                omega = s.penalty(model)
                omega.backward()
            omega = omega.detach()
            _sync(device.device)
            out[f"{impl}_ms"] = round((time.perf_counter() - t0) / calls * 1e3, 3)
            out[f"{impl}_omega"] = omega.item()
            grads[impl] = [p.grad.clone() for p in model.parameters()]
    out["omega_rel_diff"] = abs(out["fused_omega"] - out["loop_omega"]) / abs(out["loop_omega"])
    out["grad_max_abs_diff"] = max(float((a - b).abs().max())
                                   for a, b in zip(grads["fused"], grads["loop"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+",
                    default=["resnet50.tv_in1k", "densenet121.tv_in1k", "vgg19.tv_in1k"])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=96)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = select_device(args.device)
    print(device, flush=True)
    for m in args.models:
        for s in ("l2_sp", "l1_sp"):
            print(json.dumps(penalty_alone(m, s, device)), flush=True)
        for s in ("full", "l2_sp", "l1_sp"):
            row = bench(m, s, args.batches, args.batch_size, device)
            print(json.dumps({**row, "penalty": "fused" if s != "full" else None}), flush=True)
            if s != "full":
                with loop_penalty():
                    row = bench(m, s, args.batches, args.batch_size, device)
                print(json.dumps({**row, "penalty": "loop"}), flush=True)


if __name__ == "__main__":
    main()
