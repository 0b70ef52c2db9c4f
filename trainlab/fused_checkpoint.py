"""Each member of a fused run checkpointed in the standard format (trainlab.checkpoint), as its
own run would be: when the run is killed, running the sweep again resumes every member
separately (trainlab.train) from its own checkpoint, and a finished member is skipped.

A member's checkpoint holds its own model (FusedModel.member_state_dict), its own optimiser
state (its slice of every fused state tensor, under the parameter order of an optimiser
built over its own model), the shared schedule, its data generator and, as the global RNG
state its run's dropout draws from, its dropout generator's state.
"""

from __future__ import annotations

from typing import Any

import torch

from trainlab import build, checkpoint
from trainlab.checkpoint import Run
from trainlab.fused_records import Group
from trainlab.io import write_json


def save(g: Group, finished: bool = False) -> None:
    """Every live member's checkpoint and history, where its own run would write them."""
    for k, m in enumerate(g.members):
        if m.alive and m.cfg.trainer.checkpoint:
            checkpoint.save(m.run_dir / "checkpoint.pt", member_state(g, k, finished))
            write_json(m.run_dir / "history.json", m.history)


def member_state(g: Group, k: int, finished: bool) -> dict[str, Any]:
    """checkpoint.gather of member k as if it had trained alone, plus `fused`: the group."""
    m = g.members[k]
    m.model.load_state_dict(g.model.member_state_dict(k))
    if m.run is None:  # its Run once (its config resolved once), its progress at every save
        m.optimizer = m.optimizer or build.build_optimizer(m.cfg, m.model)
        m.run = Run(
            m.cfg, m.run_dir, m.summary["config_hash"], m.summary, device=g.device,
            model=m.model, preprocess=m.preprocess, optimizer=m.optimizer,
            scheduler=g.scheduler, generator=g.generators[k], monitor=m.stats, writer=m.writer,
            history=m.history, clock=g.clock,
        )  # fmt: skip
    run = m.run
    run.step, run.epoch, run.batch_start = g.step, g.epoch, g.batch_start
    run.lr = g.lr * m.lr_scale
    run.perm = None if g.perms is None else g.perms[k].clone()
    run.tally = g.tally.member(k)
    run.last_sync, run.best_val_acc = m.last_sync, m.best_val_acc
    run.train_time_s, run.epoch_train_s = g.train_time, g.epoch_train_s
    state = checkpoint.gather(run, finished=finished)
    state["optimizer"] = member_optimizer_state(g.optimizer, m.optimizer, len(g.members), k)
    if m.lr_scale != 1.0:  # its own lr, as its own run's optimiser and schedule hold it
        state["optimizer"]["param_groups"] = scale_lrs(
            state["optimizer"]["param_groups"], m.lr_scale
        )
        state["scheduler"] = scale_lrs(state["scheduler"], m.lr_scale)
    if g.weight_decays is not None:  # its own, as its own run's optimiser holds it
        state["optimizer"]["param_groups"][0]["weight_decay"] = m.cfg.regularizer.weight_decay
    dropout = g.dropout[k].get_state()
    if g.device.type == "cpu":
        state["rng"]["torch"] = dropout
    else:
        state["rng"]["cuda"] = [dropout]
    state["fused"] = m.summary["fused"]
    return state


def member_optimizer_state(
    fused: torch.optim.Optimizer, own: torch.optim.Optimizer, k_members: int, k: int
) -> dict[str, Any]:
    """`own`'s state_dict holding member k's slice of `fused`'s state.

    Both optimisers list their parameters in the same order (decayed weights, then the rest,
    in module order); a fused parameter holds its members along dim 0 ((K, ...) stacked or
    (K*F,) concatenated), so member k's part of a state tensor is row k of (K, -1).
    """
    fused_params = [p for group in fused.param_groups for p in group["params"]]
    own_params = [p for group in own.param_groups for p in group["params"]]
    state = own.state_dict()
    state["state"] = {}
    for i, (fp, op) in enumerate(zip(fused_params, own_params, strict=True)):
        if fp.numel() != k_members * op.numel():
            raise RuntimeError(f"fused parameter {i} does not hold the member's {tuple(op.shape)}")
        if fused.state.get(fp):
            state["state"][i] = {
                key: _member_part(value, fp, op, k_members, k)
                for key, value in fused.state[fp].items()
            }
    for own_group, fused_group in zip(state["param_groups"], fused.param_groups, strict=True):
        own_group.update({key: v for key, v in fused_group.items() if key != "params"})
    return state


def _member_part(value: Any, fused_param: torch.Tensor, own: torch.Tensor, k_members: int,
                 k: int) -> Any:  # fmt: skip
    """Member k's part of a state value: its row of a tensor shaped like the fused parameter;
    a copy of anything else (Adam's step count)."""
    if not torch.is_tensor(value):
        return value
    if value.shape == fused_param.shape:
        return value.reshape(k_members, -1)[k].view(own.shape).clone()
    return value.clone()


LR_KEYS = ("lr", "initial_lr", "base_lrs", "_last_lr")  # torch's optimisers and schedulers


def scale_lrs(state: Any, factor: float) -> Any:
    """A copy of an optimiser's param_groups or a scheduler's state_dict (SequentialLR's
    nested ones too) with every learning rate multiplied by `factor`."""
    if isinstance(state, dict):
        return {
            key: _times(value, factor) if key in LR_KEYS else scale_lrs(value, factor)
            for key, value in state.items()
        }
    if isinstance(state, list):
        return [scale_lrs(v, factor) for v in state]
    return state


def _times(value: Any, factor: float) -> Any:
    if isinstance(value, list):
        return [_times(v, factor) for v in value]
    if torch.is_tensor(value):
        return value * factor
    return value * factor if isinstance(value, (int, float)) else value
