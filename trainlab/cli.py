"""Entry point only: the argument parser and its subcommands.

A subcommand is a parser added to `build_parser` whose defaults hold `run(namespace) -> exit
code`: the commands that compose a config are `hydra_app.COMMANDS` (add one there).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import threading
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from trainlab import hydra_app, lazy_dynamo
from trainlab.hydra_app import conf_dir, run_name

__all__ = ["build_parser", "conf_dir", "entry", "main", "run_name"]


def package_version() -> str:
    try:
        return version("trainlab")
    except PackageNotFoundError:  # a source tree on PYTHONPATH, never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainlab",
        description="A PyTorch + Hydra lab: train, look inside every layer, judge a sweep.",
        epilog="`trainlab COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"trainlab {package_version()}")
    parser.add_argument("-sc", "--shell-completion", help=argparse.SUPPRESS)  # bash's TAB calls it
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    train, probe, gradcheck = (hydra_app.command(n) for n in ("train", "probe", "gradcheck"))
    for cmd in (train, probe):
        hydra_app.add_parser(sub, cmd)
    add_compare(sub)
    add_report(sub)
    hydra_app.add_parser(sub, gradcheck)
    parser.set_defaults(commands=list(sub.choices), parser=parser)
    return parser


def add_compare(subparsers: Any) -> None:
    """`trainlab compare SWEEP_DIR` and `trainlab compare SWEEP_A SWEEP_B ... [--out DIR]`."""
    parser = subparsers.add_parser(
        "compare",
        help="the verdict of a sweep: tables, plots, claims",
        description=(
            "Judge a sweep: group its jobs by their overrides without the seed, rank the groups,\n"
            "judge the experiment's claims, and write comparison.md, comparison.csv, claims.json,\n"
            "plots/ and TensorBoard runs into the sweep directory. Given several sweeps, compare\n"
            "them as searches (the best job per seed) and judge their cross_sweep_claims.\n\n"
            "  trainlab compare outputs/sweeps/2026-01-01_12-00-00_batchnorm\n"
            "  trainlab compare outputs/sweeps/my_sweep --claims my_claims.yaml\n"
            "  trainlab compare SEARCH_SWEEP GRID_SWEEP --out /tmp/search_vs_grid"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare_arguments(parser)


def compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweeps", nargs="+", metavar="SWEEP_DIR", help="a sweep's directory")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where to write (default: the sweep itself; several sweeps: SWEEP_A/<a>_vs_<b>/)",
    )
    parser.add_argument(
        "--claims",
        metavar="FILE.yaml",
        help="one sweep: judge the claims in FILE (a YAML list, the experiments' language)"
        " instead of the experiment's own; any sweep, ad-hoc ones too",
    )
    parser.set_defaults(run=_run_compare, parser=parser)


def _run_compare(ns: argparse.Namespace) -> int:
    from trainlab.compare import run_args  # matplotlib and scipy only when comparing

    return run_args(ns)


def add_report(subparsers: Any) -> None:
    """`trainlab report [DIR]`: index.html linking every sweep's report.html under DIR."""
    parser = subparsers.add_parser(
        "report",
        help="index.html: a page linking every sweep's report under a folder",
        description=(
            "Write DIR/index.html: one row per sweep under DIR (a folder with multirun.yaml)\n"
            "with its experiment, date, jobs by status and verdicts, linking its report.html\n"
            "(written by `trainlab compare`). A sweep without one is compared now when that is\n"
            "cheap and safe (at most 200 jobs, all finished, none written in the last 2\n"
            "minutes); otherwise it is listed as not compared, with why.\n\n"
            "  trainlab report\n"
            "  trainlab report outputs/sweeps --no-compare"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "dir",
        nargs="?",
        default="outputs",
        metavar="DIR",
        help="a folder of sweeps (default: outputs)",
    )
    parser.add_argument(
        "--no-compare", action="store_true", help="never compare a sweep: only list what exists"
    )
    parser.set_defaults(run=_run_report, parser=parser)


def _run_report(ns: argparse.Namespace) -> int:
    from trainlab.report.index import run_report

    return run_report(ns.dir, rebuild=not ns.no_compare)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Flags may come before, between or after a command's overrides."""
    ns, rest = parser.parse_known_args(argv)
    flags = [a for a in rest if a.startswith("-")]
    if flags or (rest and not hasattr(ns, "overrides")):
        ns.parser.error(f"unrecognized arguments: {' '.join(flags or rest)}")
    if rest:
        ns.overrides += rest
    return ns


def main(argv: list[str] | None = None) -> None:
    lazy_dynamo.install()  # torch.optim would import torch._dynamo (2-3 s) to do nothing here
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    ns = parse(parser, argv)
    if ns.command is None:
        if ns.shell_completion:  # `trainlab -sc query=bash`, from the completion script
            sc = ns.shell_completion
            sys.exit(hydra_app.complete_query(ns.commands, lambda n: parse(parser, [n, "-sc", sc])))
        parser.print_help()
        return
    sys.exit(ns.run(ns))


def entry() -> None:
    """The `trainlab` command and `python -m trainlab`: main(), then the end of the process
    without the interpreter's teardown of every module (torch's took 0.4 s at the end of each
    sweep). What Python's exit does before that teardown is done first, in its order: the
    threads' exit hooks run and the threads that are not daemons joined, the atexit functions
    run (log files closed, workers stopped), stdout and stderr flushed. An exception other than SystemExit ends the process as usual."""
    try:
        main()
        code: Any = 0
    except SystemExit as exit_:
        code = exit_.code
    if isinstance(code, str):  # sys.exit("message"), as Python prints it
        print(code, file=sys.stderr)
    threading._shutdown()  # the interpreter's own calls at its exit, in its order: the
    atexit._run_exitfuncs()  # threads' exit hooks (an executor's), the threads joined; atexit
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


if __name__ == "__main__":
    entry()
