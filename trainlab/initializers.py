"""Weight initialisation of every linear/conv layer; kaiming's gain follows the activation."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from trainlab.models import affine_layers

WeightInit = Callable[[torch.Tensor], torch.Tensor]


def with_gain(
    weight_init: WeightInit,
    gain: str | None,
    gain_arg: str | None,
    nonlinearity: str,
    param: float | None,
) -> WeightInit:
    """The scheme as is (gain None: Glorot's, LeCun's own scale), or scaled to the activation
    (gain "activation"): through `gain=` (xavier, orthogonal) or `nonlinearity=` (kaiming)."""
    if gain is None:
        return weight_init
    if gain_arg == "gain":
        return partial(weight_init, gain=nn.init.calculate_gain(nonlinearity, param))
    if gain_arg == "nonlinearity":
        return partial(weight_init, nonlinearity=nonlinearity, a=param or 0.0)
    raise ValueError(f"init.gain_arg={gain_arg!r}: allowed are 'gain', 'nonlinearity'")


@torch.no_grad()
def init_weights(
    model: nn.Module,
    weight_init: WeightInit | None,
    bias: float | None,
    head_init: WeightInit | None = None,
) -> None:
    """Apply `weight_init` to every linear/conv weight and a constant to their biases.

    The classifier (the last layer) gets `head_init` when given: no nonlinearity follows it,
    so its gain is the linear one. None keeps PyTorch's own default for that part. Norm
    layers keep their (1, 0) init.
    """
    layers = list(affine_layers(model))
    for i, (_, layer) in enumerate(layers):
        init = head_init if head_init is not None and i == len(layers) - 1 else weight_init
        if init is not None:
            init(layer.weight)
        if bias is not None and layer.bias is not None:
            nn.init.constant_(layer.bias, bias)


@torch.no_grad()
def unit_max_difference(model: nn.Module) -> float:
    """Largest difference between two units of one hidden layer (weights and bias).

    0 means every unit of every layer computes the same function: no symmetry breaking.
    """
    worst = 0.0
    layers = list(affine_layers(model))[:-1]  # the classifier's units differ by design
    for _, layer in layers:
        w = layer.weight.flatten(1)  # (units, fan_in)
        if layer.bias is not None:
            w = torch.cat([w, layer.bias[:, None]], dim=1)
        worst = max(worst, (w.amax(dim=0) - w.amin(dim=0)).max().item())
    return worst
