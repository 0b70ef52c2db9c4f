"""The commands that compose a config (train, probe, gradcheck): their parser and help, Hydra's
run, and bash completion of their overrides.

argparse owns the flags and the help (every config group with its options, the experiments);
Hydra owns the override grammar and everything after it. `trainlab COMMAND -sc install=bash`
prints Hydra's completion script for `trainlab`; TAB then calls `trainlab -sc query=bash`, which
`complete_query` answers: the command names, else Hydra's answer for that command's overrides.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from trainlab import tasks
from trainlab.errors import ConfigError
from trainlab.preflight import MULTIRUN_FLAGS, preflight
from trainlab.runs import Interrupted
from trainlab.schema import GROUPS, register_configs


def conf_dir() -> str:
    """conf/ ships inside the wheel as trainlab/conf; a source checkout has it at the top."""
    packaged = Path(__file__).resolve().parent / "conf"
    return str(packaged if packaged.is_dir() else packaged.parent.parent / "conf")


def run_name(override_dirname: str, seed: int) -> str:
    """A job's directory and TensorBoard run name: the overrides, then the seed last.

    Overrides longer than MAX_NAME bytes are cut and end in a hash of the whole (a file name
    holds at most 255 bytes)."""
    name = override_dirname or "default"
    if len(name.encode()) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = name.encode()[: MAX_NAME - 13].decode(errors="ignore") + "-" + digest
    return f"{name}/seed={seed}"


if not OmegaConf.has_resolver("tl_run_name"):
    OmegaConf.register_new_resolver("tl_run_name", run_name)
register_configs()


@dataclass(frozen=True)
class HydraCommand:
    name: str
    task: Callable[[DictConfig, str], Any]
    summary: str  # one line in `trainlab --help`
    description: str  # the top of `trainlab NAME --help`
    result: str  # the file a job writes when it succeeded (a failed job of a sweep lacks it)
    module: str  # what the task imports (torch with it): imported once before the jobs


COMMANDS = (
    HydraCommand(
        "train",
        tasks.train_task,
        "train one configuration; -m runs a sweep",
        "Train one configuration into its own run directory (outputs/runs/...); with -m, a sweep\n"
        "of every combination of comma-separated values (outputs/sweeps/...), judged at the end\n"
        "by `trainlab compare`.\n\n"
        "  trainlab train activation=gelu init=kaiming_normal norm=batch optimizer.lr=0.01\n"
        "  trainlab train -m activation=relu,tanh seed=0,1,2\n"
        "  trainlab train -m +experiment=batchnorm",
        "summary.json",
        "trainlab.train",
    ),
    HydraCommand(
        "probe",
        tasks.probe_task,
        "one batch forward and backward at initialisation: the per-layer table",
        "Pass one batch forward and backward through the freshly initialised model (no update)\n"
        "and print the lecture's per-layer table: activation mean, std, saturated and dead\n"
        "fractions, gradient norm. Writes probe.json, probe.png and TensorBoard histograms.\n\n"
        "  trainlab probe model.depth=10 model.width=500 activation=tanh init=small_random "
        "data=gaussian\n"
        "  trainlab probe -m activation=relu,tanh",
        "probe.json",
        "trainlab.probe",
    ),
    HydraCommand(
        "gradcheck",
        tasks.gradcheck_task,
        "analytic vs numerical gradients of every layer, in float64",
        "Compare every layer's analytic gradient with a centred difference, in float64; exit 1\n"
        "when some layer's relative error passes the lecture's 1e-4. Writes gradcheck.json.\n\n"
        "  trainlab gradcheck activation=tanh norm=batch",
        "gradcheck.json",
        "trainlab.gradcheck",
    ),
)
NOT_GROUPS = ("hydra", "experiment")  # conf/ folders that are no config group of the help
MAX_NAME = 200  # bytes of a run directory's name
VERBOSE = "hydra.job_logging.handlers.console.level=DEBUG"  # -v: the console shows DEBUG lines
INFO_CHOICES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def command(name: str) -> HydraCommand | None:
    return next((c for c in COMMANDS if c.name == name), None)


def add_parser(subparsers: Any, cmd: HydraCommand) -> argparse.ArgumentParser:
    """`trainlab NAME [flags] [OVERRIDE ...]`, with the config groups in its help."""
    parser = subparsers.add_parser(
        cmd.name,
        help=cmd.summary,
        description=cmd.description,
        epilog=config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="OVERRIDE",
        help="GROUP=OPTION, KEY=VALUE, +experiment=NAME (Hydra's override grammar)",
    )
    parser.add_argument(
        "-m", "--multirun", action="store_true", help="a sweep: one job per combination of values"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also per-epoch lines, each run's set-up line and, in a sweep, each run's warnings",
    )
    parser.add_argument(
        "-c",
        "--cfg",
        choices=("job", "hydra", "all"),
        help="print the composed config (job: trainlab's own keys) and exit",
    )
    parser.add_argument("--resolve", action="store_true", help="with --cfg: resolve ${...}")
    parser.add_argument("-p", "--package", metavar="KEY", help="with --cfg: print only this key")
    parser.add_argument(
        "-i",
        "--info",
        nargs="?",
        const="all",
        choices=INFO_CHOICES,
        metavar="WHAT",
        help=f"Hydra's view of the config, WHAT one of: {', '.join(INFO_CHOICES)}",
    )
    parser.add_argument(
        "-sc",
        "--shell-completion",
        metavar="install=bash",
        help=f'TAB completion of overrides: eval "$(trainlab {cmd.name} -sc install=bash)"',
    )
    parser.add_argument(
        "--hydra-help", action="store_true", help="Hydra's own flags and hydra.* settings"
    )
    parser.set_defaults(run=lambda ns: run(cmd, ns), parser=parser)
    return parser


def config_help() -> str:
    """Every config group with its options (the default first), then the experiments."""
    root = Path(conf_dir())
    defaults = _defaults(root / "config.yaml")
    lines = ["config groups (GROUP=OPTION; the default first):"]
    more = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name not in NOT_GROUPS)
    for group in dict.fromkeys([*GROUPS, *more]):
        names = sorted(p.stem for p in (root / group).glob("*.yaml"))
        first = defaults.get(group)
        names = [first, *(n for n in names if n != first)] if first in names else names
        lines += _wrapped(f"{group}:", names)
    experiments = sorted(p.stem for p in (root / "experiment").glob("*.yaml"))
    lines += ["", "experiments (a sweep each: add -m):"]
    lines += _wrapped("+experiment=NAME, NAME one of:", experiments)
    lines += [
        "",
        "settings: seed, device, threads, trainer.epochs, trainer.batch_size, optimizer.lr, ...;",
        "every key and its value: trainlab train --cfg job. Runs land in outputs/",
        "(tensorboard --logdir outputs). HYDRA_FULL_ERROR=1 shows tracebacks.",
    ]
    return "\n".join(lines)


def _defaults(path: Path) -> dict[str, str]:
    data = yaml.safe_load(path.read_text()) or {}
    return {
        k: str(v)
        for item in data.get("defaults", [])
        if isinstance(item, dict)
        for k, v in item.items()
    }


def _wrapped(head: str, names: Sequence[str]) -> list[str]:
    return textwrap.wrap(
        f"{head} {', '.join(names)}", width=98, initial_indent="  ", subsequent_indent="      "
    )


def hydra_argv(cmd: HydraCommand, ns: argparse.Namespace) -> list[str]:
    """The parsed flags, then the overrides, back in Hydra's own syntax."""
    argv = []
    flags = {"--cfg": ns.cfg, "--package": ns.package, "--info": ns.info}
    flags["--shell-completion"] = ns.shell_completion
    for flag, value in flags.items():
        if value is not None:
            argv += [flag, value]
    argv += [flag for flag, on in (("-m", ns.multirun), ("--resolve", ns.resolve)) if on]
    argv += ["--hydra-help"] if ns.hydra_help else []
    argv += [VERBOSE] if ns.verbose else []
    return argv + ns.overrides


