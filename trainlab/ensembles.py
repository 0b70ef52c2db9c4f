"""Model ensembles from the seeds a sweep already ran (lecture: "model ensembles").

Every completed job writes `predictions.npz` beside summary.json: the final model's softmax
probabilities on the val and test splits as float16 (N, C), and the labels. `trainlab compare`
then averages, for each group, the probabilities of its seeds and reports the ensemble's
accuracy next to the mean accuracy of its members, and the gain (ensemble - mean member).

Two intervals, two questions:
- the Ensembles table's 95% interval of the gain is a percentile bootstrap over seeds: the
  group's members are resampled with replacement (BOOTSTRAP times), and each resample's
  ensemble (probabilities weighted by how often a member was drawn) and mean member are
  scored on the same examples. With 3-5 seeds there are few distinct resamples: the interval
  is coarse, and it says how much the gain depends on which seeds were trained.
- for claims, each job gets the derived metrics `ensemble_test_acc`/`ensemble_val_acc` (its
  group's ensemble) and `ensemble_gain`/`ensemble_val_gain` (that ensemble minus this
  member): their mean over seeds is the gain, and claims judge it with the usual Student-t
  interval over members (`kind: threshold, metric: ensemble_gain, op: above, value: 0`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # compare reads predictions with numpy only: no torch import there
    from torch import nn

PREDICTIONS = "predictions.npz"
SPLITS = ("val", "test")
BOOTSTRAP = 2000  # resamples of the seeds for the gain's interval
DERIVED_KEYS = ("ensemble_test_acc", "ensemble_val_acc", "ensemble_gain", "ensemble_val_gain")


def predict(model: nn.Module, preprocess: nn.Module, x, batch_size: int) -> np.ndarray:
    """Softmax probabilities (N, C) in eval mode, as float16."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = [
            model(preprocess(x[i : i + batch_size])).float().softmax(1)
            for i in range(0, len(x), batch_size)
        ]
    model.train(was_training)
    return as_float16(out)


def as_float16(probs: list) -> np.ndarray:
    """Batches of probabilities (start.evaluate's `probs`) as one (N, C) float16 array."""
    import torch

    return (
        torch.cat(probs).cpu().numpy().astype(np.float16) if probs else np.zeros((0, 0), np.float16)
    )


def save_predictions(run_dir: Path, model: nn.Module, preprocess: nn.Module, data, bs: int,
                     known: dict[str, list] | None = None) -> None:  # fmt: skip
    """predictions.npz: {val,test}_probs float16 (N, C), {val,test}_y int64 (N,). `known`:
    a split's probabilities already computed by its last evaluation (start.evaluate's
    `probs`, from the same weights), so it is not run through the model again."""
    arrays = {}
    for split in SPLITS:
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if known is not None and known.get(split) is not None:
            arrays[f"{split}_probs"] = as_float16(known[split])
        else:
            arrays[f"{split}_probs"] = predict(model, preprocess, x, bs)
        arrays[f"{split}_y"] = y.cpu().numpy().astype(np.int64)
    np.savez_compressed(run_dir / PREDICTIONS, **arrays)


def load_predictions(job_dir: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(job_dir / PREDICTIONS) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError):
        return None


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(-1) == y).mean()) if len(y) else math.nan


@dataclass
class EnsembleRow:
    group: str
    split: str
    n: int  # members (seeds) with predictions
    members: float  # mean member accuracy
    ensemble: float  # accuracy of the averaged probabilities
    lo: float  # 95% percentile-bootstrap interval of the gain (over seeds)
    hi: float

    @property
    def gain(self) -> float:
        return self.ensemble - self.members


def bootstrap_gain(stack: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple:
    """95% percentile interval of (ensemble - mean member) accuracy over resampled members.

    stack: (n, N, C) float32 probabilities of n members; NaN for fewer than 2 members."""
    n = len(stack)
    if n < 2:
        return math.nan, math.nan
    member = np.array([accuracy(p, y) for p in stack])
    draws = rng.integers(0, n, size=(BOOTSTRAP, n))
    weights = (draws[:, :, None] == np.arange(n)).sum(1) / n  # (B, n): how often each is drawn
    # n seeds have few distinct resamples (35 of 4 seeds): each one's ensemble scored once
    distinct, which = np.unique(weights, axis=0, return_inverse=True)
    ens = np.einsum("bk,knc->bnc", distinct, stack).argmax(-1) == y  # (distinct, N)
    gains = ens.mean(1)[which.ravel()] - weights @ member
    lo, hi = np.percentile(gains, [2.5, 97.5])
    return float(lo), float(hi)


def annotate(groups: list[Any], seed: int = 0) -> list[EnsembleRow]:
    """Ensemble each group's completed jobs that saved predictions; add the derived metrics
    (DERIVED_KEYS) to those jobs' summaries (in memory); one row per group and split."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in groups:
        jobs = [j for j in g.jobs if j.status == "completed"]
        loaded = [(j, p) for j in jobs if (p := load_predictions(j.path)) is not None]
        if not loaded:
            continue
        for split in SPLITS:
            y = loaded[0][1][f"{split}_y"]
            same = [(j, p) for j, p in loaded if np.array_equal(p[f"{split}_y"], y)]
            if not len(y) or not same:
                continue
            stack = np.stack([p[f"{split}_probs"].astype(np.float32) for _, p in same])
            ens = accuracy(stack.mean(0), y)
            member = [accuracy(p, y) for p in stack]
            prefix = "" if split == "test" else "val_"
            for (job, _), acc in zip(same, member, strict=True):
                job.summary[f"ensemble_{split}_acc"] = ens
                job.summary[f"ensemble_{prefix}gain"] = ens - acc
            lo, hi = bootstrap_gain(stack, y, rng)
            rows.append(EnsembleRow(g.label, split, len(same), float(np.mean(member)), ens, lo, hi))
    return rows
