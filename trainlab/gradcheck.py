"""`trainlab gradcheck [overrides]`: analytic gradients against numerical ones (lecture 6).

The configured model and loss (cross-entropy, plus the L1 penalty when `regularizer.l1` > 0)
are evaluated in float64 on one fixed batch of GRADCHECK_BATCH preprocessed training examples
(no augmentation). For every parameter tensor ("layer"), `samples` coordinates drawn with the
run's seed get a centred difference (f(w + h) - f(w - h)) / 2h, compared with autograd's value
by the relative error |a - n| / max(|a|, |n|). The lecture's reading of the worst coordinate:
<= 1e-7 fine in double precision, <= 1e-4 acceptable where the objective has kinks, above
1e-2 the gradient is probably wrong.

What makes the loss a deterministic, differentiable function of the weights:
- dropout: the RNG is re-seeded before every forward, so every evaluation draws the same mask;
- batch norm runs in training mode on the fixed batch: the batch statistics are part of the
  function being differentiated (the running averages it updates do not enter the loss);
- kinks (relu family, maxout, max pooling, the L1 penalty at 0): a centred difference that
  straddles a kink is wrong even when the backward is right. A coordinate whose error exceeds
  the "acceptable" 1e-4 is measured again with a 100x smaller step, which straddles the kink
  with 100x lower probability, and keeps the better of the two. A weight sitting exactly at a
  kink (e.g. a bias feeding relu with a zero input) has no derivative: autograd returns one
  of the one-sided slopes, so the coordinate passes when it matches one of them within 1e-3.
  A wrong backward matches none of these. Coordinates that needed either are counted in
  `kinks`.
- rounding: each loss evaluation carries ~1e-16 relative error, so a centred difference has
  an absolute error of about 1e-11 at h = 1e-5; the relative error's denominator is at least
  `gradcheck.tiny` (1e-6) so that a near-zero gradient (a dead unit's) measures no rounding.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from trainlab import build
from trainlab.errors import ConfigError
from trainlab.train import prepare, write_json
from trainlab.validate import validate

GRADCHECK_BATCH = 16  # examples: small keeps kinks few (the lecture), >1 for batch norm
READINGS = ((1e-7, "fine"), (1e-4, "acceptable with kinks"), (1e-2, "uncomfortable"))
WRONG = "probably wrong"
ACCEPTABLE = 1e-4  # errors above this are re-measured with a smaller step (kinks)
ONE_SIDED = 1e-3  # a one-sided slope's truncation error is O(h), not O(h^2): a looser match


def reading(error: float) -> str:
    """The lecture's reading of a relative error in double precision."""
    return next((text for bound, text in READINGS if error <= bound), WRONG)


def relative_error(analytic: float, numerical: float, tiny: float) -> float:
    """|a - n| / max(|a|, |n|, tiny)."""
    return abs(analytic - numerical) / max(abs(analytic), abs(numerical), tiny)


