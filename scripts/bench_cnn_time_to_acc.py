"""Fashion-MNIST CNN: seconds of training to a test accuracy (issue 11's GPU anchor: 93% in 10 s).

trainlab's own pieces without Hydra (torch and numpy only): the IDX reader, the VGG-style
CNN built from ReLU and BatchNorm2d factories, the batched crop-and-flip augmentation, data
on the device as tensors. SGD with Nesterov momentum, label smoothing, a linear warm-up and
decay of the lr over --epochs, bf16 autocast on CUDA, channels_last. A few untimed warm-up
steps (cuDNN's algorithm search; with --compile the compilation), then the model's initial
weights again; the clock runs over training only and stops at the end of the first epoch whose
test accuracy reaches --target (test evaluation is not timed). Usage:

    python scripts/bench_cnn_time_to_acc.py [--root DIR] [--target 0.93] [--epochs 12] [--compile]

The defaults (batch 512, lr 0.2, a 12-epoch schedule) were chosen on an H100 among batch 256 /
lr 0.1 over 16 or 10 epochs and batch 512 / lr 0.2 over 10 or 12 (README, "Performance"): on
a GPU a step of this small CNN costs about the same at either batch size (launches, not
arithmetic), so the larger batch halves the time per epoch.
"""

from __future__ import annotations

import argparse
import copy
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.augment import flip_lr, random_crop
from trainlab.data import DEBIAN_FASHION_MNIST, IDX_FILES, _idx_path, read_idx
from trainlab.models import CNN


def load(root: Path, device: str) -> tuple[torch.Tensor, ...]:
    """(train_x, train_y, test_x, test_y) on the device; x standardised, (N, 1, 28, 28)."""
    raw = {k: read_idx(_idx_path(root, name), 3 if k.endswith("x") else 1)
           for k, name in IDX_FILES.items()}  # fmt: skip
    xs = [
        torch.as_tensor(raw[k]).to(device).float().div_(255).unsqueeze(1)
        for k in ("train_x", "test_x")
    ]
    mean, std = xs[0].mean(), xs[0].std()
    xs = [((x - mean) / std).contiguous(memory_format=torch.channels_last) for x in xs]
    ys = [torch.as_tensor(raw[k]).to(device).long() for k in ("train_y", "test_y")]
    return xs[0], ys[0], xs[1], ys[1]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp) -> float:
    model.eval()
    correct = torch.zeros((), device=x.device)
    for i in range(0, len(x), 2000):
        with amp():
            correct += (model(x[i : i + 2000]).argmax(1) == y[i : i + 2000]).sum()
    model.train()
    return correct.item() / len(x)  # one sync per evaluation


def train_steps(model, opt, sched, x, y, bs, gen, amp, steps=None) -> None:
    """One epoch (or `steps` steps) of training; no host sync."""
    perm = torch.randperm(len(x), device=x.device, generator=gen)
    for n, i in enumerate(range(0, len(x) - bs + 1, bs)):
        if steps is not None and n >= steps:
            return
        idx = perm[i : i + bs]
        xb = flip_lr(random_crop(x[idx], gen, padding=2), gen)
        xb = xb.contiguous(memory_format=torch.channels_last)  # (B, 1, 28, 28)
        with amp():
            loss = F.cross_entropy(model(xb), y[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEBIAN_FASHION_MNIST)
    parser.add_argument("--target", type=float, default=0.93)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (the "
                        "compilation runs in the untimed warm-up)")  # fmt: skip
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    torch.backends.cudnn.benchmark = True
    amp = partial(torch.autocast, "cuda", dtype=torch.bfloat16) if cuda else nullcontext
    torch.manual_seed(args.seed)
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    train_x, train_y, test_x, test_y = load(args.root, args.device)
    model = CNN((1, 28, 28), 10, width=args.width, stages=2, depth=2, head_width=256,
                norm_layer=nn.BatchNorm2d).to(args.device, memory_format=torch.channels_last)  # fmt: skip
    steps_per_epoch = len(train_x) // args.batch_size
    total = args.epochs * steps_per_epoch

    def optimiser(m: nn.Module):
        opt = torch.optim.SGD(m.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)  # fmt: skip
        warm = steps_per_epoch
        ramp = lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(total - warm, 1)))  # noqa: E731
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, ramp)

    net = torch.compile(model) if args.compile else model
    # Warm-up (cuDNN's algorithm search; with --compile the compilation) on the model itself,
    # then its initial weights and a fresh optimiser and generator: the clock starts at init.
    initial = copy.deepcopy(model.state_dict())
    train_steps(net, *optimiser(model), train_x, train_y, args.batch_size, gen, amp, steps=20)
    accuracy(net, test_x[:4000], test_y[:4000], amp)  # the evaluation's shapes too
    model.load_state_dict(initial)
    gen.manual_seed(args.seed)
    opt, sched = optimiser(model)
    print(f"device {args.device}, CNN width {args.width}, batch {args.batch_size}, lr {args.lr}, "
          f"{args.epochs} epochs (the lr schedule's length), target test accuracy {args.target}"
          f"{', compiled' if args.compile else ''}")  # fmt: skip
    elapsed = 0.0
    for epoch in range(1, args.epochs + 1):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_steps(net, opt, sched, train_x, train_y, args.batch_size, gen, amp)
        if cuda:
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - start
        acc = accuracy(net, test_x, test_y, amp)
        print(f"epoch {epoch:2d}: test acc {acc:.4f} after {elapsed:.2f} s of training")
        if acc >= args.target:
            print(f"reached {args.target:.2%} test accuracy in {elapsed:.2f} s ({epoch} epochs)")
            return
    print(f"did not reach {args.target:.2%} in {args.epochs} epochs ({elapsed:.2f} s)")


if __name__ == "__main__":
    main()
