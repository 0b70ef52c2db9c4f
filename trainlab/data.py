"""Data sets as whole tensors: train/val/test splits of float32 inputs and int64 labels.

Everything is loaded in one go (no per-sample Python): images become (N, C, H, W) float32
in [0, 1]; the gaussian set is (N, D). `load_data(cfg)` returns CPU tensors; `Splits.to`
moves them to the device once, after which batches are slices.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from trainlab.errors import ConfigError

DEBIAN_FASHION_MNIST = Path(
    "/usr/share/datasets/fashion-mnist"
)  # apt-get install dataset-fashion-mnist
DEFAULT_ROOT = (
    "data"  # torchvision's layout below it: data/MNIST/raw, data/cifar-10-batches-py, ...
)


@dataclass
class Splits:
    """x: float32, images (N, C, H, W) in [0, 1] or features (N, D); y: int64 (N,)."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    in_shape: tuple[int, ...]  # one example, e.g. (1, 28, 28) or (500,)

    def to(self, device: torch.device | str) -> Splits:
        """A copy with every tensor on `device`."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if f.name.endswith(("_x", "_y"))
        }
        return replace(self, **moved)


class _Raw(NamedTuple):
    """What a loader returns: the official (or held-out) train and test splits."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int


def load_data(cfg: Any) -> Splits:
    """Load the data set `cfg.name` (a DataConf node) and split it; CPU tensors.

    A DictConfig's result is cached per process, keyed by the node and the working directory
    (relative roots): the jobs of a one-process sweep load their data once. The tensors are
    shared: callers index them, never write into them.
    """
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return _cached(OmegaConf.to_yaml(cfg, resolve=True), os.getcwd())
    return _load(cfg)


@functools.lru_cache(maxsize=2)
def _cached(cfg_yaml: str, cwd: str) -> Splits:
    from omegaconf import OmegaConf

    return _load(OmegaConf.create(cfg_yaml))


def _load(cfg: Any) -> Splits:
    _check_ranges(cfg)
    if cfg.name not in LOADERS:
        raise ConfigError(
            f"data.name={cfg.name!r} is not a data set; choose one of {sorted(LOADERS)}"
        )
    gen = torch.Generator().manual_seed(cfg.split_seed)  # the split is a property of the data
    raw = LOADERS[cfg.name](cfg, gen)
    if getattr(cfg, "classes", None) is not None:  # a DataConf node, or a plain object in tests
        raw = _take_classes(raw, list(cfg.classes))
    train_x, train_y, val_x, val_y = _split(raw.train_x, raw.train_y, cfg.val_fraction, gen)
    if cfg.subset is not None:
        if cfg.subset > len(train_x):
            raise ConfigError(
                f"data.subset={cfg.subset} is out of range: allowed [1, {len(train_x)}] (training examples after the val split)"
            )
        train_x, train_y = (
            train_x[: cfg.subset],
            train_y[: cfg.subset],
        )  # already shuffled by _split
    return Splits(
        train_x, train_y, val_x, val_y, raw.test_x, raw.test_y,
        num_classes=raw.num_classes, in_shape=tuple(train_x.shape[1:]),
    )  # fmt: skip


def _check_ranges(cfg: Any) -> None:
    """Range checks with one-line messages naming the key, the value and what is allowed."""
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={cfg.val_fraction} is out of range: allowed [0, 1)")
    if not 0.0 < cfg.test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction={cfg.test_fraction} is out of range: allowed (0, 1)")
    if cfg.subset is not None and cfg.subset < 1:
        raise ConfigError(
            f"data.subset={cfg.subset} is out of range: allowed >= 1 (or null for all)"
        )


def _take_classes(raw: _Raw, classes: list[int]) -> _Raw:
    """Only the examples of `classes`, relabelled 0..k-1 in the order given."""
    if (
        len(classes) < 2
        or len(set(classes)) < len(classes)
        or not all(0 <= c < raw.num_classes for c in classes)
    ):
        raise ConfigError(
            f"data.classes={classes} is not allowed: at least 2 distinct labels in [0, {raw.num_classes})"
        )
    relabel = torch.full((raw.num_classes,), -1, dtype=torch.int64)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))

    def take(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        keep = relabel[y] >= 0
        return x[keep], relabel[y[keep]]

    return _Raw(*take(raw.train_x, raw.train_y), *take(raw.test_x, raw.test_y), len(classes))


def _split(x: Tensor, y: Tensor, fraction: float, gen: torch.Generator) -> tuple[Tensor, ...]:
    """Shuffle with `gen`, hold out round(fraction * N): (rest_x, rest_y, held_x, held_y)."""
    perm = torch.randperm(len(x), generator=gen)
    held, rest = perm[: round(fraction * len(x))], perm[round(fraction * len(x)) :]
    return x[rest], y[rest], x[held], y[held]  # fraction 0: held is (0, ...), shapes intact


def _images(u8: Tensor | np.ndarray) -> Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1]."""
    return torch.as_tensor(u8).contiguous().to(torch.float32).div_(255.0)


def _labels(y: Any) -> Tensor:
    return torch.as_tensor(np.asarray(y), dtype=torch.int64)


def _shown(value: Any) -> str:
    """A config value as the command line spells it (None -> null)."""
    return "null" if value is None else repr(value)


def _root(cfg: Any) -> Path:
    """cfg.root (or ./data) made absolute against the launch directory, even if Hydra chdir'ed."""
    from hydra.utils import (
        to_absolute_path,  # here: the data readers also serve scripts without Hydra
    )

    return Path(to_absolute_path(cfg.root if cfg.root is not None else DEFAULT_ROOT))


