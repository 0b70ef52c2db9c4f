"""Polyak averaging of the weights (lecture: "Polyak averaging"), on torch's AveragedModel.

`trainer.ema_decay=0.999`: an exponential moving average of the weights, updated after every
optimiser step (W_ema <- d W_ema + (1 - d) W). `trainer.swa_start=E`: stochastic weight
averaging, the equal average of the weights after every step from epoch E on. Both average
the buffers too (`use_buffers=True`): an EMA's batch-norm running statistics are the EMA of
the model's; SWA's are recomputed for the averaged weights by one pass over the training
split (torch's `update_bn`) before each evaluation, since an average of running statistics
does not describe the averaged network. The averaged weights are evaluated beside the raw
ones: keys `<metric>_ema` (or `_swa`) in history.json and summary.json, `val/acc_ema` in
TensorBoard, and the gains at the end (`val_loss_gain_ema`: raw minus averaged val loss,
`val_acc_gain_ema`, `test_*_gain_ema`; > 0 when the average is better) for claims. When both options are null nothing is built and the loop pays nothing.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from trainlab.data import Splits


class Averaged:
    """The averaged copy of a model, when it is updated and how it is evaluated."""

    def __init__(self, model: nn.Module, decay: float | None, start_epoch: int) -> None:
        avg = {} if decay is None else {"multi_avg_fn": get_ema_multi_avg_fn(decay)}
        self.model = AveragedModel(model, use_buffers=True, **avg)
        self.suffix = "swa" if decay is None else "ema"
        self.start_epoch = start_epoch  # 1 for the EMA
        self.best_val_acc = -math.inf

    def update(self, model: nn.Module, epoch: int) -> None:
        """After an optimiser step: fold the model's weights into the average."""
        if epoch >= self.start_epoch:
            self.model.update_parameters(model)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "best_val_acc": self.best_val_acc}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.best_val_acc = state["best_val_acc"]

    @property
    def started(self) -> bool:
        return int(self.model.n_averaged) > 0

    def evaluate(
        self, preprocess: nn.Module, data: Splits, splits: tuple[str, ...], batch_size: int
    ) -> dict[str, float]:
        """{'val_loss_ema': ..., 'val_acc_ema': ...}; {} before the first update."""
        from trainlab.train import evaluate  # train imports this module

        if not self.started:
            return {}
        net = self.model.module
        if self.suffix == "swa":
            batches = (
                preprocess(data.train_x[i : i + batch_size])
                for i in range(0, len(data.train_x), batch_size)
            )
            with torch.no_grad():
                update_bn(batches, net)
        out = {}
        for split in splits:
            x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
            loss, acc = evaluate(net, preprocess, x, y, batch_size)
            out |= {f"{split}_loss_{self.suffix}": loss, f"{split}_acc_{self.suffix}": acc}
        if math.isfinite(out.get(f"val_acc_{self.suffix}", math.nan)):
            self.best_val_acc = max(self.best_val_acc, out[f"val_acc_{self.suffix}"])
        return out

    def final(
        self, preprocess: nn.Module, data: Splits, batch_size: int
    ) -> dict[str, float | None]:
        """Train, val and test metrics of the final average, and its best val accuracy."""
        out: dict[str, float | None] = dict(
            self.evaluate(preprocess, data, ("train", "val", "test"), batch_size)
        )
        best, sfx = self.best_val_acc, self.suffix
        out[f"best_val_acc_{sfx}"] = best if math.isfinite(best) else None
        return out

    def gains(self, summary: dict) -> dict[str, float]:
        """How much better the average is than the raw weights at the end (> 0: better):
        `val_loss_gain_ema` = raw - averaged loss, `val_acc_gain_ema` = averaged - raw accuracy
        (and the same for test)."""
        out = {}
        for split in ("val", "test"):
            loss, acc = (
                summary.get(f"{split}_loss_{self.suffix}"),
                summary.get(f"{split}_acc_{self.suffix}"),
            )
            if loss is not None and summary.get(f"{split}_loss") is not None:
                out[f"{split}_loss_gain_{self.suffix}"] = summary[f"{split}_loss"] - loss
            if acc is not None and summary.get(f"{split}_acc") is not None:
                out[f"{split}_acc_gain_{self.suffix}"] = acc - summary[f"{split}_acc"]
        return out


def write_scalars(writer, metrics: dict[str, float | None], step: int) -> None:
    """'val_acc_ema' -> TensorBoard tag 'val/acc_ema' (gains stay in summary.json)."""
    for key, value in metrics.items():
        if value is not None and key.count("_") == 2:
            split, rest = key.split("_", 1)
            writer.add_scalar(f"{split}/{rest}", value, step)


def build_averaged(cfg: DictConfig, model: nn.Module) -> Averaged | None:
    """The averaged model `cfg.trainer` asks for, or None (then nothing is averaged)."""
    t = cfg.trainer
    if t.ema_decay is not None:
        return Averaged(model, t.ema_decay, start_epoch=1)
    if t.swa_start is not None:
        return Averaged(model, None, start_epoch=t.swa_start)
    return None
