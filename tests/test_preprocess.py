"""Preprocessing: shapes kept, statistics from the training split only, state_dict round trip."""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import pytest
import torch
from omegaconf import OmegaConf

from trainlab import preprocess
from trainlab.schema import PreprocessConf

CONF = Path(__file__).resolve().parents[1] / "conf" / "preprocess"
CLASSES = [preprocess.Identity, preprocess.CenterImage, preprocess.CenterChannel,
           preprocess.Standardize, preprocess.PCA, preprocess.ZCA]  # fmt: skip
SHAPES = [(2, 4, 4), (3, 4, 4), (6,)]  # one example: grey image, RGB image, features


def make(shape, n=400, shift=0.0, scale=1.0, seed=0):
    """n correlated examples of `shape`, mean `shift`, per-dim scales around `scale`."""
    g = torch.Generator().manual_seed(seed)
    d = torch.Size(shape).numel()
    mix = torch.randn(d, d, generator=g) / d**0.5 + torch.eye(d)  # correlated dims
    return (shift + scale * torch.randn(n, d, generator=g) @ mix).reshape(n, *shape)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_keeps_shape_and_dtype(cls, shape):
    m = cls().fit(make(shape))
    for x in (make(shape, n=7), make(shape, n=0)):
        y = m(x)
        assert y.shape == x.shape and y.dtype == torch.float32 and torch.isfinite(y).all()


@pytest.mark.parametrize("cls", CLASSES[1:], ids=lambda c: c.__name__)
def test_statistics_come_from_train_only(cls):
    train, test = make((3, 4, 4)), make((3, 4, 4), shift=5.0, scale=2.0, seed=1)
    m = cls().fit(train)
    assert m(train).mean((0, 2, 3)).abs().max() < 1e-4  # every channel centred on train
    assert m(test).mean(0).abs().max() > 1.0  # test moved with the train mean, not its own
    again = cls().fit(train)  # fitting does not depend on anything but train
    assert torch.allclose(m(test), again(test))


def test_unfitted_module_refuses_to_run():
    with pytest.raises(RuntimeError, match="fit"):
        preprocess.Standardize()(torch.zeros(2, 3))


def test_standardize_gives_per_channel_mean_0_std_1_on_train():
    train = make((3, 4, 4), shift=2.0, scale=3.0)
    y = preprocess.Standardize().fit(train)(train)
    assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std((0, 2, 3), correction=0), torch.ones(3), atol=1e-4)


def test_center_channel_and_center_image_means():
    train = make((3, 4, 4), shift=1.0)
    assert torch.allclose(
        preprocess.CenterChannel().fit(train)(train).mean((0, 2, 3)), torch.zeros(3), atol=1e-5
    )
    assert torch.allclose(
        preprocess.CenterImage().fit(train)(train).mean(0), torch.zeros(3, 4, 4), atol=1e-5
    )


def covariance(x):
    x = x.flatten(1).double()
    x = x - x.mean(0)
    return x.T @ x / len(x)


def test_pca_decorrelates_and_zca_whitens_on_train():
    train = make((2, 2, 2), n=20000, shift=0.5, scale=0.3)  # D = 8 small, N large
    cov = covariance(preprocess.PCA().fit(train)(train))
    off_diagonal = cov - torch.diag(cov.diag())
    assert (
        off_diagonal.abs().max() < 1e-4 and (cov.diag()[:-1] >= cov.diag()[1:]).all()
    )  # largest first
    cov = covariance(preprocess.ZCA(eps=1e-7).fit(train)(train))
    assert torch.allclose(cov, torch.eye(8, dtype=torch.float64), atol=1e-3)


def test_zca_rotates_back_pca_does_not():
    train = make((6,), n=5000)
    zca, pca = preprocess.ZCA().fit(train), preprocess.PCA().fit(train)
    assert torch.allclose(zca.matrix, zca.matrix.T, atol=1e-5)  # U D U^T is symmetric
    assert torch.allclose(pca.matrix.T @ pca.matrix, torch.eye(6), atol=1e-5)  # a rotation


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_state_dict_round_trip_into_a_fresh_module(cls):
    train, test = make((3, 4, 4)), make((3, 4, 4), n=5, seed=2)
    fitted = cls(eps=1e-3).fit(train)
    fresh = cls(eps=1e-3)
    fresh.load_state_dict(fitted.state_dict())
    assert torch.equal(fresh(test), fitted(test))
    other = cls(eps=1e-3).fit(make((1, 2, 2)))  # fitted on another shape: reloading replaces it
    other.load_state_dict(fitted.state_dict())
    assert torch.equal(other(test), fitted(test))


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_conf_file_instantiates_a_preprocessor(path):
    cfg = OmegaConf.merge(OmegaConf.structured(PreprocessConf), OmegaConf.load(path))
    assert cfg.name == path.stem
    module = hydra.utils.instantiate(
        {k: v for k, v in cfg.items() if k != "name"}
    )  # as the builder does
    x = make((1, 8, 8), n=50)
    assert module.fit(x)(x).shape == x.shape
