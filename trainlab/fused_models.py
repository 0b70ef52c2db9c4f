"""K models of one architecture as one horizontally fused model (HFTA, Wang et al. 2021).

Built from K ordinary models (each built and initialised exactly as its own run builds it),
so every member starts from the weights its separate run would draw. Linear layers hold
stacked weights (K, out, in) and run as one `torch.baddbmm`; norms and activations act per
member (members may differ in their activation: `Mixed`). Inputs and outputs carry the member
first: (K, B, ...). A fused layer knows K; the models, factories and config files never do. `member_state_dict(k)` is member k's own
state_dict, under the names of the unfused model.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.layers import Maxout
from trainlab.models import CNN, MLP


class FusionUnsupported(ValueError):
    """The model holds a layer that has no fused form yet: train the members separately."""


class Stacked(nn.Module):
    """K modules of one kind with parameters only: each parameter stacked to (K, ...)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        first = modules[0]
        if any(True for _ in first.buffers()):
            raise FusionUnsupported(f"{type(first).__name__} has buffers")
        self.k = len(modules)
        shapes = {tuple((n, tuple(p.shape)) for n, p in m.named_parameters()) for m in modules}
        if len(shapes) > 1:
            raise FusionUnsupported(f"the members' {type(first).__name__} layers differ in shape")
        for name, _ in first.named_parameters():
            stacked = torch.stack([m.get_parameter(name).detach().contiguous() for m in modules])
            self.register_parameter(name, nn.Parameter(stacked))

    def member_state(self, k: int) -> dict[str, Tensor]:
        return {name: p[k] for name, p in self.named_parameters(recurse=False)}

    def per_member(self, p: Tensor, x: Tensor, dim: int) -> Tensor:
        """p (K, n) shaped to broadcast over x (K, B, ...) with n along x's dim `dim`."""
        return p.view(self.k, *[1] * (dim - 1), p.shape[1], *[1] * (x.dim() - dim - 1))


class FusedLinear(Stacked):
    """K nn.Linear layers: (K, B, in) -> (K, B, out) in one batched matmul."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        if any(m.bias is None for m in layers):
            raise FusionUnsupported("a linear layer without bias")
        super().__init__(layers)  # weight (K, out, in), bias (K, out)

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class FusedPReLU(Stacked):
    """K nn.PReLU: each member's own slope(s), (K, n) with n = 1 or the number of units."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, x, self.per_member(self.weight, x, 2) * x)


class FusedNorm(Stacked):
    """K LayerNorm(F) / GroupNorm(G, C): statistics per example (so per member), then each
    member's own affine map. Input (K, B, F) or (K, B, C, H, W)."""

    def __init__(self, norms: list[nn.Module]) -> None:
        first = norms[0]
        if isinstance(first, nn.LayerNorm) and len(first.normalized_shape) != 1:
            raise FusionUnsupported("a LayerNorm over more than the last dimension")
        super().__init__(norms)
        self.eps, self.groups = first.eps, getattr(first, "num_groups", None)
        if isinstance(first, nn.InstanceNorm2d):
            self.groups = first.num_features

    def forward(self, x: Tensor) -> Tensor:
        if self.groups is None:
            y = F.layer_norm(x, x.shape[-1:], None, None, self.eps)
        else:
            y = F.group_norm(x.flatten(0, 1), self.groups, None, None, self.eps).view(x.shape)
        if "weight" in self._parameters:
            dim = x.dim() - 1 if self.groups is None else 2
            y = y * self.per_member(self.weight, x, dim) + self.per_member(self.bias, x, dim)
        return y


class FusedDropout(nn.Module):
    """K nn.Dropout(p), each member's mask drawn from its own generator exactly as F.dropout
    draws it on the CPU (bernoulli_(1 - p) on a tensor of the member's shape, divided by
    1 - p, times the input): a member's masks are its separate run's, given its RNG state."""

    def __init__(self, p: float, generators: list[torch.Generator]) -> None:
        super().__init__()
        self.p, self.generators = p, generators

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        noise = torch.empty_like(x)
        for k, g in enumerate(self.generators):
            noise[k].bernoulli_(keep, generator=g)
        return x * noise.div_(keep)

    def member_state(self, k: int) -> dict[str, Tensor]:
        return {}


