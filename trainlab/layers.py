"""Layers torch lacks, and thin factories that give torch's norms one signature."""

from __future__ import annotations

import math

import torch
from torch import nn


class Maxout(nn.Module):
    """Max over `pieces` affine maps (Goodfellow et al. 2013).

    The layer in front produces `pieces` times the features; Maxout keeps the largest of
    each group, so (B, k*C, ...) -> (B, C, ...). Models read `pieces` to widen that layer,
    which doubles its parameters for k=2, as the lecture says.
    """

    def __init__(self, pieces: int = 2) -> None:
        super().__init__()
        if pieces < 1:
            raise ValueError(f"Maxout pieces must be >= 1, got {pieces}")
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        # (B, C*k, ...) -> (B, C, k, ...): piece j of unit i sits at channel i*k + j
        return x.view(b, c // self.pieces, self.pieces, *x.shape[2:]).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def group_norm(num_features: int, num_groups: int = 8, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with the norm_layer(num_features) signature; groups shrink to divide C."""
    return nn.GroupNorm(math.gcd(num_groups, num_features), num_features, eps=eps)
