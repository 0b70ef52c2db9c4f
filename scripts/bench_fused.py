"""Fused seeds: K MLPs trained as one fused model vs the same K trained one after another.

Both sides run the same training steps in this process (a batch gathered from each
member's own permutation, forward, cross-entropy, backward, Adam): K separate loops of
`--steps` steps, against one fused loop of `--steps` steps. Each repeat times both, the
order alternating, after a warm-up; it prints the median times and the median of the
paired ratios. Needs torch only (no Hydra): the default MLP of trainlab (3 x 128, ReLU) on
digits-sized inputs (1294 x 64, 10 classes; the values do not change the cost). Usage:

    python scripts/bench_fused.py [--k 8] [--steps 200] [--repeats 5] [--device cpu|cuda]
    python scripts/bench_fused.py --k 8 32 --device cuda --width 128   # the GPU figures
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from trainlab.fused_models import fuse
from trainlab.models import MLP


def members(k: int, width: int, depth: int, device: str) -> list[MLP]:
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(MLP((1, 8, 8), 10, depth=depth, width=width).to(device))
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
    model = fuse(models)
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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1294, 1, 8, 8, generator=gen).to(args.device)
    y = torch.randint(0, 10, (1294,), generator=gen).to(args.device)
    print(f"device {args.device}, {torch.get_num_threads()} threads, MLP {args.depth}x{args.width}, "
          f"batch {args.batch_size}, {args.steps} steps per member, {args.repeats} repeats")  # fmt: skip
    for k in args.k:
        run = {"separate": separate, "fused": fused}
        for fn in run.values():  # warm-up
            fn(
                members(k, args.width, args.depth, args.device),
                x,
                y,
                5,
                args.batch_size,
                args.device,
            )
        times: dict[str, list[float]] = {name: [] for name in run}
        for r in range(args.repeats):
            for name in list(run)[:: 1 if r % 2 == 0 else -1]:
                models = members(k, args.width, args.depth, args.device)
                times[name].append(
                    run[name](models, x, y, args.steps, args.batch_size, args.device)
                )
        pairs = zip(times["separate"], times["fused"], strict=True)
        ratio = statistics.median(a / b for a, b in pairs)
        print(f"K={k:3d}: separate {statistics.median(times['separate']):.3f} s, "
              f"fused {statistics.median(times['fused']):.3f} s: fused speed-up {ratio:.2f}x "
              f"(median of {args.repeats} pairs)")  # fmt: skip


if __name__ == "__main__":
    main()