def grouped(x: Tensor) -> Tensor:
    """(K, B, C, ...) -> (B, K*C, ...): the members side by side as channel groups (free
    when x came from `ungrouped`)."""
    return x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:])


def ungrouped(y: Tensor, k: int) -> Tensor:
    """(B, K*C, ...) -> (K, B, C, ...), a view."""
    return y.view(y.shape[0], k, -1, *y.shape[2:]).transpose(0, 1)


class Elementwise(nn.Module):
    """A module without parameters or buffers (an activation, Identity) applied to all
    members at once: the same function as K copies."""

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        first = modules[0]
        if any(True for _ in first.parameters()) or any(True for _ in first.buffers()):
            raise FusionUnsupported(f"{type(first).__name__} has parameters or buffers")
        self.module = first

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(self.module, Maxout):
            return self.module(x)  # elementwise on (K, B, ...) in whatever layout x has
        k, b = x.shape[:2]
        y = self.module(x.flatten(0, 1))  # (K*B, C, ...): Maxout reads its pieces from dim 1
        return y.view(k, b, *y.shape[1:])

    def member_state(self, k: int) -> dict[str, Tensor]:
        return {}


class Mixed(nn.Module):
    """Members whose activations differ (relu for some, tanh for others): each function on its
    members' rows, in one call per distinct function."""

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        if not all(_function(m) for m in modules):
            raise FusionUnsupported("the members' layers differ")
        kinds: dict[str, list[int]] = {}
        for k, m in enumerate(modules):
            kinds.setdefault(repr(m), []).append(k)
        self.functions = nn.ModuleList(modules[rows[0]] for rows in kinds.values())
        self.rows = [_rows(rows) for rows in kinds.values()]

    def forward(self, x: Tensor) -> Tensor:
        if any(isinstance(r, Tensor) and r.device != x.device for r in self.rows):
            self.rows = [r.to(x.device) if isinstance(r, Tensor) else r for r in self.rows]
        out = torch.empty_like(x)
        for f, rows in zip(self.functions, self.rows, strict=True):
            out[rows] = f(x[rows])
        return out

    def member_state(self, k: int) -> dict[str, Tensor]:
        return {}


def _rows(rows: list[int]) -> slice | Tensor:
    """Consecutive members as a slice (a view, no gather or scatter copy), others as indices."""
    if rows == list(range(rows[0], rows[-1] + 1)):
        return slice(rows[0], rows[-1] + 1)
    return torch.tensor(rows)


def _stateful(m: nn.Module) -> bool:
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


def _function(m: nn.Module) -> bool:
    """A leaf without state or randomness: an activation, Identity."""
    return not (_stateful(m) or list(m.children()) or isinstance(m, (nn.Dropout, Maxout)))


class Grouped(nn.Module):
    """A per-channel module without parameters (max pooling) on the members as channel
    groups (B, K*C, H, W)."""

    def __init__(self, module: nn.Module, k: int) -> None:
        super().__init__()
        self.module, self.k = module, k

    def forward(self, x: Tensor) -> Tensor:
        return ungrouped(self.module(grouped(x)), self.k)


class FusedConv2d(Stacked):
    """K nn.Conv2d as one grouped convolution (K groups) on (B, K*C, H, W)."""

    def __init__(self, convs: list[nn.Conv2d]) -> None:
        first = convs[0]
        if first.bias is None or first.groups != 1 or first.padding_mode != "zeros":
            raise FusionUnsupported("a conv layer without bias, grouped or not zero-padded")
        super().__init__(convs)  # weight (K, out, in, kh, kw), bias (K, out)
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv2d(grouped(x), self.weight.flatten(0, 1), self.bias.flatten(), self.stride,
                     self.padding, self.dilation, self.k)  # fmt: skip
        return ungrouped(y, self.k)


