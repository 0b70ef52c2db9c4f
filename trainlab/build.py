"""The one place that turns config nodes into objects (hydra.utils.instantiate)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from trainlab import initializers, schedules, transfer
from trainlab.augment import compose
from trainlab.models import affine_layers, identity_factory

METADATA_KEYS = ("name", "pretrained")  # beside `_target_` in a node, never passed to the target


def _instantiate(node: DictConfig, **kwargs):
    """instantiate() a node without its metadata keys."""
    container = OmegaConf.to_container(node, resolve=True)
    for key in METADATA_KEYS:
        container.pop(key, None)
    return instantiate(container, **kwargs)


def build_act_layer(cfg: DictConfig) -> Callable[[], nn.Module]:
    return instantiate(cfg.activation.layer)


def build_norm_layer(cfg: DictConfig) -> Callable[[int], nn.Module]:
    """norm_layer(num_features) for the model's input layout (flat or spatial)."""
    layout = get_class(cfg.model._target_).layout
    node = cfg.norm[layout]
    return identity_factory if node is None else instantiate(node)


def build_model(cfg: DictConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model of `cfg.model` from the activation/norm factories, initialised by `cfg.init`."""
    model = _instantiate(
        cfg.model,
        in_shape=tuple(in_shape),
        num_classes=num_classes,
        act_layer=build_act_layer(cfg),
        norm_layer=build_norm_layer(cfg),
        dropout=cfg.regularizer.p,
    )
    hidden_init = head_init = None
    if cfg.init.weight is not None:
        scheme = instantiate(cfg.init.weight)
        gain, gain_arg = cfg.init.gain, cfg.init.gain_arg
        act = cfg.activation
        hidden_init = initializers.with_gain(scheme, gain, gain_arg, act.nonlinearity, act.param)
        head_init = initializers.with_gain(scheme, gain, gain_arg, "linear", None)
    initializers.init_weights(model, hidden_init, cfg.init.bias, head_init)
    return model


def decay_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights of linear/conv layers, everything else): decay applies to the first only."""
    decay_ids = {id(layer.weight) for _, layer in affine_layers(model)}
    params = [p for p in model.parameters() if p.requires_grad]
    return (
        [p for p in params if id(p) in decay_ids],
        [p for p in params if id(p) not in decay_ids],
    )


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    head = model.get_submodule("head") if hasattr(model, "head") else None  # trainlab models
    return optimizer_from_groups(
        cfg, *decay_parameters(model), head=None if head is None else list(head.parameters())
    )


def optimizer_from_groups(
    cfg: DictConfig,
    decay: list[nn.Parameter],
    no_decay: list[nn.Parameter],
    head: list[nn.Parameter] | None = None,
) -> torch.optim.Optimizer:
    """cfg.optimizer over two groups: weight decay on `decay` only; the layers before `head`
    get transfer.pretrained_lr_scale times the lr when a pretrained model is loaded."""
    groups = [
        {"params": decay, "weight_decay": cfg.regularizer.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = transfer.lr_groups(cfg, head or [], groups)  # pretrained layers' lr scale, if any
    return _instantiate(cfg.optimizer)(groups)


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    main = instantiate(cfg.scheduler.main)
    return schedules.with_warmup(
        optimizer, main, total_steps, cfg.scheduler.warmup_steps, cfg.scheduler.warmup_start_factor
    )


def build_preprocess(cfg: DictConfig) -> nn.Module:
    return _instantiate(cfg.preprocess)


def build_augment(cfg: DictConfig) -> Callable:
    """(images (B, C, H, W) in [0, 1], generator) -> images; identity for no augmentation."""
    return compose([instantiate(op) for op in cfg.augmentation.ops])


def l1_penalty(weights: list[nn.Parameter]) -> torch.Tensor:
    return torch.stack([w.abs().sum() for w in weights]).sum()
