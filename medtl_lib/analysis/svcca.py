"""SVCCA (Raghu et al., 2017), as seed 003 uses it to ask which layers fine-tuning changed.

Two activation matrices of the same n inputs, X (n x p) and Y (n x q): centre the columns, keep the
top singular directions of each that explain ``keep`` of its variance (SV step: drops the noise
directions), then CCA between the kept subspaces; the canonical correlations are the singular values
of Ux^T Uy for orthonormal bases Ux, Uy. 1 means a direction both layers represent identically up to
a linear map.

Why a random baseline always goes with it: with few inputs per kept dimension, two *independent*
noise matrices already score high (mean 0.52 for n = 700, 256 dimensions), so a number without its
baseline says little. :func:`random_baseline` draws that reference with the same n and kept sizes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SVCCAResult:
    coefficients: np.ndarray  # canonical correlations, descending, in [0, 1]
    kept: tuple[int, int]  # directions kept from X and from Y

    @property
    def mean(self) -> float:
        return float(self.coefficients.mean())


def _kept_basis(a: np.ndarray, keep: float) -> np.ndarray:
    """An orthonormal basis (n x k) of the top directions explaining ``keep`` of the variance."""
    a = a - a.mean(0, keepdims=True)
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    energy = s ** 2
    if energy.sum() == 0:
        raise ValueError("svcca: an activation matrix is constant (no variance to compare)")
    tol = energy.max() * max(a.shape) * np.finfo(a.dtype).eps  # numerically zero directions
    rank = int((energy > tol).sum())
    k = int(np.searchsorted(np.cumsum(energy) / energy.sum(), keep - 1e-12) + 1)
    return u[:, :min(k, rank)]


def svcca(a: np.ndarray, b: np.ndarray, keep: float = 0.99) -> SVCCAResult:
    """SVCCA of two (n, features) arrays on the same n inputs (rows)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"svcca needs two (n, features) arrays with the same n, got {a.shape} "
                         f"and {b.shape}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep is a share of the variance in (0, 1], got {keep}")
    ua, ub = _kept_basis(a, keep), _kept_basis(b, keep)
    rho = np.linalg.svd(ua.T @ ub, compute_uv=False)
    return SVCCAResult(np.clip(np.sort(rho)[::-1], 0.0, 1.0), (ua.shape[1], ub.shape[1]))


def random_baseline(n: int, dims: tuple[int, int], seed: int = 0, keep: float = 0.99
                    ) -> SVCCAResult:
    """SVCCA of two independent Gaussian matrices with n rows and the given widths: what "no
    shared structure" scores at this sample size."""
    rng = np.random.default_rng(seed)
    return svcca(rng.standard_normal((n, dims[0])), rng.standard_normal((n, dims[1])), keep)