# --- digits and gaussian: no official test split ------------------------------------------


def digits_file() -> Path:
    """scikit-learn's bundled digits.csv.gz, found without importing scikit-learn (2 s)."""
    spec = importlib.util.find_spec("sklearn")  # a top-level spec: sklearn is not imported
    if spec is None or spec.origin is None:
        raise ConfigError("data=digits needs scikit-learn installed (it ships the digits file)")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def _load_digits(cfg: Any, gen: torch.Generator) -> _Raw:
    """sklearn's 8x8 digits (1797 examples, bundled: no download); pixel values 0..16.

    Each row of the file is 64 pixels then the label: what sklearn's load_digits reads.
    """
    with gzip.open(digits_file(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)  # (1797, 65)
    x = torch.from_numpy(table[:, :-1]).div_(16.0).view(-1, 1, 8, 8)  # (N, 1, 8, 8)
    train_x, train_y, test_x, test_y = _split(x, _labels(table[:, -1]), cfg.test_fraction, gen)
    return _Raw(train_x, train_y, test_x, test_y, num_classes=10)


def _load_gaussian(cfg: Any, gen: torch.Generator) -> _Raw:
    """Unit-gaussian features with random labels: the set-up of initialisation studies."""
    if cfg.num_examples < 2 or cfg.features < 1 or cfg.num_classes < 2:
        raise ConfigError(
            f"data.num_examples={cfg.num_examples}, data.features={cfg.features}, data.num_classes={cfg.num_classes}: "
            "allowed num_examples >= 2, features >= 1, num_classes >= 2"
        )
    x = torch.randn(cfg.num_examples, cfg.features, generator=gen)  # (N, D)
    y = torch.randint(0, cfg.num_classes, (cfg.num_examples,), generator=gen)
    train_x, train_y, test_x, test_y = _split(x, y, cfg.test_fraction, gen)
    return _Raw(train_x, train_y, test_x, test_y, num_classes=cfg.num_classes)


# --- Fashion-MNIST: IDX files read with numpy ----------------------------------------------

IDX_FILES = {  # split -> IDX base name; a file may also be gzipped (name + ".gz")
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path | str, ndim: int) -> np.ndarray:
    """Read a uint8 IDX file (gzipped or not): magic 0x0000_08_<ndim>, then ndim big-endian uint32
    sizes. A truncated or corrupt file is a ConfigError naming the file and what is wrong."""
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise ConfigError(f"{path}: cannot read this IDX file: {err}") from err
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 + ndim:
        raise ConfigError(
            f"{path}: bad IDX magic number {magic:#010x}, expected {0x0800 + ndim:#010x}"
        )
    if len(raw) < 4 + 4 * ndim:
        raise ConfigError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ConfigError(
            f"{path}: truncated or corrupt IDX file: {data.size} bytes of data for dims {dims}"
        )
    return data.reshape(dims).copy()  # writable, so torch.from_numpy does not warn


def _idx_path(folder: Path, name: str) -> Path | None:
    """folder/name, else folder/name.gz, else None."""
    return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)


def _find_idx_folder(folders: list[Path]) -> Path | None:
    """The first folder holding all four IDX files."""
    return next((d for d in folders if all(_idx_path(d, n) for n in IDX_FILES.values())), None)


def _fashion_folders(cfg: Any) -> list[Path]:
    """Search order: data.root (flat, then torchvision's FashionMNIST/raw); else Debian's, then ./data."""
    if cfg.root is not None:
        return [_root(cfg), _root(cfg) / "FashionMNIST" / "raw"]
    return [DEBIAN_FASHION_MNIST, _root(cfg) / "FashionMNIST" / "raw"]


