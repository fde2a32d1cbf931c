"""Seed 002's cross-domain transfer module (CDTM, Li et al.; spec Section 2.1) as a head.

The head takes the backbone's p tokens of dimension d. Its query (the mean, or sum, of the tokens)
is compared by cosine similarity with n learnable cluster centres; the softmax over the centres
mixes n learnable p x p token-mixing matrices into one, which mixes the tokens before an MLP; the
mean of the result feeds a linear classifier. The centres let the module pick, per image, which
learned token-mixing pattern fits this domain.

Two variants (``variant``), because paper and code differ:

* ``code`` (default; the authors' code, whose structure Table VII's parameter counts match):
  LayerNorm, then a block  y = proj(m @ LN(x)), y + MLP(LN(y)), then LayerNorm; no temperature.
* ``paper`` (Eq. 1-8): x = LN(tokens), scores scaled by 1/sqrt(d), x_cd = MLP(LN(m x)); no
  projection, no residual, two LayerNorms fewer.

The mixed matrix is one einsum ``a @ M`` over the centres instead of the code's (B, n, p, p)
repeat: the same numbers without materialising n matrices per image. The module is tied to p,
hence to the input size: a sequence of another length is a clear error.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Arg
from .heads import HEADS, Head

VARIANTS = ("code", "paper")


class CDTM(nn.Module):
    """(B, p, d) tokens -> (B, p, d) tokens."""

    def __init__(self, dim: int, num_tokens: int, centers: int = 300, variant: str = "code",
                 mlp_ratio: int = 4) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"CDTM variant must be one of {VARIANTS}, got {variant!r}")
        if centers < 1:
            raise ValueError(f"CDTM needs at least one centre, got {centers}")
        self.dim, self.num_tokens, self.variant = dim, num_tokens, variant
        self.centers = nn.Parameter(torch.randn(dim, centers))  # N(0, 1), as the code
        self.mixing = nn.Parameter(torch.randn(centers, num_tokens, num_tokens))
        self.norm_in = nn.LayerNorm(dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))
        if variant == "code":
            self.norm_block = nn.LayerNorm(dim)
            self.proj = nn.Linear(dim, dim)
            self.norm_out = nn.LayerNorm(dim)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of the query (mean of the tokens) with every centre: (B, n)."""
        q = x.mean(1) if self.variant == "code" else x.sum(1)  # same cosine either way
        return F.normalize(q, dim=-1) @ F.normalize(self.centers, dim=0)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax over the centres of the query's cosine similarity: (B, n), rows sum to 1."""
        scores = self.scores(x)
        if self.variant == "paper":
            scores = scores / math.sqrt(self.dim)
        return scores.softmax(-1)

    def mixing_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """The normalised tokens the attention sees (what ``forward`` passes to ``weights``)."""
        x = self.norm_in(tokens)
        return x if self.variant == "paper" else self.norm_block(x)

    def mixed_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """m_cd = sum_i a_i M_i per image: (B, p, p)."""
        return torch.einsum("bk,kpq->bpq", self.weights(x), self.mixing)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[1:] != (self.num_tokens, self.dim):
            raise ValueError(
                f"CDTM was built for {self.num_tokens} tokens of dimension {self.dim} (its input "
                f"size), got {tuple(tokens.shape[1:])}: train and evaluate at the image size the "
                "model was built with")
        h = self.mixing_input(tokens)
        if self.variant == "paper":
            return self.mlp(self.norm_mlp(self.mixed_matrix(h) @ h))
        y = self.proj(self.mixed_matrix(h) @ h)
        return self.norm_out(y + self.mlp(self.norm_mlp(y)))


class CDTMHead(nn.Module):
    """CDTM, the mean over its tokens, a linear classifier."""

    def __init__(self, dim: int, num_classes: int, num_tokens: int, centers: int = 300,
                 variant: str = "code") -> None:
        super().__init__()
        self.cdtm = CDTM(dim, num_tokens, centers, variant)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.cdtm(tokens).mean(1))


@HEADS.register
class CDTMHeadComponent(Head):
    """The registered head ``cdtm``: the Classifier gives it (B, p, d) tokens and num_tokens."""

    name = "cdtm"
    description = "seed 002's cross-domain transfer module on the tokens (needs --pool tokens)"
    takes_tokens = True
    args = (Arg("centers", "int", 300, "learnable cluster centres n", minimum=1),
            Arg("variant", "str", "code", "code (the authors' code) | paper (Eq. 1-8)",
                choices=VARIANTS))

    @classmethod
    def build(cls, in_features: int, num_classes: int, num_tokens: int = 0, centers: int = 300,
              variant: str = "code") -> nn.Module:
        return CDTMHead(in_features, num_classes, num_tokens, centers, variant)


def cdtm_head(in_features: int, num_classes: int, num_tokens: int, centers: int = 300,
              variant: str = "code") -> nn.Module:
    return CDTMHead(in_features, num_classes, num_tokens, centers, variant)


cdtm_head.takes_tokens = True
