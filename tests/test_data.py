"""Data sets: shapes, ranges, splits, and the real on-disk formats written small into tmp_path."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from trainlab.data import DEBIAN_FASHION_MNIST, IDX_FILES, LOADERS, Splits, load_data, read_idx
from trainlab.errors import ConfigError
from trainlab.schema import DataConf

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


def data_cfg(**overrides):
    """A DataConf node as the `data` group would give it."""
    return OmegaConf.merge(OmegaConf.structured(DataConf), overrides)


def rows(*xs: torch.Tensor) -> Counter:
    """Multiset of the examples of the given tensors (each example as bytes)."""
    return Counter(r.numpy().tobytes() for x in xs for r in x.reshape(len(x), -1))


# --- config files ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_data_conf_file_is_typed_and_named(path):
    cfg = data_cfg(**OmegaConf.to_container(OmegaConf.load(path)))  # unknown keys would raise
    assert cfg.name == path.stem and cfg.name in LOADERS
    assert path.read_text().startswith("# ")


def test_every_loader_has_a_conf_file():
    assert sorted(LOADERS) == sorted(p.stem for p in CONF.glob("*.yaml"))


# --- digits and gaussian --------------------------------------------------------------------


def test_digits_shapes_ranges_and_partition():
    s = load_data(data_cfg(name="digits"))
    assert s.in_shape == (1, 8, 8) and s.num_classes == 10
    n_test = round(0.2 * 1797)
    n_val = round(0.1 * (1797 - n_test))
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (1797 - n_test - n_val, n_val, n_test)
    for x, y in [(s.train_x, s.train_y), (s.val_x, s.val_y), (s.test_x, s.test_y)]:
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (1, 8, 8)
        assert 0.0 <= x.min() and x.max() <= 1.0 and len(x) == len(y)
    assert s.train_x.max() == 1.0  # 16 / 16
    from sklearn.datasets import load_digits

    full = torch.as_tensor(load_digits().images, dtype=torch.float32).div(16.0)
    assert rows(s.train_x, s.val_x, s.test_x) == rows(full)  # disjoint and complete


def test_split_is_deterministic_and_follows_split_seed():
    a, b = load_data(data_cfg(name="digits")), load_data(data_cfg(name="digits"))
    for name in ("train_x", "train_y", "val_x", "test_x", "test_y"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    c = load_data(data_cfg(name="digits", split_seed=1))
    assert not torch.equal(a.test_x, c.test_x)


def test_val_fraction_zero_gives_empty_val_and_subset_keeps_n():
    s = load_data(data_cfg(name="digits", val_fraction=0.0, subset=100))
    assert s.val_x.shape == (0, 1, 8, 8) and s.val_y.shape == (0,)
    assert s.train_x.shape == (100, 1, 8, 8) and s.train_y.shape == (100,)
    assert s.in_shape == (1, 8, 8)


@pytest.mark.parametrize(
    "key,value",
    [("val_fraction", 1.0), ("val_fraction", -0.1), ("test_fraction", 0.0), ("test_fraction", 1.0),
     ("subset", 0), ("subset", 10**6), ("name", "nope")],
)  # fmt: skip
def test_bad_values_raise_config_error_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"data\.{key}={value!r}"):
        load_data(data_cfg(**{"name": "digits", key: value}))


def test_gaussian_statistics_and_shapes():
    s = load_data(data_cfg(name="gaussian", num_examples=2000, features=50, num_classes=7))
    assert s.in_shape == (50,) and s.num_classes == 7
    assert len(s.train_x) + len(s.val_x) + len(s.test_x) == 2000
    x = torch.cat([s.train_x, s.val_x, s.test_x])
    assert abs(x.mean()) < 0.02 and abs(x.std() - 1) < 0.02
    y = torch.cat([s.train_y, s.val_y, s.test_y])
    assert y.min() == 0 and y.max() == 6
    assert sum(rows(s.train_x, s.val_x, s.test_x).values()) == len(rows(x))  # no example twice


def test_splits_to_moves_every_tensor():
    s = load_data(data_cfg(name="gaussian", num_examples=20, features=3)).to("meta")
    assert all(
        t.device.type == "meta"
        for t in (s.train_x, s.train_y, s.val_x, s.val_y, s.test_x, s.test_y)
    )
    assert s.in_shape == (3,)


# --- Fashion-MNIST: IDX files ----------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file: magic 0x0000_08_<ndim> (uint8), big-endian uint32 dims, then the bytes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def small_idx_set(seed: int = 0, n_train: int = 30, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_idx_set(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> None:
    for key, name in IDX_FILES.items():
        write_idx(folder / (name + (".gz" if gz else "")), arrays[key])


def check_mnist_like(s: Splits, arrays: dict[str, np.ndarray]) -> None:
    """Test split exactly as written (in order); train + val the written training examples."""
    assert s.in_shape == (1, 28, 28) and s.num_classes == 10
    assert torch.equal(s.test_x, torch.from_numpy(arrays["test_x"]).float().div(255).unsqueeze(1))
    assert torch.equal(s.test_y, torch.from_numpy(arrays["test_y"]).long())
    written = torch.from_numpy(arrays["train_x"]).float().div(255).unsqueeze(1)
    assert rows(s.train_x, s.val_x) == rows(written)


@pytest.mark.parametrize("layout", ["flat", "FashionMNIST/raw", "flat-uncompressed"])
def test_fashion_mnist_from_small_idx_files(tmp_path, layout):
    arrays = small_idx_set()
    folder = tmp_path / "FashionMNIST" / "raw" if layout == "FashionMNIST/raw" else tmp_path
    write_idx_set(folder, arrays, gz=layout != "flat-uncompressed")
    s = load_data(data_cfg(name="fashion_mnist", root=str(tmp_path), val_fraction=0.2))
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (24, 6, 10)
    check_mnist_like(s, arrays)


def test_read_idx_validates_the_magic_number(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.arange(5, dtype=np.uint8))
    assert read_idx(path, ndim=1).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="magic"):
        read_idx(path, ndim=3)


def test_fashion_mnist_missing_names_root_and_remedies(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_data(data_cfg(name="fashion_mnist", root=str(tmp_path / "nowhere")))
    msg = str(err.value)
    assert "data.root=" in msg and "nowhere" in msg and "\n" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "data.download=true" in msg


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(),
    reason=f"{DEBIAN_FASHION_MNIST} absent: `apt-get install dataset-fashion-mnist` (CI installs it)",
)
def test_fashion_mnist_from_the_debian_package():
    s = load_data(data_cfg(name="fashion_mnist"))
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (54000, 6000, 10000)
    assert s.in_shape == (1, 28, 28) and s.train_x.dtype == torch.float32
    assert s.train_x.min() == 0.0 and s.train_x.max() == 1.0
    assert torch.bincount(s.test_y).tolist() == [1000] * 10


# --- torchvision: MNIST, CIFAR-10, CIFAR-100 -------------------------------------------------


def test_mnist_via_torchvision_from_raw_idx_files(tmp_path):
    arrays = small_idx_set(seed=1)
    write_idx_set(
        tmp_path / "MNIST" / "raw", arrays, gz=False
    )  # torchvision reads the unzipped files
    s = load_data(data_cfg(name="mnist", root=str(tmp_path), val_fraction=0.1))
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (27, 3, 10)
    check_mnist_like(s, arrays)


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (BINSTRING), as in the real CIFAR pickles (made by Python 2):
    they load with str keys under encoding="latin1" (torchvision) and b'data' under "bytes"."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_py2_pickle(path: Path, obj: dict) -> None:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def cifar_batch(rng, n: int, num_classes: int, label_keys: list[str], name: str) -> dict:
    """One batch dict: b'data' uint8 (n, 3072) as R, G, B planes of 32x32; labels as lists of ints."""
    batch = {
        b"batch_label": name.encode(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    for key in label_keys:
        batch[key.encode()] = rng.integers(0, num_classes, n).tolist()
    return batch


def write_cifar10(root: Path, n: int = 4) -> dict[str, dict]:
    rng, folder = np.random.default_rng(0), root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {name: cifar_batch(rng, n, 10, ["labels"], name) for name in names}
    for name, batch in batches.items():
        write_py2_pickle(folder / name, batch)
    meta = {
        b"label_names": [f"class{i}".encode() for i in range(10)],
        b"num_cases_per_batch": n,
        b"num_vis": 3072,
    }
    write_py2_pickle(folder / "batches.meta", meta)
    return batches


def write_cifar100(root: Path, n: int = 6) -> dict[str, dict]:
    rng, folder = np.random.default_rng(0), root / "cifar-100-python"
    batches = {
        name: cifar_batch(rng, n, 100, ["fine_labels", "coarse_labels"], name)
        for name in ("train", "test")
    }
    for name, batch in batches.items():
        write_py2_pickle(folder / name, batch)
    meta = {
        b"fine_label_names": [f"f{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
    }
    write_py2_pickle(folder / "meta", meta)
    return batches


def test_cifar_pickles_have_the_real_key_types(tmp_path):
    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # the usual recipe of the CIFAR web page
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (4, 3072)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_from_small_pickled_batches(tmp_path, name):
    batches = (write_cifar10 if name == "cifar10" else write_cifar100)(tmp_path)
    s = load_data(data_cfg(name=name, root=str(tmp_path), val_fraction=0.25))
    assert s.in_shape == (3, 32, 32) and s.num_classes == (10 if name == "cifar10" else 100)
    assert len(s.train_x) + len(s.val_x) == sum(
        len(b[b"data"]) for k, b in batches.items() if "test" not in k
    )
    test = batches["test_batch" if name == "cifar10" else "test"]
    expected = (
        torch.from_numpy(test[b"data"]).reshape(-1, 3, 32, 32).float().div(255)
    )  # R, G, B planes
    assert torch.equal(s.test_x, expected) and s.test_x.is_contiguous()
    assert s.test_y.tolist() == test[b"labels" if name == "cifar10" else b"fine_labels"]


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_missing_torchvision_data_names_root(tmp_path, name):
    with pytest.raises(ConfigError, match=r"data\.root=.*data\.download=true"):
        load_data(data_cfg(name=name, root=str(tmp_path)))
