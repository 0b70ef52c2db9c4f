"""`trainlab compare SWEEP_DIR`: the verdict of a sweep, from plain files only.

Reads every job directory below SWEEP_DIR (a folder holding `.hydra/overrides.yaml`), groups the
jobs by their overrides without the seed (trainlab/sweep.py), judges the experiment's claims
(trainlab/claims.py), and writes into SWEEP_DIR (trainlab/report/):
  comparison.md   ranked table (mean ± std [95% t-interval] over seeds), claims, problem jobs
  comparison.csv  one row per group
  claims.json     the experiment's claims with verdicts and the numbers behind them
  report.html     one self-contained page of all of it, for a person (trainlab/report/html.py)
  plots/          mean ± std learning curves; the ranking metric against each swept numeric key
  _compare/<group>/{mean,mean+std,mean-std}   TensorBoard runs beside the jobs' own runs

`trainlab compare SWEEP_A SWEEP_B ... [--out DIR]` compares sweeps as hyperparameter searches
(trainlab/searches.py): per search and seed, the best completed job by the ranking metric; a
table of those per-seed bests, and the experiments' `cross_sweep_claims`. It only reads the
sweeps, and writes comparison.md, comparison.csv, claims.json and report.html into DIR (default
SWEEP_A/<search>_vs_<search>/, so SWEEP_A's own comparison.md stays).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from trainlab import ensembles
from trainlab.claims import ClaimResult, check_claim, evaluate_claims
from trainlab.errors import ConfigError
from trainlab.io import atomic_write_text
from trainlab.report.html import write_report, write_search_report
from trainlab.report.plots import write_plots
from trainlab.report.search_tables import format_search_csv, format_search_markdown
from trainlab.report.tables import format_csv, format_markdown
from trainlab.report.tensorboard import write_tensorboard
from trainlab.report.terminal import format_search_terminal, format_terminal
from trainlab.searches import SearchComparison, best_of_claims, judge_searches
from trainlab.sweep import (
    Comparison,
    Group,
    Job,
    group_jobs,
    group_label,
    load_sweep,
    rank_groups,
    rank_setting,
)

OUTPUT_FILES = ("comparison.md", "comparison.csv", "claims.json")
__all__ = ["Comparison", "Group", "Job", "compare", "compare_main", "group_label", "run_compare"]


def compare(
    sweep_dir: str | Path,
    claims_file: str | Path | None = None,
    out_dir: str | Path | None = None,
) -> Comparison:
    """Read, group, rank, judge the claims (the experiment's, or those of `claims_file`);
    write the table, CSV, claims, plots and TB runs into out_dir (default: the sweep)."""
    sweep = Path(sweep_dir)
    jobs, experiment = load_sweep(sweep)
    if claims_file is not None:
        experiment = {**experiment, "claims": read_claims(claims_file)}
    rank_by, descending = rank_setting(experiment)
    groups = rank_groups(group_jobs(jobs), rank_by, descending)
    ensemble_rows = ensembles.annotate(groups)  # before the claims: ensemble_gain per job
    claims = evaluate_claims(experiment.get("claims") or [], groups)
    claims += best_of_claims(experiment, jobs, rank_by, descending)  # experiment.best_of
    result = Comparison(sweep, groups, experiment, rank_by, descending, claims)
    result.out_dir = Path(out_dir) if out_dir is not None else None
    result.ensembles = ensemble_rows
    write_outputs(result)
    return result


def read_claims(path: str | Path) -> list[dict[str, Any]]:
    """Claims from a YAML file: a list of claims, or a mapping with `claims` (an experiment
    node or file also works); ConfigError naming the problem otherwise."""
    where = f"trainlab compare: --claims={path}"
    try:
        node = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{where}: {getattr(err, 'strerror', None) or 'not YAML'}") from None
    node = node.get("experiment", node) if isinstance(node, dict) else node
    claims = node.get("claims") if isinstance(node, dict) else node
    if not isinstance(claims, list) or not claims:
        raise ConfigError(f"{where}: allowed: a YAML list of claims, or a mapping with claims:")
    for spec in claims:
        try:
            check_claim(spec if isinstance(spec, dict) else {})
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: {err}") from None
    return claims


def run_compare(sweep_dir: str, claims_file: str | None = None, out_dir: str | None = None) -> int:
    """`trainlab compare SWEEP` and the end of every training sweep (callbacks.py), with the
    same exit codes: 0 every job completed or diverged (a diverged run is a result); 1 the
    comparison is written but some job failed, was killed or interrupted, or never started;
    2 nothing compared, one line why: not one sweep's directory, a bad claims file, outputs
    that cannot be written (a full disk: what was there before stays whole)."""
    try:
        result = compare(sweep_dir, claims_file, out_dir)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 2
    except OSError as err:  # matplotlib, TensorBoard: anything compare writes
        where = err.filename or out_dir or sweep_dir
        print(f"trainlab compare: cannot write {where}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(format_terminal(result))
    failed = sum(job.status in ("failed", "missing") for job in result.jobs)
    if failed:
        print(f"trainlab: {failed} of {len(result.jobs)} jobs failed "
              f"(see {result.out / 'comparison.md'})", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def run_args(ns: argparse.Namespace) -> int:
    if len(ns.sweeps) == 1:
        return run_compare(ns.sweeps[0], ns.claims, ns.out)
    if ns.claims is not None:
        ns.parser.error("--claims judges one sweep (several: their cross_sweep_claims)")
    return run_compare_searches(ns.sweeps, ns.out)


def compare_main(args: Sequence[str]) -> int:
    """`trainlab compare ARGS` without the rest of the command line; usage errors return 2."""
    from trainlab.cli import compare_arguments

    parser = argparse.ArgumentParser(prog="trainlab compare")
    compare_arguments(parser)
    try:
        ns = parser.parse_args(args)
        return ns.run(ns)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def write_outputs(result: Comparison) -> None:
    """Plots and TensorBoard runs first: comparison.md and report.html show the PNGs that exist."""
    out = make_dir(result.out)
    plots = write_plots(result, out / "plots")
    result.files += plots
    result.files += write_tensorboard(result, out / "_compare")
    texts = (format_markdown(result), format_csv(result), claims_json(result.claims))
    result.files += write_texts(out, dict(zip(OUTPUT_FILES, texts, strict=True)))
    result.files.append(write_report(result, plots))


def make_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"trainlab compare: cannot write into {out}: {err.strerror}") from err
    return out


def claims_json(claims: Sequence[ClaimResult]) -> str:
    return json.dumps([c.to_dict() for c in claims], indent=2, allow_nan=False) + "\n"


def write_texts(out: Path, texts: dict[str, str]) -> list[Path]:
    """Each file written whole (atomically): a reader never sees half a table."""
    for name, text in texts.items():
        atomic_write_text(out / name, text)
    return [out / name for name in texts]


# ---------------------------------------------------------------- several sweeps: searches


def compare_searches(
    sweep_dirs: Sequence[str | Path], out_dir: str | Path | None = None
) -> SearchComparison:
    """Compare several sweeps as searches; write comparison.md/.csv and claims.json into
    out_dir (default: a folder named after the searches inside the first sweep)."""
    result = judge_searches(sweep_dirs, out_dir)
    write_search_outputs(result)
    return result


def run_compare_searches(sweep_dirs: Sequence[str], out_dir: str | None = None) -> int:
    """`trainlab compare A B ...`, with run_compare's exit codes: 0, 1 if a job of some
    search failed or never started (the comparison is written), 2 nothing compared."""
    try:
        result = compare_searches(sweep_dirs, out_dir)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 2
    except OSError as err:
        where = err.filename or out_dir or sweep_dirs[0]
        print(f"trainlab compare: cannot write {where}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(format_search_terminal(result))
    jobs = [j for s in result.searches for j in s.jobs]
    failed = sum(j.status in ("failed", "missing") for j in jobs)
    if failed:
        print(f"trainlab: {failed} of {len(jobs)} jobs failed "
              f"(see {result.out_dir / 'comparison.md'})", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def write_search_outputs(result: SearchComparison) -> None:
    out = make_dir(result.out_dir)
    texts = (format_search_markdown(result), format_search_csv(result), claims_json(result.claims))
    result.files += write_texts(out, dict(zip(OUTPUT_FILES, texts, strict=True)))
    result.files.append(write_search_report(result))