def loss_closure(cfg: DictConfig, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """f() -> the objective on (x, y); re-seeds the RNG so dropout draws the same mask."""
    decay_weights, _ = build.decay_parameters(model)

    def f() -> torch.Tensor:
        torch.manual_seed(cfg.seed)
        loss = F.cross_entropy(model(x), y)
        if cfg.regularizer.l1 > 0:
            loss = loss + cfg.regularizer.l1 * build.l1_penalty(decay_weights)
        return loss

    return f


def check_gradients(
    model: nn.Module, f, samples: int, step: float, tiny: float, seed: int = 0
) -> list[dict[str, Any]]:
    """Per parameter tensor: sampled coordinates, worst relative error, its reading."""
    model.zero_grad(set_to_none=True)
    f().backward()
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        flat, grad = param.data.view(-1), param.grad.reshape(-1)
        picks = torch.randperm(flat.numel(), generator=gen)[:samples].tolist()
        errors, kinks = [], 0
        for i in picks:
            err, kink = _coordinate_error(f, flat, i, grad[i].item(), step, tiny)
            errors.append(err)
            kinks += kink
        worst = max(errors)
        rows.append(
            {"layer": name, "shape": list(param.shape), "checked": len(picks),
             "max_rel_error": worst, "kinks": kinks, "reading": reading(worst)}
        )  # fmt: skip
    return rows


def _coordinate_error(f, flat, i: int, analytic: float, h: float, tiny: float) -> tuple:
    """(relative error, whether a kink was involved) of one coordinate."""
    plus, mid, minus = _values(f, flat, i, h)
    err = relative_error(analytic, (plus - minus) / (2 * h), tiny)
    if err <= ACCEPTABLE:
        return err, False
    # a kink inside [w - h, w + h]: 100x closer straddles it with 100x lower probability
    p2, _, m2 = _values(f, flat, i, h / 100)
    err = min(err, relative_error(analytic, (p2 - m2) / (2 * h / 100), tiny))
    if err <= ACCEPTABLE:
        return err, True
    # w exactly at a kink (a relu input at 0): autograd returns one of the one-sided slopes
    one_sided = min(
        relative_error(analytic, s, tiny) for s in ((plus - mid) / h, (mid - minus) / h)
    )
    return (min(err, one_sided), True) if one_sided <= ONE_SIDED else (err, False)


@torch.no_grad()
def _values(f, flat: torch.Tensor, i: int, h: float) -> tuple[float, float, float]:
    """f(w_i + h), f(w_i), f(w_i - h); w restored afterwards."""
    old = flat[i].item()
    out = []
    for w in (old + h, old, old - h):
        flat[i] = w
        out.append(f().item())
    flat[i] = old
    return tuple(out)


def gradcheck(cfg: DictConfig, run_dir: str | Path) -> list[dict[str, Any]]:
    """Check every layer of the configured model; print the table, write gradcheck.json."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    validate(cfg)
    _validate(cfg.gradcheck)
    _, data, preprocess, model = prepare(cfg)
    model = model.to(torch.float64, memory_format=torch.contiguous_format)  # views of weights
    preprocess = preprocess.double()
    x = preprocess(data.train_x[:GRADCHECK_BATCH].double())  # (B, *in_shape), float64
    y = data.train_y[:GRADCHECK_BATCH]
    model.train()  # dropout (re-seeded) and batch statistics: the function training differentiates
    g = cfg.gradcheck
    rows = check_gradients(
        model, loss_closure(cfg, model, x, y), g.samples, g.step, g.tiny, cfg.seed
    )
    worst = max(r["max_rel_error"] for r in rows)
    write_json(run_dir / "gradcheck.json", {"max_rel_error": worst, "layers": rows})
    print(format_table(rows))
    print(
        f"\nworst relative error {worst:.2e}: {reading(worst)} (float64, {len(x)} examples, "
        f"h={g.step:g}, {g.samples} coordinates per layer); wrote gradcheck.json to {run_dir}"
    )
    return rows


def _validate(g: DictConfig) -> None:
    if g.samples < 1:
        raise ConfigError(f"gradcheck.samples={g.samples} is not allowed: an integer >= 1")
    for key in ("step", "tiny"):
        if not g[key] > 0:
            raise ConfigError(f"gradcheck.{key}={g[key]} is not allowed: a number > 0")


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'layer':<24} {'shape':<14} {'checked':>7} {'kinks':>5} {'max rel error':>13}  reading"
    lines = [head, "-" * len(head)]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        lines.append(
            f"{r['layer']:<24} {shape:<14} {r['checked']:>7} {r['kinks']:>5} "
            f"{r['max_rel_error']:>13.2e}  {r['reading']}"
        )
    return "\n".join(lines)


def passed(rows: list[dict[str, Any]]) -> bool:
    """Every layer at most 'acceptable with kinks' (1e-4)."""
    return all(r["max_rel_error"] <= ACCEPTABLE for r in rows) and not any(
        math.isnan(r["max_rel_error"]) for r in rows
    )