def _load_fashion_mnist(cfg: Any, gen: torch.Generator) -> _Raw:
    """Fashion-MNIST 28x28 grey images, 60000 train / 10000 test."""
    folders = _fashion_folders(cfg)
    folder = _find_idx_folder(folders)
    if folder is None and cfg.download:
        import torchvision  # only to download: importing it costs seconds

        torchvision.datasets.FashionMNIST(
            str(_root(cfg)), download=True
        )  # -> root/FashionMNIST/raw
        folder = _find_idx_folder(folders)
    if folder is None:
        raise ConfigError(
            f"data.root={_shown(cfg.root)}: no Fashion-MNIST IDX files in {', '.join(map(str, folders))}; "
            "install them with `apt-get install dataset-fashion-mnist`, point data.root at them, "
            "or set data.download=true to fetch them with torchvision (needs a network)"
        )
    read = {
        k: read_idx(_idx_path(folder, name), ndim=3 if k.endswith("x") else 1)
        for k, name in IDX_FILES.items()
    }
    return _Raw(
        _images(read["train_x"][:, None]), _labels(read["train_y"]),
        _images(read["test_x"][:, None]), _labels(read["test_y"]), num_classes=10,
    )  # fmt: skip


# --- torchvision data sets ----------------------------------------------------------------


class _FilesExist:
    """Load CIFAR when its files exist, without torchvision's md5 check of each file.

    torchvision's CIFAR classes hash every batch file (180 MB) on every load, and their md5
    check makes small test files impossible. Downloads still verify the archive's md5
    (`download_and_extract_archive(..., md5=tgz_md5)`), which is where corruption happens.
    """

    root: str
    base_folder: str
    train_list: list[list[str]]
    test_list: list[list[str]]

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)


def _torchvision_class(name: str) -> type:
    """torchvision.datasets.<name>, imported on first use (torchvision costs seconds to import);
    CIFAR classes with the md5 check of each file left out (_FilesExist)."""
    import torchvision

    base = getattr(torchvision.datasets, name)
    if not name.startswith("CIFAR"):
        return base
    meta = {**base.meta, "md5": None}  # check_integrity(path, None): the file exists
    return type(f"_{name}", (_FilesExist, base), {"meta": meta})


def _torchvision_split(name: str, cfg: Any, train: bool) -> Any:
    """torchvision.datasets.<name>(root, train, download), a missing one as a ConfigError."""
    dataset_cls = _torchvision_class(name)
    try:
        return dataset_cls(str(_root(cfg)), train=train, download=cfg.download)
    except RuntimeError as err:  # "Dataset not found ..."; download errors pass when download=true
        if cfg.download:
            raise
        if "not found" not in str(err):
            raise ConfigError(  # torch could not shape a truncated file
                f"data.root={_shown(cfg.root)}: the {dataset_cls.__name__.lstrip('_')} files under "
                f"{_root(cfg)} cannot be read ({err}); replace them"
            ) from err
        raise ConfigError(
            f"data.root={_shown(cfg.root)}: {dataset_cls.__name__.lstrip('_')} not found under {_root(cfg)}; "
            "point data.root at the folder holding it, or set data.download=true (needs a network)"
        ) from err
    except (OSError, EOFError, ValueError, IndexError, pickle.UnpicklingError) as err:
        raise ConfigError(  # a truncated or corrupt file
            f"data.root={_shown(cfg.root)}: the {dataset_cls.__name__.lstrip('_')} files under "
            f"{_root(cfg)} cannot be read ({type(err).__name__}: {err}); replace them"
        ) from err


def _load_mnist(cfg: Any, gen: torch.Generator) -> _Raw:
    """MNIST via torchvision: raw IDX files under root/MNIST/raw; .data is uint8 (N, 28, 28)."""
    train, test = (_torchvision_split("MNIST", cfg, t) for t in (True, False))
    return _Raw(
        _images(train.data[:, None]), _labels(train.targets),
        _images(test.data[:, None]), _labels(test.targets), num_classes=10,
    )  # fmt: skip


def _cifar_loader(name: str, num_classes: int) -> Callable[[Any, torch.Generator], _Raw]:
    """A loader for a CIFAR class; .data is uint8 (N, 32, 32, 3), .targets a list of ints."""

    def load(cfg: Any, gen: torch.Generator) -> _Raw:
        train, test = (_torchvision_split(name, cfg, t) for t in (True, False))
        return _Raw(
            _images(train.data.transpose(0, 3, 1, 2)), _labels(train.targets),
            _images(test.data.transpose(0, 3, 1, 2)), _labels(test.targets), num_classes=num_classes,
        )  # fmt: skip

    return load


# data.name -> loader(cfg, split generator); the names are those of conf/data/*.yaml
LOADERS: dict[str, Callable[[Any, torch.Generator], _Raw]] = {
    "digits": _load_digits,
    "gaussian": _load_gaussian,
    "fashion_mnist": _load_fashion_mnist,
    "mnist": _load_mnist,
    "cifar10": _cifar_loader("CIFAR10", num_classes=10),
    "cifar100": _cifar_loader("CIFAR100", num_classes=100),
}
