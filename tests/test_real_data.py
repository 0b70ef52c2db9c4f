"""Accuracy floors on real data: the defaults must actually learn."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainlab.config import compose
from trainlab.train import train

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def test_default_job_learns_digits(tmp_path):
    summary = train(compose(["trainer.progress=never"]), tmp_path)
    assert summary["status"] == "completed"
    assert summary["test_acc"] >= 0.93, summary
    assert summary["initial_loss"] > 1.5 * summary["train_loss"]


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.exists(), reason="apt-get install dataset-fashion-mnist")
def test_default_cnn_reaches_90_percent_on_fashion_mnist(tmp_path):
    cfg = compose(
        [
            "data=fashion_mnist",
            "model=cnn",
            "trainer.epochs=8",
            "scheduler=cosine",
            "trainer.batch_size=128",
            "trainer.progress=never",
        ]
    )
    summary = train(cfg, tmp_path)
    print({k: summary[k] for k in ("test_acc", "epochs", "wall_time_s", "examples_per_s")})
    assert summary["test_acc"] >= 0.90, summary
