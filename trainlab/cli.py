"""Entry point only: the argument parser and its subcommands.

A subcommand is a parser added to `build_parser` whose defaults hold `run(namespace) -> exit
code`: the commands that compose a config are `hydra_app.COMMANDS` (add one there), compare
brings its own parser.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from trainlab import compare, hydra_app, lazy_dynamo
from trainlab.hydra_app import conf_dir, run_name

__all__ = ["build_parser", "conf_dir", "main", "run_name"]


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
    compare.add_parser(sub)
    hydra_app.add_parser(sub, gradcheck)
    parser.set_defaults(commands=list(sub.choices), parser=parser)
    return parser


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


if __name__ == "__main__":
    main()
