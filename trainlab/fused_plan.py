"""Which jobs of a sweep can train as one fused model (trainlab.fused), decided on their configs:
whether they differ only in values a fused group can hold per member, the shapes of their
layers, and whether fusing is worth it on the device."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from trainlab import build
from trainlab.start import resolve_device
from trainlab.sweep_fusion import VALUE_NODES, VALUES
from trainlab.validate import validate


def why_not_fusable(cfgs: list[DictConfig]) -> str | None:
    """None when the configs differ only in seed, optimizer.lr, the init, the activation, the
    augmentation and the preprocessing (fusable_parts then splits them by the shapes of their
    layers); else the reason. Each member draws its own augmentation from its own generator
    and fits its own preprocessing on the train split, as its run does.

    Sound for the values: each member's model is built under its own config (its init is
    its own run's), and every optimiser here updates by lr times a direction whose state
    does not depend on the lr (SGD and its momentum buffer, Adam's moments, RMSprop's and
    AdaGrad's sums; decoupled weight decay too), so a member's update is the group's step
    scaled by its lr over the group's largest, under a schedule that multiplies every lr by
    the same factor (not a cosine with eta_min > 0, not AdaGrad's lr_decay). Weight decay
    per member where the optimiser adds it to the gradient (SGD, Adam, RMSprop, AdaGrad: their
    `weight_decay * param` term, added per member's row before the group's step); not AdamW's
    decoupled decay."""
    if len(cfgs) < 2:
        return "fewer than 2 jobs"
    plain = [_without_values(c) for c in cfgs]
    if any(p != plain[0] for p in plain[1:]):
        return f"the jobs differ in more than the seed and {', '.join(VALUES)}"
    own = {(c.seed, *(str(OmegaConf.select(c, k)) for k in VALUES)) for c in cfgs}
    if len(own) < len(cfgs):
        return "two jobs share a seed"
    if len({c.regularizer.weight_decay for c in cfgs}) > 1 and decoupled_decay(cfgs[0]):
        return "regularizer.weight_decay differs under decoupled weight decay (AdamW)"
    if len({c.optimizer.lr for c in cfgs}) > 1:
        if cfgs[0].scheduler.main.get("eta_min"):
            return "optimizer.lr differs under scheduler.main.eta_min > 0 (not a common factor)"
        if cfgs[0].optimizer.get("lr_decay"):
            return "optimizer.lr differs under optimizer.lr_decay (AdaGrad's is not linear)"
    t = cfgs[0].trainer
    if t.get("ema_decay") is not None or t.get("swa_start") is not None:
        return "trainer.ema_decay/swa_start (averaged weights are not kept in fused training)"
    if cfgs[0].model.get("pretrained") or cfgs[0].transfer.get("source") is not None:
        return "model.pretrained/transfer.source (transfer runs unfused)"
    return None


def fusable_parts(cfgs: list[DictConfig]) -> list[list[int]]:
    """The configs that can train together, as lists of indices (each of at least 2): those
    whose models have the same layers with parameters, of the same shapes (an activation with
    parameters, PReLU, or one that widens the layer in front, maxout, trains with its own
    kind), when why_not_fusable allows them all; else each group equal but for the seed.
    None for a CNN on the CPU whose first conv layer gives more than CPU_CONV_LIMIT values per
    example: there a grouped convolution of K such members trained 1.7-1.9x and evaluated
    2.2-2.6x slower than K separate models (`python scripts/bench_fused.py --model cnn`); it
    fuses on a GPU, and small images fuse on the CPU too (8x8 digits: 2.4-3.0x faster). A
    config is validated once per value of all but its seed (validate does not read it) and its
    model built once per value of all but its seed and lr (neither shapes a layer)."""
    if cfgs and why_not_worth_it(cfgs[0]):
        return []
    if why_not_fusable(cfgs) is not None:
        return seed_only(cfgs)
    parts: dict[tuple, list[int]] = {}
    valid: dict[str, bool] = {}  # by the config but its seed
    shapes: dict[str, tuple | None] = {}  # by the config but its seed and lr
    for i, cfg in enumerate(cfgs):
        plain = plain_config(cfg, "seed")
        key = repr(plain)
        if key not in valid:
            valid[key] = _valid(cfg)
        plain.get("optimizer", {}).pop("lr", None)
        plain.get("regularizer", {}).pop("weight_decay", None)
        shape_key = repr(plain)
        if valid[key] and shape_key not in shapes:
            shapes[shape_key] = _layers(cfg)
        if valid[key] and shapes[shape_key] is not None:
            parts.setdefault(shapes[shape_key], []).append(i)
    return [p for p in parts.values() if len(p) > 1]


CPU_CONV_LIMIT = 2048  # values per example out of a CNN's first conv layer; fused above it on
# the CPU, a grouped convolution trained 0.53-0.58x as fast as separate channels-last models
# (28x28 x 8, K 4 and 24), at or below it 2.4-3.0x as fast (8x8 x 16, K 8 and 24): bench_fused.py


def why_not_worth_it(cfg: DictConfig) -> str | None:
    """Why a sweep does not fuse jobs that could fuse (fusable_parts), or None."""
    from trainlab.data import load_data

    if not str(cfg.model.get("_target_", "")).endswith(".CNN"):
        return None
    if resolve_device(cfg.device).type != "cpu":
        return None
    _, height, width = load_data(cfg.data).in_shape  # cached per process
    if cfg.model.width * height * width > CPU_CONV_LIMIT:
        return (
            f"a CNN on the CPU whose first conv layer gives {cfg.model.width}x{height}x{width}"
            f" values per example (> {CPU_CONV_LIMIT}: slower fused than separate there)"
        )
    return None


def _valid(cfg: DictConfig) -> bool:
    try:
        return validate(cfg) is None
    except Exception:  # noqa: BLE001 - trained alone, it records its own error
        return False


def _layers(cfg: DictConfig) -> tuple | None:
    """(name, type, parameter shapes) of every module of the config's model that holds state;
    None when it cannot be built (trained alone, it records why)."""
    from trainlab.data import load_data

    try:
        data = load_data(cfg.data)  # cached per process
        model = build.build_model(cfg, data.in_shape, data.num_classes)
    except Exception:  # noqa: BLE001
        return None
    return tuple(
        (name, type(m).__name__, tuple(tuple(p.shape) for p in m.parameters(recurse=False)))
        for name, m in model.named_modules()
        if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(False))
    )


def decoupled_decay(cfg: DictConfig) -> bool:
    """The optimiser decays the weights itself (AdamW, or Adam's decoupled_weight_decay)
    rather than adding weight_decay * param to the gradient."""
    target = str(cfg.optimizer.get("_target_", ""))
    return target.endswith("AdamW") or bool(cfg.optimizer.get("decoupled_weight_decay"))


def _without_values(cfg: DictConfig) -> dict:
    """The resolved config without its seed and the values a member may hold (VALUES)."""
    plain = plain_config(cfg, "seed", *VALUE_NODES)
    plain.get("optimizer", {}).pop("lr", None)
    plain.get("regularizer", {}).pop("weight_decay", None)
    return plain


def seed_only(cfgs: list[DictConfig]) -> list[list[int]]:
    """The indices of the configs equal but for the seed, in groups of at least 2."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cfgs):
        groups.setdefault(repr(plain_config(c, "seed")), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def plain_config(cfg: DictConfig, *without: str) -> dict:
    """The resolved config as a dict, without the top-level keys named."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in without:
        plain.pop(key, None)
    return plain
