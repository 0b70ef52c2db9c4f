"""trainlab's training loop against a plain PyTorch loop on the same model, data and optimiser.

For each setting, one repeat runs `train(cfg)` (its training steps are timed by the run
itself: summary `examples_per_s`, evaluation excluded) with stats off and at the default
stats cadence, and a plain loop (permutation, index, preprocess, forward, cross-entropy,
zero_grad, backward, step, scheduler step; nothing else) over the same number of steps on
the same prepared model; the order rotates between repeats. It prints the medians and the
median of the paired speed ratios plain/trainlab (issue 11: >= 0.97 stats off, >= 0.95 at
the default cadence). The load average is printed before and after. `--threads N` runs both
with N torch threads (trainlab's `threads=N`); by default both use every core, as a user's
loop would. Usage:

    python scripts/bench_loop.py [--repeats 5] [--threads N] [--settings digits_mlp fashion_mlp cnn]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from trainlab import build
from trainlab.config import compose
from trainlab.train import prepare, train

SETTINGS = {
    "digits_mlp": ["trainer.epochs=20"],  # 420 steps: 105 were too few to time on 2 cores
    "fashion_mlp": ["data=fashion_mnist", "trainer.max_steps=600", "trainer.batch_size=128"],
    "cnn": ["data=fashion_mnist", "model=cnn", "trainer.max_steps=150", "trainer.batch_size=128"],
}
QUIET = ["trainer.progress=never", "trainer.checkpoint=false"]


def trainlab_seconds(overrides: list[str], stats: bool, run_dir: str) -> tuple[float, int]:
    """(seconds of training steps, steps) as the run measured them."""
    cfg = compose([*QUIET, *overrides, f"stats.enabled={str(stats).lower()}"])
    s = train(cfg, run_dir)
    return s["steps"] * cfg.trainer.batch_size / s["examples_per_s"], s["steps"]


def plain_seconds(overrides: list[str], steps: int) -> float:
    """The same number of steps in a plain loop on the same prepared model and optimiser."""
    cfg = compose([*QUIET, *overrides])
    device, data, preprocess, model = prepare(cfg)
    optimizer = build.build_optimizer(cfg, model)
    scheduler = build.build_scheduler(cfg, optimizer, steps)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    n, bs, done = len(data.train_x), cfg.trainer.batch_size, 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    while done < steps:
        perm = torch.randperm(n, device=device, generator=gen)
        for i in range(0, n, bs):
            if done == steps:
                break
            idx = perm[i : i + bs]
            loss = F.cross_entropy(model(preprocess(data.train_x[idx])), data.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    logging.getLogger("trainlab").setLevel(logging.ERROR)
    extra = []
    if args.threads:
        torch.set_num_threads(args.threads)
        extra = [f"threads={args.threads}"]
    print("load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    for name in args.settings:
        overrides = SETTINGS[name] + extra
        times: dict[str, list[float]] = {"plain": [], "stats off": [], "default stats": []}
        with tempfile.TemporaryDirectory() as tmp:
            _, steps = trainlab_seconds(overrides, False, f"{tmp}/warm")  # warm-up, step count
            plain_seconds(overrides, steps)
            for r in range(args.repeats):
                order = list(times)[r % 3 :] + list(times)[: r % 3]
                for kind in order:
                    if kind == "plain":
                        times[kind].append(plain_seconds(overrides, steps))
                    else:
                        stats = kind == "default stats"
                        times[kind].append(
                            trainlab_seconds(overrides, stats, f"{tmp}/{r}{kind}")[0]
                        )
        line = [f"{name} ({steps} steps): plain {statistics.median(times['plain']):.3f} s"]
        for kind in ("stats off", "default stats"):
            ratio = statistics.median(
                p / t for p, t in zip(times["plain"], times[kind], strict=True)
            )
            line.append(f"{kind} {statistics.median(times[kind]):.3f} s = {ratio:.2f}x plain")
        print("; ".join(line), flush=True)
    print("load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)


if __name__ == "__main__":
    main()
