"""Size and cost of a model: parameters, multiply-accumulates, batch-1 latency.

The seeds compare models and strategies by what they cost as well as by accuracy (trainable
parameters of a strategy, MACs of a truncated or slimmed network, latency on the machine at
hand), so one function reports all of it the same way for every run.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _size2(img_size: int | tuple[int, int]) -> tuple[int, int]:
    return (img_size, img_size) if isinstance(img_size, int) else (int(img_size[0]), int(img_size[1]))


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
_ACTS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def count_macs(model: nn.Module, img_size: int | tuple[int, int], in_chans: int = 3,
               convention: str = "conv_linear") -> int:
    """Multiply-accumulates for ONE image.

    ``conv_linear`` (default): conv output elements x (in_channels / groups) x kernel volume;
    linear out_features x in_features x rows. Biases, norms, activations, pooling and the
    attention products are not counted, as in the usual published figures (ResNet-50 at 224 px:
    4.1 G). ``ptflops``: what seed 003's authors counted with ptflops, which adds a conv's or
    linear's bias per output element, 2 per element for an affine norm (1 otherwise), 1 per
    element for an activation and 1 per input element for pooling (ResNet-50: 4.12 G). Counted by
    forward hooks on one zero image in eval mode; the model's mode is restored afterwards.
    """
    if convention not in ("conv_linear", "ptflops"):
        raise ValueError(f"convention is 'conv_linear' or 'ptflops', got '{convention}'")
    extra = convention == "ptflops"
    total = 0

    def conv_hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = 1
        for s in m.kernel_size:
            k *= s
        total += out.numel() * (m.in_channels // m.groups) * k
        if extra and m.bias is not None:
            total += out.numel()

    def linear_hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features  # = out_features x in_features x rows
        if extra and m.bias is not None:
            total += out.numel()

    def elementwise_hook(per: int) -> Callable:
        def hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            nonlocal total
            affine = getattr(m, "affine", getattr(m, "elementwise_affine", False))
            total += out.numel() * (2 if affine and per == 2 else 1)
        return hook

    def pool_hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += args[0].numel()

    handles = []
    for m in model.modules():
        if isinstance(m, _CONVS):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif extra and isinstance(m, _NORMS):
            handles.append(m.register_forward_hook(elementwise_hook(2)))
        elif extra and isinstance(m, _ACTS):
            handles.append(m.register_forward_hook(elementwise_hook(1)))
        elif extra and isinstance(m, _POOLS):
            handles.append(m.register_forward_hook(pool_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, *_size2(img_size), device=_device_of(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)


def latency_ms(model: nn.Module, img_size: int | tuple[int, int],
               device: str | torch.device = "cpu", warmup: int = 3, reps: int = 10,
               in_chans: int = 3) -> float:
    """Median wall time (ms) of a batch-1 forward pass in eval mode under no_grad, after
    ``warmup`` untimed passes (first calls allocate and pick kernels). The model is moved to
    ``device`` for the measurement and back afterwards; its mode is restored."""
    dev = torch.device(device)
    home, was_training = _device_of(model), model.training
    model.to(dev).eval()
    x = torch.zeros(1, in_chans, *_size2(img_size), device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model(x)
            sync()
            for _ in range(reps):
                t = time.perf_counter()
                model(x)
                sync()
                times.append((time.perf_counter() - t) * 1000.0)
    finally:
        model.to(home).train(was_training)
    return float(statistics.median(times))


def describe_device(device: str | torch.device = "cpu") -> str:
    """What a latency was measured on, e.g. 'cpu (2 threads)' or 'cuda (NVIDIA H100 ...)'."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    if dev.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(dev)


def model_info(model: nn.Module, img_size: int | tuple[int, int], trainable_params: int | None = None,
               device: str | torch.device = "cpu", latency: bool = True, spec=None) -> dict:
    """Parameters, trainable parameters, MACs and (optionally) batch-1 latency of ``model``.

    ``trainable_params``: pass what a fine-tuning strategy trains (e.g. a linear probe's head);
    by default the parameters with ``requires_grad``. ``spec`` (a ModelSpec, default
    ``model.spec`` where the factory set it) adds the model's description.
    """
    params = sum(p.numel() for p in model.parameters())
    if trainable_params is None:
        trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info: dict = {
        "params": int(params),
        "trainable_params": int(trainable_params),
        "macs": count_macs(model, img_size),
        "macs_ptflops": count_macs(model, img_size, convention="ptflops"),
        "latency_ms": latency_ms(model, img_size, device) if latency else None,
        "latency_device": describe_device(device) if latency else None,
        "img_size": img_size if isinstance(img_size, int) else list(_size2(img_size)),
    }
    spec = spec if spec is not None else getattr(model, "spec", None)
    if spec is not None:
        info["spec"] = spec.to_dict()
    else:  # a Classifier built by hand: what it knows about itself
        desc = {k: getattr(model, a) for k, a in
                (("pool", "pool"), ("head", "head_name"), ("num_classes", "num_classes"))
                if hasattr(model, a)}
        if desc:
            info["spec"] = desc
    return info
