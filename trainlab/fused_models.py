"""K models of one architecture as one horizontally fused model (HFTA, Wang et al. 2021).

Built from K ordinary models (each built and initialised exactly as its own run builds it),
so every member starts from the weights its separate run would draw. Linear layers hold
stacked weights (K, out, in) and run as one `torch.baddbmm`; norms and activations act per
member. Inputs and outputs carry the member first: (K, B, ...). A fused layer knows K; the
models, factories and config files never do. `member_state_dict(k)` is member k's own
state_dict, under the names of the unfused model.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from trainlab.models import MLP


class FusionUnsupported(ValueError):
    """The model holds a layer that has no fused form yet: train the members separately."""


class FusedLinear(nn.Module):
    """K nn.Linear layers: (K, B, in) -> (K, B, out) in one batched matmul."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))  # (K, out, in)
        if any(m.bias is None for m in layers):
            raise FusionUnsupported("a linear layer without bias")
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]))  # (K, out)

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    def member_state(self, k: int) -> dict[str, Tensor]:
        return {"weight": self.weight[k], "bias": self.bias[k]}


class Elementwise(nn.Module):
    """A module without parameters or buffers (an activation, dropout, Identity) applied to
    all members at once on (K*B, F): the same function as K copies."""

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        first = modules[0]
        if any(True for _ in first.parameters()) or any(True for _ in first.buffers()):
            raise FusionUnsupported(f"{type(first).__name__} has parameters or buffers")
        self.module = first

    def forward(self, x: Tensor) -> Tensor:
        k, b = x.shape[:2]
        y = self.module(x.flatten(0, 1))  # (K*B, F): Maxout reads its pieces from dim 1
        return y.view(k, b, *y.shape[1:])

    def member_state(self, k: int) -> dict[str, Tensor]:
        return {}


class FusedBatchNorm1d(nn.Module):
    """K BatchNorm1d(F) as one BatchNorm1d(K*F) over (B, K*F): statistics per member."""

    def __init__(self, norms: list[nn.BatchNorm1d]) -> None:
        super().__init__()
        first = norms[0]
        self.k, self.features = len(norms), first.num_features
        self.norm = nn.BatchNorm1d(self.k * self.features, first.eps, first.momentum,
                                   first.affine, first.track_running_stats)  # fmt: skip
        with torch.no_grad():
            for name, tensor in self.norm.state_dict().items():
                if name != "num_batches_tracked":
                    tensor.copy_(torch.cat([m.state_dict()[name] for m in norms]))

    def forward(self, x: Tensor) -> Tensor:
        k, b, f = x.shape
        y = self.norm(x.transpose(0, 1).reshape(b, k * f))  # (B, K*F)
        return y.view(b, k, f).transpose(0, 1)

    def member_state(self, k: int) -> dict[str, Tensor]:
        f = self.features
        return {name: t if name == "num_batches_tracked" else t[k * f : (k + 1) * f]
                for name, t in self.norm.state_dict().items()}  # fmt: skip


def fuse_layer(modules: list[nn.Module]) -> nn.Module:
    """The fused form of K corresponding layers of K members."""
    kind = type(modules[0])
    if any(type(m) is not kind for m in modules):
        raise FusionUnsupported("the members' layers differ")
    if kind is nn.Linear:
        return FusedLinear(modules)
    if kind is nn.BatchNorm1d:
        return FusedBatchNorm1d(modules)
    return Elementwise(modules)


class FusedMLP(nn.Module):
    """K trainlab MLPs: (K, B, *in_shape) -> (K, B, num_classes); child names as in MLP."""

    layout = "flat"

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not all(isinstance(m, MLP) for m in members):
            raise FusionUnsupported("only MLPs have a fused form")
        self.k = len(members)
        blocks = []
        for i in range(len(members[0].blocks)):
            names = list(members[0].blocks[i]._modules)
            blocks.append(nn.Sequential(OrderedDict(
                (name, fuse_layer([m.blocks[i]._modules[name] for m in members])) for name in names
            )))  # fmt: skip
        self.blocks = nn.Sequential(*blocks)
        self.head = FusedLinear([m.head for m in members])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(x.flatten(2)))  # (K, B, num_classes)

    def member_state_dict(self, k: int) -> dict[str, Tensor]:
        """Member k's state_dict with the unfused MLP's names (a copy)."""
        state = {}
        for prefix, module in self.named_modules():
            if hasattr(module, "member_state"):
                for name, tensor in module.member_state(k).items():
                    state[f"{prefix}.{name}"] = tensor.detach().clone()
        return state

    def fused_weights(self) -> list[Tensor]:
        """The stacked weights of every linear layer (decayed; L1-penalised), classifier last."""
        return [m.weight for m in self.modules() if isinstance(m, FusedLinear)]


def fuse(members: list[nn.Module]) -> FusedMLP:
    """One fused model from K built members (FusionUnsupported when there is no fused form)."""
    fused = FusedMLP(members)
    return fused.to(next(members[0].parameters()).device)
