"""Typed schema of the configuration (OmegaConf structured configs in Hydra's ConfigStore).

Typed fields make `trainer.epochs=abc` fail at composition with Hydra's own message.
Group options whose content is a torch object (`activation.layer`, `optimizer`, ...) are
left as open dicts: their keys are torch's own argument names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TrainerConf:
    epochs: int = 10
    batch_size: int = 64
    max_steps: int | None = None  # cap on optimiser steps (None: epochs decide)
    eval_batch_size: int = 1024
    progress: str = "auto"  # auto (tty only), always, never
    checkpoint: bool = True  # resumable checkpoints (every epoch, every N steps, on a signal)
    checkpoint_every: int = 500  # steps between mid-epoch checkpoints (0: at epoch ends only)
    target_train_error: float = 0.25  # "steps to target" for convergence-speed comparisons
    predictions: bool = True  # predictions.npz: val/test probabilities (float16) for ensembles
    ema_decay: float | None = None  # Polyak averaging: EMA of the weights (e.g. 0.999); null: off
    swa_start: int | None = None  # stochastic weight averaging from this epoch on; null: off


@dataclass
class DataConf:
    name: str = MISSING
    root: str | None = None  # folder holding the data set files (None: the data set's defaults)
    download: bool = False  # torchvision data sets only; needs a network
    val_fraction: float = 0.1  # held out from the training split
    test_fraction: float = 0.2  # for data sets without an official test split (digits, gaussian)
    subset: int | None = None  # train on the first N (shuffled) training examples
    split_seed: int = 0  # the split is a property of the data, not of the run seed
    classes: list[int] | None = None  # only these labels, relabelled 0..k-1 (None: all)
    # gaussian only: unit-gaussian inputs with random labels
    num_examples: int = 1000
    features: int = 500
    num_classes: int = 10


@dataclass
class MLPConf:
    _target_: str = "trainlab.models.MLP"
    name: str = "mlp"
    depth: int = 3  # hidden layers
    width: int = 128  # units per hidden layer
    pretrained: str | None = None  # a trainlab checkpoint.pt to start from (see transfer)


@dataclass
class CNNConf:
    _target_: str = "trainlab.models.CNN"
    name: str = "cnn"
    width: int = 16  # channels of the first stage; each later stage doubles them
    stages: int = 2  # each stage: `depth` conv-norm-act blocks, then 2x2 max pooling
    depth: int = 2  # conv blocks per stage
    head_width: int = 64  # hidden units of the classifier (0: a linear head)
    pretrained: str | None = None  # a trainlab checkpoint.pt to start from (see transfer)


@dataclass
class ActivationConf:
    name: str = MISSING
    layer: Any = MISSING  # {_target_, _partial_: true, ...}: act_layer()
    nonlinearity: str = "linear"  # name for torch.nn.init.calculate_gain / kaiming_*
    param: float | None = None  # its parameter (negative slope of leaky_relu)
    saturation_low: float | None = None  # y <= low counts as saturated
    saturation_high: float | None = None  # y >= high counts as saturated
    can_die: bool = False  # a unit can output exactly 0 for every input (relu)


@dataclass
class InitConf:
    name: str = MISSING
    weight: Any = None  # {_target_: torch.nn.init.X_, _partial_: true}; None keeps PyTorch's
    gain: str | None = None  # null: the scheme's own scale; "activation": scaled to the activation
    gain_arg: str | None = (
        None  # how the scheme takes it: "gain" (xavier) or "nonlinearity" (kaiming)
    )
    unit_gain: bool = (
        False  # its scale assumes a unit-gain activation (Glorot, LeCun): relu halves it
    )
    bias: float | None = 0.0  # constant bias; None keeps PyTorch's


@dataclass
class NormConf:
    name: str = MISSING
    flat: Any = None  # norm_layer(num_features) for (B, F) inputs; None: nn.Identity
    spatial: Any = None  # norm_layer(num_channels) for (B, C, H, W) inputs


@dataclass
class RegularizerConf:
    name: str = MISSING
    weight_decay: float = 0.0  # L2, on weights only (not biases, norm or PReLU parameters)
    l1: float = 0.0  # L1 penalty added to the loss, weights only
    p: float = 0.0  # inverted dropout probability after every hidden activation


@dataclass
class AugmentationConf:
    name: str = MISSING
    ops: list[Any] = field(default_factory=list)  # batch functions (x, generator) -> x


@dataclass
class PreprocessConf:
    name: str = MISSING
    _target_: str = MISSING
    eps: float = 1e-5


@dataclass
class SchedulerConf:
    name: str = MISSING
    main: Any = (
        MISSING  # {_target_: trainlab.schedules.X, _partial_: true}: main(optimizer, total_steps)
    )
    warmup_steps: int = 0  # linear warmup from warmup_start_factor * lr
    warmup_start_factor: float = 0.01


@dataclass
class StatsConf:
    enabled: bool = True
    every: int = 50  # capture activation/gradient/update statistics every N steps (and at step 0)
    histogram_every: int = 250
    pre_activation: bool = False  # also capture the output of each linear/conv layer
    max_batch: int = 256  # examples of the batch used for a capture


@dataclass
class TransferConf:
    name: str = MISSING
    load: bool = True  # load model.pretrained (scratch: false)
    trainable_blocks: int | None = None  # train the last K blocks and the head; None: all
    pretrained_lr_scale: float = 1.0  # lr factor of the pretrained (non-head) layers
    source: list[str] | None = None  # overrides of a source run trained once and cached
    cache_dir: str = "outputs/pretrained"  # where cached source runs live (keyed by config)


@dataclass
class GradcheckConf:
    samples: int = 10  # coordinates checked per parameter tensor (drawn with the run's seed)
    step: float = 1e-5  # h of the centred difference, in float64 (rounding ~1e-16 / h)
    tiny: float = 1e-6  # least denominator of the relative error: rounding dominates below it


@dataclass
class Config:
    seed: int = 0
    device: str = "auto"  # auto (cuda when available), cpu, cuda
    threads: int | None = None  # torch threads; None: all cores, 1 per sweep job (tasks.py)
    data: DataConf = MISSING
    model: Any = MISSING  # typed by mlp_model_schema or cnn_model_schema
    activation: ActivationConf = MISSING
    init: InitConf = MISSING
    norm: NormConf = MISSING
    regularizer: RegularizerConf = MISSING
    augmentation: AugmentationConf = MISSING
    preprocess: PreprocessConf = MISSING
    scheduler: SchedulerConf = MISSING
    optimizer: Any = MISSING  # {_target_: torch.optim.X, _partial_: true, lr: ...}
    transfer: TransferConf = MISSING
    trainer: TrainerConf = field(default_factory=TrainerConf)
    stats: StatsConf = field(default_factory=StatsConf)
    gradcheck: GradcheckConf = field(default_factory=GradcheckConf)
    pair: str | None = None  # the (activation, init) pair of pair=NAME (conf/pair/), if any
    experiment: Any = None  # experiment metadata (name, target, claims); set by +experiment=NAME


GROUPS = (
    "data", "model", "activation", "init", "norm", "regularizer",
    "augmentation", "preprocess", "scheduler", "optimizer",
)  # fmt: skip


def register_configs() -> None:
    """Store the schema: `trainlab_schema` heads config.yaml; model options name theirs."""
    cs = ConfigStore.instance()
    cs.store(name="trainlab_schema", node=Config)
    cs.store(name="mlp_model_schema", node=MLPConf)
    cs.store(name="cnn_model_schema", node=CNNConf)


def choices(cfg: Any) -> dict[str, str]:
    """The chosen option of every config group (each group node carries its `name`)."""
    return {group: cfg[group].get("name") for group in GROUPS}
