"""Fused seeds: K MLPs trained as one fused model vs the same K trained one after another.

`--trainlab` (needs Hydra): trainlab's own paths, K jobs of the default config (statistics
on) that differ only in seed: `trainlab.fused.train_fused` against `trainlab.train.train`
called K times in this process, each writing its run directories (events, checkpoints,
summaries) under a temporary directory. Extra config overrides follow `--`.

Without it (torch only, no Hydra): the bare training steps in this process (a batch gathered
from each member's own permutation, forward, cross-entropy, backward, Adam): K separate
loops of `--steps` steps against one fused loop of `--steps` steps, the default MLP of
trainlab (3 x 128, ReLU) on digits-sized inputs (1294 x 64, 10 classes).

Each repeat times both, the order alternating, after a warm-up; it prints the median times,
the median of the paired ratios and the load average (`uptime`) before and after. Usage:

    python scripts/bench_fused.py --trainlab --k 8 --repeats 3 [-- trainer.epochs=3]
    python scripts/bench_fused.py [--k 8] [--steps 200] [--repeats 5] [--device cpu|cuda]
    python scripts/bench_fused.py --k 8 32 --device cuda --width 128   # the GPU figures
    python scripts/bench_fused.py --model cnn --width 8 --depth 2 --k 4 24 --steps 10 --threads 1
    python scripts/bench_fused.py --model cnn --side 8 --width 16 --depth 1 --k 8 24 --threads 1
    python scripts/bench_fused.py --eval --batch-size 1024 --k 8 --threads 1 [--model cnn]

`--model cnn`: trainlab's CNN on 1x28x28 inputs (why a sweep does not fuse CNNs on the CPU);
`--eval`: evaluation only, K models one after another vs the fused model on K x batch rows
(why a fused group evaluates each member in its own model).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from trainlab.fused_models import fuse
from trainlab.models import CNN, MLP


def members(k: int, width: int, depth: int, device: str, model: str = "mlp", side: int = 28):
    """K models of trainlab's MLP on digits-sized inputs, or its CNN on side x side images
    (`depth` conv blocks per stage, 2 stages, `width` channels, a 32-unit head; channels-last
    as trainlab.start.prepare makes it)."""
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        if model == "cnn":
            net = CNN((1, side, side), 10, width=width, stages=2, depth=depth, head_width=32)
            net = net.to(memory_format=torch.channels_last)
        else:
            net = MLP((1, 8, 8), 10, depth=depth, width=width)
        models.append(net.to(device))
    return models


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def separate(models, x, y, steps: int, bs: int, device: str) -> float:
    """K loops, one after the other: `steps` steps of each model (seconds)."""
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
    gen = torch.Generator(device=device).manual_seed(0)
    sync(device)
    start = time.perf_counter()
    for model, opt in zip(models, optimizers, strict=True):
        perm = torch.randperm(len(x), device=device, generator=gen)
        for s in range(steps):
            i = (s * bs) % (len(x) - bs)
            idx = perm[i : i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sync(device)
    return time.perf_counter() - start


def fused(models, x, y, steps: int, bs: int, device: str) -> float:
    """One loop of `steps` steps of the K models fused (seconds)."""
    model = fuse(models, [torch.Generator(device=device) for _ in models])
    k = model.k
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    sync(device)
    start = time.perf_counter()
    perms = torch.stack([torch.randperm(len(x), device=device, generator=gen) for _ in range(k)])
    for s in range(steps):
        i = (s * bs) % (len(x) - bs)
        idx = perms[:, i : i + bs]  # (K, B)
        logits = model(x[idx])  # (K, B, C)
        losses = F.cross_entropy(logits.flatten(0, 1), y[idx].flatten(), reduction="none")
        loss = losses.view(k, -1).mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


@torch.no_grad()
def separate_eval(models, x, y, steps: int, bs: int, device: str) -> float:
    """Each model over all of x in batches of `bs` (`steps` times), as a run evaluates."""
    sync(device)
    start = time.perf_counter()
    for model in models:
        model.eval()
        for _ in range(steps):
            for i in range(0, len(x), bs):
                F.cross_entropy(model(x[i : i + bs]), y[i : i + bs], reduction="sum")
    sync(device)
    return time.perf_counter() - start


@torch.no_grad()
def fused_eval(models, x, y, steps: int, bs: int, device: str) -> float:
    """The fused model over all of x in batches of `bs` examples for every member (K x bs
    rows), as a fused group evaluated before (`steps` times)."""
    model = fuse(models, [torch.Generator(device=device) for _ in models]).eval()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        for i in range(0, len(x), bs):
            xb = x[i : i + bs].expand(model.k, *x[i : i + bs].shape)
            logits = model(xb)
            F.cross_entropy(logits.flatten(0, 1), y[i : i + bs].repeat(model.k), reduction="sum")
    sync(device)
    return time.perf_counter() - start


def trainlab_jobs(k: int, overrides: list[str], fused_path: bool) -> float:
    """trainlab's own fused path, or its K separate runs, in this process (seconds)."""
    from trainlab.config import compose
    from trainlab.fused import train_fused
    from trainlab.train import train

    cfgs = [compose([*overrides, "trainer.progress=never", f"seed={s}"]) for s in range(k)]
    root = Path(tempfile.mkdtemp(prefix="bench_fused_"))
    dirs = [root / str(s) for s in range(k)]
    try:
        start = time.perf_counter()
        if fused_path:
            summaries = train_fused(cfgs, dirs)
        else:
            summaries = [train(c, d) for c, d in zip(cfgs, dirs, strict=True)]
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert all(s["status"] == "completed" for s in summaries), summaries
    return seconds


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def paired(run: dict, repeats: int) -> tuple[dict[str, list[float]], float]:
    """Each repeat runs every variant, the order alternating; (times, median paired ratio)."""
    for fn in run.values():  # warm-up
        fn(True)
    times: dict[str, list[float]] = {name: [] for name in run}
    for r in range(repeats):
        for name in list(run)[:: 1 if r % 2 == 0 else -1]:
            times[name].append(run[name](False))
    pairs = zip(times["separate"], times["fused"], strict=True)
    return times, statistics.median(a / b for a, b in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[8], help="members (several: each)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--side", type=int, default=28, help="--model cnn: image side")
    parser.add_argument(
        "--eval",
        action="store_true",
        help="evaluation (no grad) of --eval-examples, batches of --batch-size",
    )
    parser.add_argument("--eval-examples", type=int, default=4096)
    parser.add_argument("--trainlab", action="store_true", help="trainlab's own paths (Hydra)")
    parser.add_argument("overrides", nargs="*", help="config overrides (--trainlab), after --")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(load())
    if args.trainlab:
        overrides = [*args.overrides, *([f"threads={args.threads}"] if args.threads else [])]
        print(f"trainlab jobs, default config + {overrides}, {torch.get_num_threads()} threads")
        for k in args.k:
            run = {
                "separate": lambda warm, k=k: trainlab_jobs(
                    k, overrides + ["trainer.max_steps=5"] * warm, False
                ),
                "fused": lambda warm, k=k: trainlab_jobs(
                    k, overrides + ["trainer.max_steps=5"] * warm, True
                ),
            }
            report(k, *paired(run, args.repeats), args.repeats)
        print(load())
        return
    gen = torch.Generator().manual_seed(0)
    shape, n = ((1, args.side, args.side), 2000) if args.model == "cnn" else ((1, 8, 8), 1294)
    n = args.eval_examples if args.eval else n
    x = torch.rand(n, *shape, generator=gen).to(args.device)
    y = torch.randint(0, 10, (n,), generator=gen).to(args.device)
    what = f"evaluation of {n} examples x {args.steps}" if args.eval else f"{args.steps} steps"
    print(f"device {args.device}, {torch.get_num_threads()} threads, {args.model.upper()} "
          f"{args.depth}x{args.width}, batch {args.batch_size}, {what} per member, "
          f"{args.repeats} repeats")  # fmt: skip
    one, many = (separate_eval, fused_eval) if args.eval else (separate, fused)
    for k in args.k:

        def variant(fn, k=k):
            def call(warm: bool) -> float:
                models = members(k, args.width, args.depth, args.device, args.model, args.side)
                steps = (1 if warm else args.steps) if args.eval else 5 if warm else args.steps
                return fn(models, x, y, steps, args.batch_size, args.device)

            return call

        run = {"separate": variant(one), "fused": variant(many)}
        report(k, *paired(run, args.repeats), args.repeats)
    print(load())


def report(k: int, times: dict[str, list[float]], ratio: float, repeats: int) -> None:
    print(f"K={k:3d}: separate {statistics.median(times['separate']):.3f} s, "
          f"fused {statistics.median(times['fused']):.3f} s: fused speed-up {ratio:.2f}x "
          f"(median of {repeats} pairs)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
