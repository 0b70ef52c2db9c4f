"""Preprocessing fitted on the training split: centring, standardising, PCA and ZCA whitening.

Each option is an nn.Module so that `.to(device)` moves its statistics and a checkpoint holds
them: `fit(train_x) -> self` computes the statistics from the training split only, `forward(x)`
applies them to any split and keeps the shape of x ((N, C, H, W) images or (N, D) features).
The statistics are buffers that start empty (shape (0,)) and take their shape in `fit`, or in
`load_state_dict`, so a fitted state loads into a fresh module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class _Fitted(nn.Module):
    """Base: statistics as buffers that are empty until fitted."""

    stats: tuple[str, ...] = ()  # buffer names

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps  # added to variances (or eigenvalues) before dividing by their root
        for name in self.stats:
            self.register_buffer(name, torch.empty(0))

    def extra_repr(self) -> str:
        return f"eps={self.eps}"

    @property
    def fitted(self) -> bool:
        return all(getattr(self, name).numel() > 0 for name in self.stats)

    def fit(self, train_x: Tensor) -> _Fitted:
        """Compute the statistics from the training split (N, ...), N >= 1; returns self."""
        if len(train_x) == 0:
            raise ValueError(f"{type(self).__name__}.fit needs at least one training example")
        with torch.no_grad():
            for name, value in self._statistics(train_x.float()).items():
                setattr(self, name, value.to(train_x.device))  # replaces the registered buffer
        return self

    def forward(self, x: Tensor) -> Tensor:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(train_x) first")
        return self._apply_stats(x)

    def _statistics(self, x: Tensor) -> dict[str, Tensor]:
        return {}

    def _apply_stats(self, x: Tensor) -> Tensor:
        return x

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Give each empty (or differently shaped) buffer the shape it is loaded with.
        for name in self.stats:
            if prefix + name in state_dict:
                old = getattr(self, name)
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=old.device))
        super()._load_from_state_dict(state_dict, prefix, *args)


def _reduce_dims(x: Tensor) -> tuple[int, ...]:
    """All dims but the channel (dim 1): (0, 2, 3) for (N, C, H, W); (0,) for (N, D) features."""
    return (0, *range(2, x.dim()))


class Identity(_Fitted):
    """No preprocessing (inputs stay in [0, 1])."""


class CenterImage(_Fitted):
    """Subtract the mean training image (AlexNet): mean of shape (1, C, H, W) or (1, D)."""

    stats = ("mean",)

    def _statistics(self, x: Tensor) -> dict[str, Tensor]:
        return {"mean": x.mean(0, keepdim=True)}

    def _apply_stats(self, x: Tensor) -> Tensor:
        return x - self.mean


class CenterChannel(_Fitted):
    """Subtract the per-channel training mean (VGG): (1, C, 1, 1); per feature (1, D) for (N, D)."""

    stats = ("mean",)

    def _statistics(self, x: Tensor) -> dict[str, Tensor]:
        return {"mean": x.mean(_reduce_dims(x), keepdim=True)}

    def _apply_stats(self, x: Tensor) -> Tensor:
        return x - self.mean


class Standardize(_Fitted):
    """Per-channel (or per-feature) mean 0 and std 1 on the training split: (x - mean) / sqrt(var + eps)."""

    stats = ("mean", "inv_std")

    def _statistics(self, x: Tensor) -> dict[str, Tensor]:
        var, mean = torch.var_mean(x, _reduce_dims(x), correction=0, keepdim=True)
        return {"mean": mean, "inv_std": (var + self.eps).rsqrt()}

    def _apply_stats(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.inv_std


def _mean_and_covariance(x: Tensor, chunk: int = 8192) -> tuple[Tensor, Tensor]:
    """Mean (D,) and covariance (D, D) of x (N, D), accumulated in float64 over row chunks."""
    mean = x.double().mean(0)
    cov = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, len(x), chunk):  # a 45000 x 3072 float64 copy would be 1.1 GB
        xc = x[start : start + chunk].double() - mean
        cov += xc.T @ xc
    return mean, cov / len(x)


def _eigh_descending(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Flattened training data (N, D) -> mean (D,), eigenvalues (D,) and eigenvectors (D, D), largest first."""
    mean, cov = _mean_and_covariance(x.flatten(1))
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    return mean, eigvals.flip(0).clamp_min(0), eigvecs.flip(1)


class _Linear(_Fitted):
    """x -> (x.flatten(1) - mean) @ matrix, reshaped to the shape of x."""

    stats = ("mean", "matrix")

    def _apply_stats(self, x: Tensor) -> Tensor:
        return ((x.flatten(1) - self.mean) @ self.matrix).reshape(x.shape)


class PCA(_Linear):
    """Centre, then rotate into the eigenbasis of the training covariance (decorrelated, not whitened).

    Coordinate i of the output is the projection on the i-th principal component (largest
    variance first). For images the rotated vector (C*H*W,) is reshaped to (C, H, W) only so that
    the model keeps its input shape: its "pixels" are no longer spatial, which is why, as the
    lecture says, PCA and whitening are not used for conv nets on images.
    """

    def _statistics(self, x: Tensor) -> dict[str, Tensor]:
        mean, _, eigvecs = _eigh_descending(x)
        return {"mean": mean.float(), "matrix": eigvecs.float()}  # (D,), (D, D)


class ZCA(_Linear):
    """Whiten and rotate back: x_zca = (x - mu) U diag(1 / sqrt(lambda + eps)) U^T; identity covariance on train."""

    def _statistics(self, x: Tensor) -> dict[str, Tensor]:
        mean, eigvals, eigvecs = _eigh_descending(x)
        whiten = (
            eigvecs * (eigvals + self.eps).rsqrt()
        )  # U diag(1/sqrt(lambda + eps)): scales columns
        return {"mean": mean.float(), "matrix": (whiten @ eigvecs.T).float()}  # (D,), (D, D)
