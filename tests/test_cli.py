"""The console script, run for real in subprocesses; the wheel carries conf/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.subset=64", "trainer.epochs=1", "model.width=8", "model.depth=1"]


def run(
    args: list[str], cwd: Path, exe: list[str] | None = None, **env
) -> subprocess.CompletedProcess:
    # the console script installed beside this interpreter (a venv's bin/, whatever PATH says)
    exe = exe or [str(Path(sys.executable).with_name("trainlab"))]
    return subprocess.run(
        [*exe, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def summaries(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("summary.json"))]


def test_console_script_trains_into_outputs(tmp_path):
    proc = run(["train", *TINY, "activation=gelu"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (summary,) = summaries(tmp_path / "outputs" / "runs")
    assert summary["status"] == "completed"
    assert summary["choices"]["activation"] == "gelu"
    run_dir = next((tmp_path / "outputs" / "runs").rglob("summary.json")).parent
    # the run name reads like the overrides, the seed last
    assert run_dir.name == "seed=0"
    assert (
        run_dir.parent.name
        == "activation=gelu,data.subset=64,model.depth=1,model.width=8,trainer.epochs=1"
    )
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert (run_dir / "checkpoint.pt").exists()


def test_python_dash_m_and_help(tmp_path):
    proc = run(["--help"], tmp_path, exe=[sys.executable, "-m", "trainlab"])
    assert proc.returncode == 0 and "compare" in proc.stdout
    proc = run(["train", "--help"], tmp_path, exe=[sys.executable, "-m", "trainlab"])
    assert proc.returncode == 0 and "activation: " in proc.stdout


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("regularizer.p=1.5", "regularizer.p"),
        ("model.depth=0", "model.depth"),
        ("optimizer.lr=0", "optimizer.lr"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("data=fashion_mnist data.root=/nonexistent", "data.root"),
    ],
)
def test_bad_value_is_one_line_and_exit_2(tmp_path, override, key):
    proc = run(["train", *TINY, *override.split()], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_full_error_shows_the_traceback(tmp_path):
    proc = run(["train", *TINY, "regularizer.p=1.5"], tmp_path, HYDRA_FULL_ERROR="1")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_type_error_and_unknown_option_are_one_line_exit_2(tmp_path):
    proc = run(["train", "trainer.epochs=abc"], tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "trainer.epochs" in proc.stderr
    proc = run(["train", "optimizer=adamx"], tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "adamw" in proc.stderr  # lists the valid options
    assert not (tmp_path / "outputs").exists()  # refused before anything was created


def test_unknown_command(tmp_path):
    proc = run(["fly"], tmp_path)
    assert proc.returncode == 2 and "invalid choice: 'fly'" in proc.stderr
    assert "'train', 'probe', 'compare'" in proc.stderr


@pytest.mark.parametrize("command", ["train", "probe", "compare", "report", "gradcheck"])
def test_every_command_has_its_own_help(tmp_path, command):
    proc = run([command, "--help"], tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith(f"usage: trainlab {command} ")
    if command not in ("compare", "report"):  # the commands that compose a config: its groups
        assert "activation: relu, elu," in proc.stdout  # the default first
        assert "+experiment=NAME" in proc.stdout and "batchnorm" in proc.stdout
        assert "schema" not in proc.stdout  # the typed schema is no option
        assert "-m, --multirun" in proc.stdout
    others = {"train": "Train one", "probe": "Pass one batch", "gradcheck": "Compare every"}
    for name, head in others.items():
        assert (head in proc.stdout) == (name == command)


def test_version_and_usage_errors(tmp_path):
    proc = run(["--version"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("trainlab ")
    proc = run(["train", "--bogus"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: trainlab train")
    assert proc.stderr.strip().splitlines()[-1].endswith("unrecognized arguments: --bogus")


def test_flags_may_follow_the_overrides(tmp_path):
    proc = run(["train", "seed=3", "--cfg", "job", "-p", "seed"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "3", proc.stderr


COMPLETE = """
eval "$(trainlab train -sc install=bash)"
complete -p trainlab
for line in "trainlab tr" "trainlab train activation=ta" "trainlab probe +experiment=batchn"; do
  read -ra words <<< "$line"
  COMP_LINE="$line" COMP_POINT=${#line} COMP_CWORD=$((${#words[@]} - 1))
  COMPREPLY=()
  hydra_bash_completion
  echo "$line -> ${COMPREPLY[*]}"
done
"""


def test_bash_completion_of_commands_and_overrides(tmp_path):
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # `trainlab` as bash finds it
    proc = subprocess.run(
        ["bash", "-c", COMPLETE], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": path},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "complete -o default -o nospace -F hydra_bash_completion trainlab",
        "trainlab tr -> train",
        "trainlab train activation=ta -> activation=tanh",
        "trainlab probe +experiment=batchn -> +experiment=batchnorm +experiment=batchnorm_lr",
    ]
    assert "unknown command" not in proc.stderr


@pytest.mark.slow  # ~23 s: two probe jobs in a real multirun
def test_probe_sweep_reports_its_jobs(tmp_path):
    proc = run(["probe", "-m", "activation=relu,tanh", "data.subset=64"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "trainlab probe: 2 of 2 jobs wrote probe.json" in proc.stdout
    assert not list(tmp_path.rglob("comparison.md"))  # a probe sweep is not compared
    proc = run(["probe", "-m", "activation=relu,tanh", "model.depth=0"], tmp_path)
    assert proc.returncode == 1
    assert "trainlab: 2 of 2 probe jobs failed" in proc.stderr


@pytest.mark.slow  # ~11 s: a real multirun
def test_multirun_sweep_one_dir_per_job(tmp_path):
    proc = run(["train", "-m", *TINY, "activation=relu,tanh", "seed=0,1"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(
        p.parent.relative_to(tmp_path / "outputs" / "sweeps")
        for p in (tmp_path / "outputs" / "sweeps").rglob("summary.json")
    )
    rest = ",data.subset=64,model.depth=1,model.width=8,trainer.epochs=1"
    assert [str(j).split("/", 1)[1] for j in jobs] == [
        f"activation=relu{rest}/seed=0",
        f"activation=relu{rest}/seed=1",
        f"activation=tanh{rest}/seed=0",
        f"activation=tanh{rest}/seed=1",
    ]
    assert all(s["status"] == "completed" for s in summaries(tmp_path / "outputs"))


@pytest.mark.slow  # ~20 s: builds the wheel and a fresh venv
def test_wheel_ships_conf_and_runs_from_another_directory(tmp_path):
    """A non-editable install (the wheel) must find its configs without the source tree.

    The wheel goes into a fresh venv without system site-packages. Its dependencies are not
    downloaded (torch is large and the tests run offline): a .pth file shows the new venv the
    site-packages of the interpreter running the tests, which holds them; the source tree is
    not visible there (an editable install's own .pth is not processed from a .pth-added
    folder). `pip check` then verifies that the wheel's declared dependencies are satisfied.
    """
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=False, with_pip=True)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "_trainlab_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = wheel_dir.glob("trainlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()  # report.html's templates are package data
    assert {
        "trainlab/report/templates/report.html.j2",
        "trainlab/report/templates/index.html.j2",
    } <= set(names)
    subprocess.run(
        [
            py,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--force-reinstall",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    check = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True)
    assert not [line for line in check.stdout.splitlines() if line.startswith("trainlab ")]
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [py, "-c", "import trainlab.cli as c; print(c.__file__, c.conf_dir())"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": ""},  # nothing from a developer's PYTHONPATH either
    ).stdout
    assert str(env_dir) in where and str(ROOT) not in where
    proc = run(["train", *TINY], work, exe=[str(env_dir / "bin" / "trainlab")], PYTHONPATH="")
    assert proc.returncode == 0, proc.stderr
    assert summaries(work / "outputs")[0]["status"] == "completed"
