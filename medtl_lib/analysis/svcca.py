"""SVCCA (Raghu et al., 2017), as seed 003 uses it to ask which layers fine-tuning changed.

Two activation matrices of the same n inputs, X (n x p) and Y (n x q): centre the columns, keep the
top singular directions of each that explain ``keep`` of its variance (SV step: drops the noise
directions), then CCA between the kept subspaces; the canonical correlations are the singular values
of Ux^T Uy for orthonormal bases Ux, Uy. 1 means a direction both layers represent identically up to
a linear map.

One number per pair of layers is a mean of the coefficients, and two are in use (``mean=``):

* ``"all"``: the mean of every coefficient (what google/svcca's tutorials print,
  ``np.mean(results["cca_coef1"])``);
* ``"sum_threshold"``: google/svcca's ``cca_core.get_cca_similarity`` summary
  (``return_dict["mean"]``): the mean of the leading coefficients that hold 98% of their sum,
  ``np.mean(s[:sum_threshold(s, 0.98)])``, which drops the trailing near-zero ones.

The second is never below the first; a figure names which one it shows (:func:`mean_label`).

Why a random baseline always goes with it: with few inputs per kept dimension, two *independent*
noise matrices already score high (mean of all 0.52 for n = 700, 256 dimensions), so a number
without its baseline says little. :func:`random_baseline` draws that reference with the same n and
kept sizes (and the same mean, so the two are compared like for like).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the share of the coefficients' sum google/svcca's ``get_cca_similarity`` keeps for its mean
SUM_THRESHOLD = 0.98
#: the ways to average the coefficients into one number: see the module's docstring
MEANS: tuple[str, ...] = ("all", "sum_threshold")


def sum_threshold(s: np.ndarray, threshold: float = SUM_THRESHOLD) -> int:
    """How many leading coefficients google/svcca's mean keeps: as ``cca_core.sum_threshold``,
    the first i in 0 .. len(s) - 1 with ``sum(s[:i]) / sum(s) >= threshold`` (s[:i] excludes
    s[i]), and all of them where there is none (the reference returns None, and ``s[:None]``
    is every coefficient). Computed prefix by prefix as the reference does, so ties at the
    threshold fall the same way."""
    s = np.asarray(s, dtype=np.float64)
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold is a share of the sum in [0, 1], got {threshold}")
    total = np.sum(s)
    with np.errstate(invalid="ignore", divide="ignore"):  # all zero: no i qualifies, as there
        for i in range(len(s)):
            if np.sum(s[:i]) / total >= threshold:
                return i
    return len(s)


def _check_mean(mean: str) -> None:
    if mean not in MEANS:
        raise ValueError(f"unknown SVCCA mean '{mean}'; known: {', '.join(MEANS)}")


def summary_mean(s: np.ndarray, mean: str = "all", threshold: float = SUM_THRESHOLD) -> float:
    """One number for a coefficient vector: see :data:`MEANS`."""
    _check_mean(mean)
    s = np.asarray(s, dtype=np.float64)
    if mean == "all":
        return float(s.mean())
    return float(s[:sum_threshold(s, threshold)].mean())


def mean_label(mean: str = "all", threshold: float = SUM_THRESHOLD) -> str:
    """How a figure or table names its SVCCA number, so readers know which mean they compare."""
    _check_mean(mean)
    if mean == "all":
        return "mean of all SVCCA coefficients"
    return f"mean SVCCA, coefficients holding {threshold:.0%} of the sum (google/svcca)"


@dataclass(frozen=True)
class SVCCAResult:
    coefficients: np.ndarray  # canonical correlations, descending, in [0, 1]
    kept: tuple[int, int]  # directions kept from X and from Y
    mean_kind: str = "all"  # what :attr:`mean` reports: one of MEANS

    @property
    def mean(self) -> float:
        """The summary this result was asked for (``mean_kind``)."""
        return summary_mean(self.coefficients, self.mean_kind)

    @property
    def mean_all(self) -> float:
        return summary_mean(self.coefficients, "all")

    @property
    def mean_sum_threshold(self) -> float:
        return summary_mean(self.coefficients, "sum_threshold")

    @property
    def label(self) -> str:
        return mean_label(self.mean_kind)


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


def svcca(a: np.ndarray, b: np.ndarray, keep: float = 0.99, mean: str = "all") -> SVCCAResult:
    """SVCCA of two (n, features) arrays on the same n inputs (rows). ``mean``: what the result's
    ``.mean`` reports (:data:`MEANS`); "all" by default, which the kit's checks and its published
    baselines use; seed 003's figures ask for google/svcca's "sum_threshold"."""
    _check_mean(mean)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"svcca needs two (n, features) arrays with the same n, got {a.shape} "
                         f"and {b.shape}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep is a share of the variance in (0, 1], got {keep}")
    ua, ub = _kept_basis(a, keep), _kept_basis(b, keep)
    rho = np.linalg.svd(ua.T @ ub, compute_uv=False)
    return SVCCAResult(np.clip(np.sort(rho)[::-1], 0.0, 1.0), (ua.shape[1], ub.shape[1]), mean)


def random_baseline(n: int, dims: tuple[int, int], seed: int = 0, keep: float = 0.99,
                    mean: str = "all") -> SVCCAResult:
    """SVCCA of two independent Gaussian matrices with n rows and the given widths: what "no
    shared structure" scores at this sample size (with the same ``mean`` as what it is drawn
    beside)."""
    rng = np.random.default_rng(seed)
    return svcca(rng.standard_normal((n, dims[0])), rng.standard_normal((n, dims[1])), keep, mean)
