"""Transfer learning (lecture: freeze a trained feature extractor and retrain the head; with
more data, fine-tune more layers).

`model.pretrained=PATH` names a trainlab `checkpoint.pt` of the same architecture. Every
tensor but the classifier (`head.*`, always new: a new task) is loaded, and so is the
preprocessing the features were trained with; a missing, extra or differently shaped tensor
is a one-line error. The `transfer` group says what trains:
  scratch        random init; model.pretrained is not loaded (the baseline of a transfer sweep)
  linear_probe   every layer frozen but the classifier
  finetune_top   the last `transfer.trainable_blocks` blocks and the classifier
  finetune_all   every layer (the default: with no model.pretrained, ordinary training);
                 `transfer.pretrained_lr_scale` multiplies the lr of the pretrained layers
Frozen blocks get requires_grad=False (the optimiser never sees them) and stay in eval mode
(batch norm keeps the source's running statistics, dropout is off) whatever model.train() says.

`transfer.source=[OVERRIDES]` trains the source model itself, once: the target's config with
those overrides (seed 0 unless they set one, no pretrained weights) is trained into `transfer.cache_dir/<hash>/`, the
hash being that of the source's resolved config; later runs, and the other jobs of a sweep,
reuse it (a file lock keeps parallel jobs from training it twice).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from pathlib import Path

import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from torch import nn

from trainlab.errors import ConfigError

log = logging.getLogger("trainlab")
HEAD = "head."
RUN_ONLY = ("threads", "device", "experiment", "trainer.progress")  # not part of the source's key


def feature_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, block) of every parameterised block before the classifier, in forward order."""
    out = []
    for name, child in model.named_children():
        if name == "head":
            continue
        parts = child.named_children() if name == "blocks" else [("", child)]  # models.py names
        for sub, block in parts:
            if any(True for _ in block.parameters()):
                out.append((f"{name}.{sub}" if sub else name, block))
    return out


def _keep_eval(block: nn.Module, _inputs) -> None:
    """Forward pre-hook of a frozen block: eval mode (BN running statistics, no dropout)."""
    for m in block.modules():
        m.training = False


def freeze(model: nn.Module, trainable_blocks: int | None) -> list[str]:
    """Freeze all but the last `trainable_blocks` blocks (None: none frozen); their names."""
    blocks = feature_blocks(model)
    if trainable_blocks is None:
        return []
    frozen = blocks[: max(len(blocks) - trainable_blocks, 0)]
    for _, block in frozen:
        block.requires_grad_(False)
        block.register_forward_pre_hook(_keep_eval)
    return [name for name, _ in frozen]


def load_pretrained(path: str, model: nn.Module, preprocess: nn.Module) -> None:
    """Every tensor but the classifier from a trainlab checkpoint; one-line errors."""
    file = Path(to_absolute_path(path))
    if file.is_dir():
        file = file / "checkpoint.pt"
    if not file.is_file():
        raise ConfigError(f"model.pretrained={path}: no such file (a trainlab checkpoint.pt)")
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
        state = {k: v for k, v in ckpt["model"].items() if not k.startswith(HEAD)}
    except Exception as err:  # not a checkpoint at all
        raise ConfigError(f"model.pretrained={path}: not a trainlab checkpoint ({err})") from err
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(HEAD)}
    missing, extra = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    shapes = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or extra or shapes:
        what = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
                else f"{shapes[0]} is {tuple(state[shapes[0]].shape)} there, "
                f"{tuple(own[shapes[0]].shape)} here")  # fmt: skip
        raise ConfigError(
            f"model.pretrained={path}: not the same architecture ({what}); "
            "allowed: a checkpoint of the same model, width and depth"
        )
    model.load_state_dict(state, strict=False)
    if ckpt.get("preprocess") is not None:
        preprocess.load_state_dict(ckpt["preprocess"])


def lr_groups(cfg: DictConfig, head_params: list[nn.Parameter], groups: list[dict]) -> list[dict]:
    """Split optimiser groups into pretrained layers (lr x pretrained_lr_scale) and the head."""
    scale = cfg.transfer.pretrained_lr_scale
    if scale == 1.0 or not pretrained_path(cfg):
        return groups
    head = {id(p) for p in head_params}
    out = []
    for g in groups:
        body = [p for p in g["params"] if id(p) not in head]
        top = [p for p in g["params"] if id(p) in head]
        out += [{**g, "params": top}, {**g, "params": body, "lr": cfg.optimizer.lr * scale}]
    return [g for g in out if g["params"]]


def pretrained_path(cfg: DictConfig) -> str | None:
    """The checkpoint this run starts from: model.pretrained, or the cached source model."""
    if not cfg.transfer.load:
        return None
    if cfg.transfer.get("source") is not None:
        return str(ensure_source(cfg) / "checkpoint.pt")
    return cfg.model.get("pretrained")


def apply(cfg: DictConfig, model: nn.Module, preprocess: nn.Module, path: str | None) -> list[str]:
    """Load the pretrained weights (if any) and freeze what the transfer option says."""
    if path:
        load_pretrained(path, model, preprocess)
    return freeze(model, cfg.transfer.trainable_blocks)


def describe(cfg: DictConfig, model: nn.Module) -> dict:
    """For summary.json: the option, the checkpoint loaded, the frozen blocks, what trains."""
    return {
        "option": cfg.transfer.name,
        "pretrained": pretrained_path(cfg),
        "frozen": [
            n for n, b in feature_blocks(model) if not any(p.requires_grad for p in b.parameters())
        ],
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def source_config(cfg: DictConfig) -> DictConfig:
    """The target's config with transfer.source's overrides, trained from scratch."""
    src = OmegaConf.to_container(cfg, resolve=True)
    src["experiment"], src["seed"] = None, 0  # one source for every seed of a sweep
    src["model"]["pretrained"] = None
    src["transfer"] |= {"source": None, "load": False, "trainable_blocks": None,
                        "pretrained_lr_scale": 1.0, "name": "scratch"}  # fmt: skip
    src["trainer"]["checkpoint"] = True
    return OmegaConf.merge(OmegaConf.create(src), OmegaConf.from_dotlist(list(cfg.transfer.source)))


def _key(src: DictConfig) -> str:
    """A hash of the source's config without the settings that do not change its result."""
    keyed = OmegaConf.to_container(src, resolve=True)
    for key in RUN_ONLY:
        head, _, leaf = key.rpartition(".")
        (keyed.get(head) if head else keyed).pop(leaf, None)
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]


def ensure_source(cfg: DictConfig) -> Path:
    """The cached source run's directory, training it first if no job has."""
    from trainlab.train import train  # train -> prepare -> this module

    src = source_config(cfg)
    run_dir = Path(to_absolute_path(cfg.transfer.cache_dir)) / _key(src)
    run_dir.mkdir(parents=True, exist_ok=True)
    # not the run's own .lock, which train() holds while the source trains
    with open(run_dir / ".source.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel job waits for the first one's training
        if not (run_dir / "checkpoint.pt").is_file():
            log.info("training the source model into %s", run_dir)
            summary = train(src, run_dir)
            if summary["status"] != "completed":
                raise RuntimeError(f"source model {run_dir}: {summary.get('error')}")
    return run_dir
