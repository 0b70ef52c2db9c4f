"""Batch augmentations: shape/range kept, per-sample randomness, seeding, torchvision parity, conf files."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import hydra.utils
import pytest
import torch
import torchvision.transforms.functional as TF
from omegaconf import OmegaConf

from trainlab import augment
from trainlab.schema import AugmentationConf

CONF = Path(__file__).resolve().parents[1] / "conf" / "augmentation"
OPS = {
    "flip_lr": augment.flip_lr,
    "random_crop": augment.random_crop,
    "random_crop_zeros": partial(augment.random_crop, padding=3, mode="constant"),
    "random_resized_crop": augment.random_resized_crop,
    "color_jitter": augment.color_jitter,
    "cutout": augment.cutout,
    "rand_augment": augment.rand_augment,
}
SHAPES = {"grey8": (1, 8, 8), "rgb32": (3, 32, 32)}
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def images(n: int, shape: tuple[int, ...], seed: int = 0, device: str = "cpu") -> torch.Tensor:
    return torch.rand(n, *shape, generator=gen(seed), device="cpu").to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("name", OPS)
def test_op_keeps_shape_dtype_device_and_range(name, shape, device):
    x = images(32, shape, device=device)
    y = OPS[name](x, gen(device=device))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert y.min() >= 0.0 and y.max() <= 1.0 and torch.isfinite(y).all()


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("name", OPS)
def test_identical_images_come_out_different(name, shape):
    x = images(1, shape).expand(64, *shape).contiguous()  # one image, 64 times
    y = OPS[name](x, gen())
    distinct = torch.unique(y.flatten(1), dim=0)
    assert len(distinct) > 1, "one random draw for the whole batch"


@pytest.mark.parametrize("name", OPS)
def test_same_seed_same_output(name):
    x = images(16, (3, 32, 32))
    a, b, c = (OPS[name](x, gen(s)) for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_flips_about_a_fraction_p():
    x = images(1, (1, 8, 8)).expand(4000, 1, 8, 8)
    y = augment.flip_lr(x, gen(), p=0.5)
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    assert torch.equal(flipped | (y == x).flatten(1).all(1), torch.ones(4000, dtype=torch.bool))
    assert 0.45 < flipped.float().mean() < 0.55
    assert torch.equal(augment.flip_lr(x, gen(), p=0.0), x)


def test_crop_with_padding_0_is_identity():
    x = images(8, (3, 32, 32))
    assert torch.equal(augment.random_crop(x, gen(), padding=0), x)


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_crop_is_a_window_of_the_padded_image(mode):
    x = images(1, (1, 8, 8)).expand(50, 1, 8, 8)
    y = augment.random_crop(x, gen(), padding=2, mode=mode)
    padded = torch.nn.functional.pad(x[:1], (2, 2, 2, 2), mode=mode)
    windows = torch.stack([padded[0, :, i : i + 8, j : j + 8] for i in range(5) for j in range(5)])
    match = (y[:, None] == windows[None]).flatten(2).all(2)  # (50, 25)
    assert (
        match.any(1).all() and match.any(0).sum() > 10
    )  # every output a window; many offsets used


def test_cutout_zeros_one_square_per_sample():
    x = torch.ones(200, 3, 32, 32)
    zeros = (augment.cutout(x, gen(), fraction=0.25) == 0).all(1)  # (B, H, W): all channels cut
    counts = zeros.flatten(1).sum(1)
    assert (
        (counts > 0).all() and (counts <= 64).all() and (counts == 64).any()
    )  # 8x8, clipped at borders


def test_color_jitter_saturation_is_a_no_op_on_grey_images():
    x = images(16, (1, 8, 8))
    assert torch.equal(
        augment.color_jitter(x, gen(), brightness=0.0, contrast=0.0, saturation=0.9), x
    )


def test_compose_applies_in_order_and_empty_is_identity():
    x = images(4, (1, 8, 8))
    assert torch.equal(augment.compose([])(x, gen()), x)
    ops = [lambda x, g: x * 0.5, lambda x, g: x + 0.25]
    assert torch.allclose(augment.compose(ops)(x, gen()), x * 0.5 + 0.25)


# --- RandAugment parity with torchvision, one op and one sign at a time ---------------------------


def _ra_geometric(x, name, m):
    op = torch.full((len(x),), augment.RAND_AUGMENT_OPS.index(name))
    theta = augment._rand_augment_theta(op, torch.full((len(x),), m), *x.shape[-2:])
    return augment._warp(x, theta, mode="nearest")


TV_GEOMETRIC = {  # torchvision.transforms.autoaugment._apply_op, signed magnitude m of the 0..1 scale
    "shear_x": lambda x, m: TF.affine(
        x, 0.0, [0, 0], 1.0, [math.degrees(math.atan(0.3 * m)), 0.0], center=[0, 0]
    ),
    "shear_y": lambda x, m: TF.affine(
        x, 0.0, [0, 0], 1.0, [0.0, math.degrees(math.atan(0.3 * m))], center=[0, 0]
    ),
    "translate_x": lambda x, m: TF.affine(
        x, 0.0, [int(150 / 331 * x.shape[-1] * m), 0], 1.0, [0.0, 0.0]
    ),
    "translate_y": lambda x, m: TF.affine(
        x, 0.0, [0, int(150 / 331 * x.shape[-2] * m)], 1.0, [0.0, 0.0]
    ),
    "rotate": lambda x, m: TF.rotate(x, 30.0 * m),
}


@pytest.mark.parametrize("m", [0.3, -0.3])
@pytest.mark.parametrize("name", TV_GEOMETRIC)
def test_rand_augment_geometric_ops_match_torchvision(name, m):
    x = images(2, (3, 32, 24))  # not square: the aspect factors matter
    assert torch.equal(_ra_geometric(x, name, m), TV_GEOMETRIC[name](x, m))


@pytest.mark.parametrize("channels", [1, 3])
def test_rand_augment_colour_ops_match_torchvision(channels):
    u8 = (images(4, (channels, 16, 16)) * 255).round().to(torch.uint8)
    x, f = u8.float() / 255, torch.full((4,), 1.6)
    assert torch.equal(augment._contrast(x, f), TF.adjust_contrast(x, 1.6))
    assert torch.equal(
        augment._saturation(x, f), TF.adjust_saturation(x, 1.6) if channels == 3 else x
    )
    assert torch.equal(augment._sharpen(x, f), TF.adjust_sharpness(x, 1.6))
    assert torch.equal(augment._posterize(x, 5), TF.posterize(u8, 5).float() / 255)
    assert torch.equal(augment._equalize(x), TF.equalize(u8).float() / 255)
    assert torch.allclose(augment._autocontrast(x), TF.autocontrast(x), atol=1e-6)


def test_rand_augment_draws_every_op():
    x = images(1, (3, 16, 16)).expand(2000, 3, 16, 16).contiguous()
    y = augment.rand_augment(x, gen(), num_ops=1)
    unchanged = (
        (y == x).flatten(1).all(1).float().mean()
    )  # identity, and ops that happen to be no-ops
    assert 1 / 14 - 0.03 < unchanged < 3 / 14


# --- conf/augmentation: every file, the day it lands ----------------------------------------------


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_conf_file_instantiates_and_runs(path, shape):
    cfg = OmegaConf.merge(OmegaConf.structured(AugmentationConf), OmegaConf.load(path))
    assert cfg.name == path.stem and path.read_text().startswith("# ")
    fn = augment.compose([hydra.utils.instantiate(op) for op in cfg.ops])  # as the trainer does
    x = images(16, shape)
    y = fn(x, gen())
    assert y.shape == x.shape and y.dtype == x.dtype and 0.0 <= y.min() and y.max() <= 1.0
    assert torch.equal(fn(x, gen()), y)
