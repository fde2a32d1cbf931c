"""Choosing the device and precision, and saying clearly when a GPU cannot be used."""
from __future__ import annotations

from dataclasses import dataclass

import torch


class UnsupportedGPUError(RuntimeError):
    """The GPU exists but the installed torch build has no kernels for it."""


PRECISION_LABELS = {None: "fp32", torch.bfloat16: "bf16 autocast",
                    torch.float16: "fp16 autocast + GradScaler"}


@dataclass(frozen=True)
class DeviceInfo:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None = full fp32
    description: str

    @property
    def precision(self) -> str:
        return PRECISION_LABELS[self.amp_dtype]

    @property
    def uses_scaler(self) -> bool:
        return self.amp_dtype == torch.float16


def gpu_support() -> tuple[bool, str]:
    """Is the visible GPU's compute capability among the installed torch build's targets?

    Kaggle's P100 (sm_60) is not in current CUDA builds of torch; without this check it fails
    later with 'no kernel image is available for execution on the device'.
    """
    if not torch.cuda.is_available():
        return False, "no CUDA GPU visible"
    major, minor = torch.cuda.get_device_capability(0)
    name = torch.cuda.get_device_name(0)
    arches = torch.cuda.get_arch_list()
    cap = major * 10 + minor
    sms = [int(a.split("_")[1]) for a in arches if a.startswith("sm_") and a.split("_")[1].isdigit()]
    ptx = [int(a.split("_")[1]) for a in arches if a.startswith("compute_") and a.split("_")[1].isdigit()]
    # A cubin runs on the same major with >= minor; PTX JIT-compiles for newer GPUs.
    ok = any(s // 10 == major and s <= cap for s in sms) or any(p <= cap for p in ptx)
    msg = (f"{name} (compute capability {major}.{minor}); torch {torch.__version__} built for "
           f"{', '.join(arches) or 'no GPU architectures'}")
    return ok, msg


def select_device(preference: str = "auto", amp: str = "auto") -> DeviceInfo:
    """'auto' takes a supported CUDA GPU, else the CPU; an unsupported GPU is an error that says
    what to do rather than a silent 50x slower CPU run."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {preference!r}")
    use_cuda = False
    if preference in ("auto", "cuda"):
        ok, msg = gpu_support()
        if torch.cuda.is_available() and not ok:
            raise UnsupportedGPUError(
                f"The GPU cannot run this torch build: {msg}.\n"
                "  On Kaggle, choose the 'GPU T4 x2' accelerator (the P100 needs an older torch),\n"
                "  or install a torch build that supports this GPU,\n"
                "  or run on the CPU deliberately with device='cpu' (--device cpu).")
        if preference == "cuda" and not ok:
            raise RuntimeError(f"device='cuda' was asked for, but {msg}.")
        use_cuda = ok
    if not use_cuda:
        if amp not in ("auto", "off"):
            raise ValueError(f"amp='{amp}' needs a CUDA GPU; use amp='off' on the CPU")
        return DeviceInfo(torch.device("cpu"), None,
                          f"CPU ({torch.get_num_threads()} threads), fp32")
    _, msg = gpu_support()
    if amp == "off":
        dtype = None
    elif amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        dtype = torch.bfloat16
    else:
        dtype = torch.float16  # with a GradScaler: fp16 gradients underflow otherwise
    return DeviceInfo(torch.device("cuda", 0), dtype, f"CUDA: {msg}; {PRECISION_LABELS[dtype]}")


def tune_cpu_allocator() -> bool:
    """Keep freed activation buffers in the process instead of returning them to the OS.

    glibc hands large blocks back with munmap/trim after every step and page-faults them in
    again on the next one; on a 2-core machine that costs ~25% of a CPU training step (measured:
    EfficientNet-Lite0, 128 px, ~62 -> ~80 images/s, system time 48 s -> 4 s). The price is that
    the process keeps its peak memory. Linux/glibc only; elsewhere it does nothing.
    Returns True when the settings were applied.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # the largest glibc accepts
    ok &= mallopt(m_trim_threshold, 2**31 - 1)
    return bool(ok)