def run(cmd: HydraCommand, ns: argparse.Namespace) -> int:
    """Compose the config and run the command's task (one job, or a sweep with -m)."""
    import hydra

    @hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
    def main(cfg: DictConfig) -> float | None:
        return tasks.run_job(cmd.task, cfg)

    args = hydra_argv(cmd, ns)
    if ns.shell_completion:
        if ns.shell_completion.startswith("query"):
            os.environ["COMP_LINE"] = strip_command(os.environ.get("COMP_LINE", ""), cmd.name)
    else:
        from trainlab import compose_cache

        gc.freeze()  # the modules imported so far: the collector's full passes skip them
        compose_cache.install()  # each config composed once, not by preflight, sweeper, launcher
        args.append(f"hydra.job.name={cmd.name}")  # the log file's name; callbacks read it
        try:
            sweep = preflight(args, conf_dir())  # bad input: one line, exit 2, nothing created
        except ConfigError as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"trainlab: error: {err}", file=sys.stderr)
            return 2
        if sweep is not None and cmd.name == "train":  # its compare, made ready from now on
            from trainlab.callbacks import CompareOnMultirunEnd  # (on the other core)

            CompareOnMultirunEnd.start_worker(sweep.launcher)
        if sweep is not None and sweep.workers:  # the jobs run in worker processes: their
            from trainlab.sweep_pool import start_server  # fork server imports torch, this

            start_server()  # process need not
        elif not any(a.startswith("-") and a not in MULTIRUN_FLAGS for a in args):
            freeze_imports(cmd.module)
    argv, sys.argv = sys.argv, ["trainlab", *args]  # argv[0]: the name completion is set for
    try:
        main()
    except Interrupted as err:  # SIGINT/SIGTERM: the run saved a checkpoint and stopped
        print(f"trainlab: {err}", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside a run
        print("trainlab: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.argv = argv
    return 0


def freeze_imports(module: str) -> None:
    """Import the task's module without collecting garbage meanwhile, then keep what is alive
    from the collector's full passes (`gc.freeze`): modules, torch's and Hydra's objects live
    until the process ends, yet each full collection walked them all again (0.1-0.25 s each,
    six in an 8-job sweep, and more while torch was imported)."""
    gc.collect()  # the preflight's compositions (the rest is frozen)
    gc.disable()
    try:
        importlib.import_module(module)
    finally:
        gc.freeze()
        gc.enable()


def strip_command(line: str, name: str) -> str:
    """'trainlab train act' -> 'trainlab act': Hydra completes what follows the program."""
    words = line.split(" ")
    return " ".join(words[:1] + words[2:]) if len(words) > 1 and words[1] == name else line


def complete_query(names: Sequence[str], ns_for: Callable[[str], argparse.Namespace]) -> int:
    """Answer bash's TAB for `trainlab ...` (COMP_LINE): command names, else Hydra's answer."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if len(words) < 2 or (len(words) == 2 and not line.endswith(" ")):
        prefix = words[1] if len(words) == 2 else ""
        print(" ".join(n for n in names if n.startswith(prefix)))
        return 0
    cmd = command(words[1])
    if cmd is None:  # compare, report: bash completes file names
        print()
        return 0
    return run(cmd, ns_for(cmd.name))
