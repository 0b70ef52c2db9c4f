"""Batch norm in train mode and in eval mode, measured on the same validation examples.

In training, BN normalises with each batch's own statistics; in eval mode with the running
averages gathered during training. The lecture: BN behaves differently in the two modes. With
large batches the two agree; with tiny batches a batch's statistics are noise, and what the
net learnt under them differs from what eval mode gives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def batch_norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def batch_stats_metrics(
    model: nn.Module,
    preprocess: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    eval_acc: float,
) -> dict[str, float]:
    """{} without BN; else the val loss/accuracy with BN in train mode (each batch of the
    training batch size normalised by its own statistics, as in training; everything else in
    eval mode; the running averages untouched) and its gap to the eval-mode accuracy."""
    layers = batch_norm_layers(model)
    usable = len(x) // batch_size * batch_size  # whole batches: a batch of 1 has no statistics
    if not layers or batch_size < 2 or usable == 0:
        return {}
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in layers]
    was_training = model.training
    model.eval()
    for m in layers:
        m.train()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    try:
        for i in range(0, usable, batch_size):
            logits = model(preprocess(x[i : i + batch_size]))
            loss_sum += F.cross_entropy(logits, y[i : i + batch_size], reduction="sum")
            correct += (logits.argmax(1) == y[i : i + batch_size]).sum()
    finally:
        for m, state in zip(layers, saved, strict=True):
            m.load_state_dict(state)  # the running averages as training left them
        model.train(was_training)
    acc = correct.item() / usable
    gap = abs(acc - eval_acc) if math.isfinite(eval_acc) else math.nan
    return {
        "val_loss_batch_stats": loss_sum.item() / usable,
        "val_acc_batch_stats": acc,
        "bn_mode_acc_gap": gap,
    }