class FusedBatchNorm(nn.Module):
    """K BatchNorm1d(F)/2d(C) as one of K*F features over (B, K*F, ...): statistics per member."""

    def __init__(self, norms: list[nn.Module]) -> None:
        super().__init__()
        first = norms[0]
        self.k, self.features = len(norms), first.num_features
        self.norm = type(first)(self.k * self.features, first.eps, first.momentum,
                                first.affine, first.track_running_stats)  # fmt: skip
        with torch.no_grad():
            for name, tensor in self.norm.state_dict().items():
                if name != "num_batches_tracked":
                    tensor.copy_(torch.cat([m.state_dict()[name] for m in norms]))

    def forward(self, x: Tensor) -> Tensor:
        return ungrouped(self.norm(grouped(x)), self.k)

    def member_state(self, k: int) -> dict[str, Tensor]:
        f = self.features
        return {name: t if name == "num_batches_tracked" else t[k * f : (k + 1) * f]
                for name, t in self.norm.state_dict().items()}  # fmt: skip


def fuse_layer(modules: list[nn.Module], generators: list[torch.Generator]) -> nn.Module:
    """The fused form of K corresponding layers (or blocks) of K members; dropout draws
    from `generators`, one per member."""
    first, kind = modules[0], type(modules[0])
    if len({repr(m) for m in modules}) > 1 and all(_function(m) for m in modules):
        return Mixed(modules)  # activations that differ between members
    if any(type(m) is not kind for m in modules):
        raise FusionUnsupported("the members' layers differ")
    if kind is nn.Sequential:
        return nn.Sequential(OrderedDict(
            (name, fuse_layer([m._modules[name] for m in modules], generators))
            for name in first._modules
        ))  # fmt: skip
    if kind in (nn.Linear, nn.Conv2d, nn.PReLU, nn.LayerNorm, nn.GroupNorm):
        fused = {nn.Linear: FusedLinear, nn.Conv2d: FusedConv2d, nn.PReLU: FusedPReLU}
        return fused.get(kind, FusedNorm)(modules)
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
        return FusedBatchNorm(modules)
    if kind is nn.InstanceNorm2d and not first.track_running_stats:
        return FusedNorm(modules)  # per channel of one example: group norm, C groups
    if kind in (nn.MaxPool2d, nn.AvgPool2d):
        return Grouped(first, len(modules))
    if kind is nn.Dropout and first.p > 0:
        return FusedDropout(first.p, generators)
    return Elementwise(modules)


class FusedModel(nn.Module):
    """K trainlab MLPs or CNNs: (K, B, *in_shape) -> (K, B, num_classes); child names as in
    the unfused model, so member_state_dict(k) is member k's own state_dict."""

    def __init__(self, members: list[nn.Module], generators: list[torch.Generator]) -> None:
        super().__init__()
        kind = type(members[0])
        if kind not in (MLP, CNN) or any(type(m) is not kind for m in members):
            raise FusionUnsupported("only trainlab's MLP and CNN have a fused form")
        self.k, self.layout = len(members), kind.layout
        self.blocks = fuse_layer([m.blocks for m in members], generators)
        if kind is CNN:
            self.hidden = fuse_layer([m.hidden for m in members], generators)
        self.head = FusedLinear([m.head for m in members])

    def forward(self, x: Tensor) -> Tensor:
        if self.layout == "flat":
            return self.head(self.blocks(x.flatten(2)))  # (K, B, num_classes)
        return self.head(self.hidden(self.blocks(x).flatten(2)))

    def member_state_dict(self, k: int) -> dict[str, Tensor]:
        """Member k's state_dict with the unfused model's names (a copy)."""
        state = {}
        for prefix, module in self.named_modules():
            if hasattr(module, "member_state"):
                for name, tensor in module.member_state(k).items():
                    state[f"{prefix}.{name}"] = tensor.detach().clone()
        return state

    def affine_layers(self) -> list[tuple[str, Stacked]]:
        """(name, layer) of every fused linear/conv layer in forward order, the classifier last."""
        kinds = (FusedLinear, FusedConv2d)
        return [(name, m) for name, m in self.named_modules() if isinstance(m, kinds)]

    def fused_weights(self) -> list[Tensor]:
        """The stacked weights of every linear/conv layer (decayed; L1-penalised)."""
        return [m.weight for _, m in self.affine_layers()]


def fuse(members: list[nn.Module], generators: list[torch.Generator]) -> FusedModel:
    """One fused model from K built members (FusionUnsupported when there is no fused form);
    `generators`: each member's own for dropout (its run's global RNG state after building)."""
    fused = FusedModel(members, generators)
    return fused.to(next(members[0].parameters()).device)
