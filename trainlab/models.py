"""MLP and a small VGG-style CNN, built from layer factories (timm's `Mlp` habit).

Every hidden block is an `nn.Sequential` with predictable child names:
`blocks.3.fc|conv` (the affine map), `blocks.3.norm`, `blocks.3.act`, `blocks.3.drop`.
Statistics find activation layers by these names, never by type.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import partial

from torch import nn

LayerFactory = Callable[..., nn.Module]
AFFINE_NAMES = ("fc", "conv")


def identity_factory(*_args, **_kwargs) -> nn.Module:
    """norm_layer for 'no normalisation': keeps the block's child names stable."""
    return nn.Identity()


def _block(
    affine: Callable[[int], nn.Module],
    affine_name: str,
    width: int,
    act_layer: LayerFactory,
    norm_layer: LayerFactory,
    dropout: float,
) -> nn.Sequential:
    """affine -> norm -> act (-> dropout); the affine map is widened for Maxout's pieces."""
    act = act_layer()  # one instance per call site: a shared module would mix statistics
    wide = width * getattr(act, "pieces", 1)
    layers = OrderedDict([(affine_name, affine(wide)), ("norm", norm_layer(wide)), ("act", act)])
    if dropout > 0:
        layers["drop"] = nn.Dropout(dropout)  # inverted dropout: scaled by 1/(1-p) in training
    return nn.Sequential(layers)


class MLP(nn.Module):
    """`depth` hidden layers of `width` units, then a linear classifier."""

    layout = "flat"  # which norm_layer it takes: (B, F) features

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        depth: int = 3,
        width: int = 128,
        act_layer: LayerFactory = nn.ReLU,
        norm_layer: LayerFactory = identity_factory,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        blocks, fan_in = [], math.prod(in_shape)
        for _ in range(depth):
            blocks.append(
                _block(partial(nn.Linear, fan_in), "fc", width, act_layer, norm_layer, dropout)
            )
            fan_in = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(fan_in, num_classes)

    def forward(self, x):
        return self.head(self.blocks(self.flatten(x)))  # (B, num_classes)


class CNN(nn.Module):
    """VGG-style: `stages` x (`depth` conv3x3-norm-act blocks, 2x2 max pool), then a small MLP head.

    Channels start at `width` and double at every stage. Dropout acts in the head only.
    """

    layout = "spatial"  # which norm_layer it takes: (B, C, H, W) maps

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        width: int = 32,
        stages: int = 2,
        depth: int = 2,
        head_width: int = 128,
        act_layer: LayerFactory = nn.ReLU,
        norm_layer: LayerFactory = identity_factory,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, height, wide = in_shape[0], in_shape[1], in_shape[2]
        blocks: list[nn.Module] = []
        for stage in range(stages):
            out = width * 2**stage
            for _ in range(depth):
                conv = partial(nn.Conv2d, channels, kernel_size=3, padding=1)
                blocks.append(_block(conv, "conv", out, act_layer, norm_layer, 0.0))
                channels = out
            blocks.append(nn.MaxPool2d(2))
            height, wide = height // 2, wide // 2
        if height < 1 or wide < 1:
            raise ValueError(
                f"model.stages={stages} pools a {in_shape[1]}x{in_shape[2]} image below 1 pixel"
            )
        self.blocks = nn.Sequential(*blocks)
        self.flatten = nn.Flatten()
        flat = channels * height * wide
        if head_width > 0:
            self.hidden = _block(
                partial(nn.Linear, flat), "fc", head_width, act_layer, identity_factory, dropout
            )
            flat = head_width
        else:
            self.hidden = nn.Identity()
        self.head = nn.Linear(flat, num_classes)

    def forward(self, x):
        return self.head(self.hidden(self.flatten(self.blocks(x))))  # (B, num_classes)


def activation_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of every nonlinearity, in forward order: the children named `act`."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "act":
            yield name, module


def affine_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of every linear/conv layer in forward order, the classifier last."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            yield name, module
