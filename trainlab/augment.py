"""Batch augmentations on device tensors, airbench style.

Every op is `op(x, generator, **params) -> x` on images (B, C, H, W) in [0, 1] (augmentation
runs before preprocessing), with a fresh random draw per sample from `generator`, which lives
on x's device. No Python loop runs over samples: per-sample choices become masks, index
tensors or (B, 2, 3) affine matrices. Configs bind the params with `_partial_: true` and
`compose` chains the results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Op = Callable[[Tensor, torch.Generator], Tensor]


def compose(ops: Sequence[Op]) -> Op:
    """Apply `ops` in order; an empty list is the identity."""
    ops = list(ops)

    def apply(x: Tensor, generator: torch.Generator) -> Tensor:
        for op in ops:
            x = op(x, generator)
        return x

    return apply


# --- per-sample draws -------------------------------------------------------------------------


def _uniform(x: Tensor, generator: torch.Generator, low: float, high: float) -> Tensor:
    """(B,) uniform in [low, high), one draw per sample of x."""
    return low + (high - low) * torch.rand(len(x), generator=generator, device=x.device)


def _per_sample(v: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1), to broadcast over (B, C, H, W)."""
    return v[:, None, None, None]


# --- flips and crops ------------------------------------------------------------------------


def flip_lr(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each sample left-right with probability p."""
    flip = torch.rand(len(x), generator=generator, device=x.device) < p  # (B,)
    return torch.where(_per_sample(flip), x.flip(-1), x)


def random_crop(
    x: Tensor, generator: torch.Generator, padding: int = 2, mode: str = "reflect"
) -> Tensor:
    """Pad by `padding` pixels (mode "reflect" as in airbench, or "constant": zeros), crop back to H x W at a per-sample offset."""
    if padding == 0:
        return x
    B, C, H, W = x.shape
    padded = F.pad(x, (padding,) * 4, mode=mode)  # (B, C, H + 2p, W + 2p)
    dy, dx = (
        torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=x.device)
        for _ in range(2)
    )
    rows = (dy[:, None] + torch.arange(H, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(W, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(B, device=x.device)[:, None, None]
    return (
        padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()
    )  # indexing gives (B, H, W, C)


def _warp(x: Tensor, theta: Tensor, mode: str = "bilinear", padding_mode: str = "zeros") -> Tensor:
    """Sample x at theta (B, 2, 3) @ (x_out, y_out, 1): normalised output coords -> input coords."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def _theta(a: Tensor, b: Tensor, c: Tensor, d: Tensor, e: Tensor, f: Tensor) -> Tensor:
    """Six (B,) tensors -> (B, 2, 3) matrices [[a, b, c], [d, e, f]]."""
    return torch.stack([a, b, c, d, e, f], -1).view(-1, 2, 3)


def random_resized_crop(
    x: Tensor,
    generator: torch.Generator,
    scale: Sequence[float] = (0.5, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> Tensor:
    """Crop a per-sample box of area `scale` (fraction of the image) and aspect `ratio` (w/h), resized back to H x W."""
    area = _uniform(x, generator, *scale)
    aspect = _uniform(x, generator, math.log(ratio[0]), math.log(ratio[1])).exp()  # log-uniform
    w, h = (
        (area * aspect).sqrt().clamp(max=1.0),
        (area / aspect).sqrt().clamp(max=1.0),
    )  # fractions of W, H
    cx = (1 - w) * _uniform(
        x, generator, -1.0, 1.0
    )  # box centre in normalised coords: box stays inside
    cy = (1 - h) * _uniform(x, generator, -1.0, 1.0)
    zero = torch.zeros_like(w)
    return _warp(x, _theta(w, zero, cx, zero, h, cy), padding_mode="border").clamp(0.0, 1.0)


def cutout(x: Tensor, generator: torch.Generator, fraction: float = 0.5) -> Tensor:
    """Zero a per-sample square of side round(fraction * min(H, W)) pixels, centred anywhere (clipped at the border)."""
    B, C, H, W = x.shape
    size = max(1, round(fraction * min(H, W)))  # 4 px on 8x8 digits, 16 px on 32x32 CIFAR
    top = torch.randint(0, H, (B,), generator=generator, device=x.device) - size // 2
    left = torch.randint(0, W, (B,), generator=generator, device=x.device) - size // 2
    rows, cols = torch.arange(H, device=x.device), torch.arange(W, device=x.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)  # (B, W)
    return x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)


# --- colour ---------------------------------------------------------------------------------


def _gray(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 1, H, W) luminance (torchvision's weights); a 1-channel image is its own."""
    if x.shape[1] != 3:
        return x[:, :1]
    return (x * x.new_tensor([0.2989, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """factor * x + (1 - factor) * other, factor (B,) per sample, clamped to [0, 1] as in torchvision."""
    f = _per_sample(factor)
    return (f * x + (1 - f) * other).clamp(0.0, 1.0)


def _brightness(x: Tensor, factor: Tensor) -> Tensor:
    return _blend(x, torch.zeros_like(x), factor)


def _contrast(x: Tensor, factor: Tensor) -> Tensor:
    return _blend(x, _gray(x).mean((1, 2, 3), keepdim=True), factor)  # towards the mean grey level


def _saturation(x: Tensor, factor: Tensor) -> Tensor:
    return _blend(x, _gray(x), factor) if x.shape[1] == 3 else x  # no colour in 1 channel


def color_jitter(
    x: Tensor,
    generator: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
) -> Tensor:
    """Per-sample brightness, contrast and saturation factors, each uniform in [1 - v, 1 + v]; in that order."""
    for adjust, v in ((_brightness, brightness), (_contrast, contrast), (_saturation, saturation)):
        x = adjust(x, _uniform(x, generator, max(0.0, 1 - v), 1 + v))
    return x


# --- RandAugment ----------------------------------------------------------------------------

# torchvision's RandAugment space (transforms.RandAugment._augmentation_space), in this order.
RAND_AUGMENT_OPS = (
    "identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness",
    "color", "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize",
)  # fmt: skip


def _sharpen(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with a 3x3 smoothed copy ([[1,1,1],[1,5,1],[1,1,1]] / 13, border pixels kept), as torchvision."""
    if min(x.shape[-2:]) <= 2:
        return x
    kernel = x.new_ones(3, 3)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(x.shape[1], 1, 3, 3)
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=x.shape[1])
    return _blend(x, smooth, factor)


def _posterize(x: Tensor, bits: int) -> Tensor:
    """Keep the top `bits` bits of the 8-bit value."""
    step = 2 ** (8 - bits)
    return torch.floor(torch.round(x * 255) / step) * step / 255


def _autocontrast(x: Tensor) -> Tensor:
    """Stretch each channel of each sample to [0, 1]; constant channels unchanged."""
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    flat = high == low
    return torch.where(flat, x, (x - low) / torch.where(flat, 1.0, high - low))


def _equalize(x: Tensor) -> Tensor:
    """Histogram equalisation of each channel of each sample on 256 levels (torchvision's lookup table)."""
    B, C, H, W = x.shape
    v = torch.round(x * 255).long().flatten(2)  # (B, C, HW) in 0..255
    hist = torch.zeros(B, C, 256, device=x.device).scatter_add_(
        2, v, torch.ones_like(v, dtype=torch.float)
    )
    last = ((hist > 0) * torch.arange(256, device=x.device)).argmax(
        2, keepdim=True
    )  # last non-empty bin
    step = torch.div(H * W - hist.gather(2, last), 255, rounding_mode="floor")  # (B, C, 1)
    lut = torch.div(
        hist.cumsum(2) + torch.div(step, 2, rounding_mode="floor"),
        step.clamp(min=1),
        rounding_mode="floor",
    )
    lut = F.pad(lut, (1, 0))[..., :-1].clamp(0, 255)  # level i -> lut[i]
    out = (lut.gather(2, v) / 255).view_as(x)
    return torch.where((step == 0)[..., None], x, out)  # (B, C, 1, 1): a flat histogram stays


def _rand_augment_theta(op: Tensor, m: Tensor, H: int, W: int) -> Tensor:
    """(B, 2, 3) output -> input maps for the geometric ops drawn in `op` (B,), signed level m (B,); identity otherwise."""
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    shear, angle = (
        0.3 * m,
        math.radians(30.0) * m,
    )  # torchvision: shear 0..0.3, rotate 0..30 degrees
    tx = (
        torch.trunc(150 / 331 * W * m) * 2 / W
    )  # whole pixels, up to 150/331 of the side; normalised
    ty = torch.trunc(150 / 331 * H * m) * 2 / H
    cos, sin = angle.cos(), angle.sin()
    maps = {  # shears about the top-left corner (torchvision's center=[0, 0]); H/W factors for non-square images
        "shear_x": (one, shear * H / W, shear * H / W, zero, one, zero),
        "shear_y": (one, zero, zero, shear * W / H, one, shear * W / H),
        "translate_x": (one, zero, -tx, zero, one, zero),
        "translate_y": (one, zero, zero, zero, one, -ty),
        "rotate": (cos, -sin * H / W, zero, sin * W / H, cos, zero),
    }
    theta = _theta(one, zero, zero, zero, one, zero)
    for name, entries in maps.items():
        theta = torch.where(
            (op == RAND_AUGMENT_OPS.index(name))[:, None, None], _theta(*entries), theta
        )
    return theta


def _rand_augment_colour(x: Tensor, op: Tensor, m: Tensor, level: float) -> Tensor:
    """Apply to each sample the colour op it drew; every op is computed for the batch, then selected."""
    enhance = 1 + 0.9 * m  # torchvision: factor 1 + magnitude, magnitude 0..0.9, signed
    ops = {
        "brightness": lambda: _brightness(x, enhance),
        "color": lambda: _saturation(x, enhance),
        "contrast": lambda: _contrast(x, enhance),
        "sharpness": lambda: _sharpen(x, enhance),
        "posterize": lambda: _posterize(x, 8 - round(4 * level)),  # 8 bits down to 4
        "solarize": lambda: torch.where(x >= 1 - level, 1 - x, x),  # threshold 1 down to 0
        "autocontrast": lambda: _autocontrast(x),
        "equalize": lambda: _equalize(x),
    }
    out = x
    for name, fn in ops.items():
        out = torch.where(_per_sample(op == RAND_AUGMENT_OPS.index(name)), fn(), out)
    return out


def rand_augment(
    x: Tensor,
    generator: torch.Generator,
    num_ops: int = 2,
    magnitude: int = 9,
    num_magnitude_bins: int = 31,
) -> Tensor:
    """Batched RandAugment: each sample draws `num_ops` ops (uniformly, with a random sign) from RAND_AUGMENT_OPS.

    Magnitudes follow torchvision: op maximum * magnitude / (num_magnitude_bins - 1). Geometric
    ops go through one affine_grid per round (nearest sampling, zero fill, as torchvision).
    """
    B, _, H, W = x.shape
    level = magnitude / (num_magnitude_bins - 1)
    for _ in range(num_ops):
        op = torch.randint(0, len(RAND_AUGMENT_OPS), (B,), generator=generator, device=x.device)
        sign = torch.where(torch.rand(B, generator=generator, device=x.device) < 0.5, -1.0, 1.0)
        geometric = (op >= RAND_AUGMENT_OPS.index("shear_x")) & (
            op <= RAND_AUGMENT_OPS.index("rotate")
        )
        warped = _warp(x, _rand_augment_theta(op, sign * level, H, W), mode="nearest")
        x = torch.where(_per_sample(geometric), warped, x)
        x = _rand_augment_colour(x, op, sign * level, level)
    return x
