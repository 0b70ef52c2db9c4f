"""The experiment files of sections 1-4 of the lecture's comparisons (activations, init,
preprocessing, normalisation): they compose, sweep at least 3 seeds over valid options, state
claims on metrics a real job writes with selectors that name swept values (so that compare can
pair the groups), and document a full-size command that composes."""

from __future__ import annotations

import itertools
import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from trainlab.claims import DERIVED, INCONCLUSIVE, KINDS, Stat, check_claim, evaluate_claim
from trainlab.cli import conf_dir
from trainlab.config import compose
from trainlab.schema import GROUPS
from trainlab.train import train

CONF = Path(conf_dir())
EXPERIMENTS = (
    "activations", "dead_relu", "init", "init_depth", "preprocessing",
    "batchnorm", "batchnorm_lr", "normalizations", "relu_tanh_cnn",
)  # fmt: skip
TINY = ["data=digits", "data.subset=64", "model=mlp", "model.width=8", "model.depth=2",
        "trainer.epochs=1", "trainer.batch_size=16", "trainer.checkpoint=false",
        "trainer.progress=never"]  # fmt: skip


def sweep_params(name: str) -> dict[str, list[str]]:
    """hydra.sweeper.params of `+experiment=NAME`: key -> its values, as override strings."""
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = hydra_compose("config", [f"+experiment={name}"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params) or {}
    parser = OverridesParser.create()
    out = {}
    for key, text in params.items():
        override = parser.parse_override(f"{key}={text}")
        out[key] = (
            [str(v) for v in override.sweep_string_iterator()]
            if override.is_sweep_override()
            else [override.get_value_element_as_str()]
        )
    return out


def options(group: str) -> set[str]:
    return {p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.endswith("_schema")}


@pytest.fixture(scope="module")
def metric_keys(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every metric path a real completed job writes (statistics on, batch norm: its pre-activation
    and train/eval-mode metrics), plus the derived ones."""
    overrides = [*TINY, "norm=batch", "stats.pre_activation=true"]
    summary = train(compose(overrides), tmp_path_factory.mktemp("job"))
    assert summary["status"] == "completed"
    return set(DERIVED) | set(summary) | {f"metrics.{k}" for k in summary["metrics"]}


def test_every_experiment_of_this_file_exists():
    assert set(EXPERIMENTS) <= options("experiment")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_composes_with_its_own_name(name: str) -> None:
    cfg = compose([f"+experiment={name}"])
    assert cfg.experiment.name == name
    assert cfg.experiment.description
    assert cfg.experiment.claims, "an experiment states the lecture's claims"
    assert cfg.threads == 1  # small CPU jobs: one torch thread each (see the files)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_sweeps_at_least_three_seeds(name: str) -> None:
    seeds = sweep_params(name).get("seed", [])
    assert len(set(seeds)) >= 3, seeds


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_swept_value_composes(name: str) -> None:
    """Each swept group value is an option of that group, and each swept value composes on top
    of the experiment (a typo in a key or a value fails here)."""
    for key, values in sweep_params(name).items():
        if key in GROUPS:
            assert set(values) <= options(key), (
                f"{key}: {set(values) - options(key)} are not options"
            )
        for value in values:
            cfg = compose([f"+experiment={name}", f"{key}={value}"])
            if key in GROUPS:
                assert cfg[key].name == value
            else:
                assert _same(str(OmegaConf.select(cfg, key)), value), (key, value)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_claims_name_real_metrics_and_swept_values(name: str, metric_keys: set[str]) -> None:
    cfg = compose([f"+experiment={name}"])
    exp = OmegaConf.to_container(cfg.experiment)
    params = sweep_params(name)
    assert exp.get("rank_by", "val_acc") in metric_keys
    for spec in exp["claims"]:
        claim = check_claim(spec)  # well-formed, or ValueError
        assert claim["kind"] in KINDS
        assert claim["metric"] in metric_keys, f"{name}: unknown metric {claim['metric']!r}"
        for selector in (claim[k] for k in ("a", "b", "where") if k in claim):
            for key, want in selector.items():
                assert key in params or key in GROUPS, (
                    f"{name}: {key!r} is neither swept nor a group"
                )
                have = params.get(key, [cfg[key].name] if key in GROUPS else [])
                for w in want if isinstance(want, list) else [want]:
                    assert any(_same(h, w) for h in have), f"{name}: {key}={w!r} is not swept"


def _same(have: str, want: Any) -> bool:
    try:
        return math.isclose(float(have), float(want), rel_tol=1e-9)
    except (TypeError, ValueError):
        return have == str(want)


class FakeGroup:
    """A group of the sweep's grid whose every metric is a clean 3-seed measurement."""

    def __init__(self, params: dict[str, str], choices: dict[str, str]) -> None:
        self.params, self.choices = params, choices
        self.label = ",".join(f"{k}={v}" for k, v in sorted(params.items()))

    def stat(self, metric: str) -> Stat:
        return Stat(n=3, mean=1.0, std=0.1, lo=0.75, hi=1.25)

    def values(self, metric: str) -> list[float | None]:
        return [0.9, 1.0, 1.1]


def grid_groups(name: str) -> tuple:
    """The experiment's config and one FakeGroup per point of its sweep grid (seed aside)."""
    cfg = compose([f"+experiment={name}"])
    params = {k: v for k, v in sweep_params(name).items() if k != "seed"}
    choices = {g: cfg[g].name for g in GROUPS}
    groups = [
        FakeGroup(dict(zip(params, combo, strict=True)), choices)
        for combo in itertools.product(*params.values())
    ]
    return cfg, groups


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_claim_selects_groups_of_the_grid(name: str) -> None:
    """On the sweep's own grid, every claim finds its groups (compare: pairs that differ only in
    the selector keys); a claim that can never be judged fails here, not after a sweep."""
    cfg, groups = grid_groups(name)
    for spec in OmegaConf.to_container(cfg.experiment.claims):
        result = evaluate_claim(spec, groups)
        assert not result.detail.startswith(("no group", "no pair", "invalid")), (
            f"{name}: {result.text}: {result.detail}"
        )
        if result.verdict == INCONCLUSIVE:  # identical fake groups: only overlaps are expected
            assert "too few seeds" not in result.detail


def full_size_command(name: str) -> list[str]:
    """The overrides of the `trainlab train -m +experiment=NAME ...` line in the file's header."""
    header = "\n".join(
        line.lstrip("#").strip()
        for line in (CONF / "experiment" / f"{name}.yaml").read_text().splitlines()
        if line.startswith("#")
    )
    found = re.search(rf"trainlab train -m \+experiment={name}((?:[^\n]*\\\n)*[^\n]*)", header)
    assert found, f"{name}.yaml documents no full-size command"
    return shlex.split(found.group(1).replace("\\\n", " "))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_documented_full_size_command_composes(name: str) -> None:
    overrides = full_size_command(name)
    assert overrides, f"{name}: the full-size command changes nothing"
    first = [o.split("=", 1)[0] + "=" + o.split("=", 1)[1].split(",")[0] for o in overrides]
    cfg = compose([f"+experiment={name}", *first])  # a sweep list: its first value
    assert cfg.experiment.name == name


@pytest.mark.slow
def test_batchnorm_experiment_end_to_end(tmp_path: Path) -> None:
    """A real (shortened) `trainlab train -m +experiment=batchnorm` in a subprocess: every claim
    gets a verdict in comparison.md and claims.json."""
    sweep_dir = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "trainlab",
        "train",
        "-m",
        "+experiment=batchnorm",
        "seed=0,1,2",
        "trainer.epochs=2",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=540, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    claims = json.loads((sweep_dir / "claims.json").read_text())
    specs = compose(["+experiment=batchnorm"]).experiment.claims
    assert [c["text"] for c in claims] == [s.text for s in specs]
    assert {c["verdict"] for c in claims} <= {"confirmed", "refuted", "inconclusive"}
    report = (sweep_dir / "comparison.md").read_text()
    assert report.count("| **") >= len(claims)  # one verdict cell per claim
    assert len(list(sweep_dir.glob("*/seed=*/summary.json"))) == 30
    assert "Claims (" in proc.stdout
