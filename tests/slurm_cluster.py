"""A real one-node Slurm cluster on this machine for the tests: munged, slurmctld and slurmd
(Debian's munge and slurm-wlm), configured in a temporary directory, on free ports of 127.0.0.1.

No cgroups (proctrack/linuxproc, task/none: containers rarely let slurmd create cgroups), no
accounting database: `sacct` needs slurmdbd and MySQL, so `bin/sacct` here answers the one query
submitit makes (`sacct -o JobID,State,NodeList --parsable2 -j ID ...`) from `scontrol show job`,
the controller's own records of the jobs (kept for MinJobAge seconds after they end). Every
finished job is also written by Slurm to `jobcomp.txt` (jobcomp/filetxt), which the tests read.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NEEDED = ("munged", "slurmctld", "slurmd", "sbatch", "scancel", "scontrol", "sinfo")

SACCT = """#!{python}
# sacct for a cluster without slurmdbd: JobID|State|NodeList of the jobs given with -j,
# from `scontrol show job -o` (what submitit's status queries need, nothing more).
import subprocess, sys
ids = [a for i, a in enumerate(sys.argv) if i > 0 and sys.argv[i - 1] == "-j"]
print("JobID|State|NodeList")
for jid in ids:
    out = subprocess.run(["scontrol", "show", "job", "-o", jid], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        f = dict(t.split("=", 1) for t in line.split() if "=" in t)
        task = f.get("ArrayTaskId")
        if task is None:
            name = f.get("JobId", jid)
        elif task.replace("-", "").replace(",", "").isdigit() and "-" not in task:
            name = f"{{f['ArrayJobId']}}_{{task}}"
        else:
            name = f"{{f['ArrayJobId']}}_[{{task}}]"
        print(f"{{name}}|{{f.get('JobState', 'UNKNOWN')}}|{{f.get('NodeList', '')}}")
"""


def missing() -> str | None:
    """Why a cluster cannot be started here (None: it can)."""
    absent = [name for name in NEEDED if shutil.which(name) is None]
    if absent:
        return (f"Slurm/munge not installed ({', '.join(absent)} missing; Debian: apt-get "
                "install slurm-wlm munge, as .ci/run does)")  # fmt: skip
    if os.geteuid() != 0:
        return "slurmd runs jobs as their user: the one-node cluster needs root"
    return None


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def write_config(root: Path, node: str) -> Path:
    host = socket.gethostname().split(".")[0]
    ctld_port, d_port = free_ports(2)
    cpus = len(os.sched_getaffinity(0))
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(mode=0o711)
    conf = root / "slurm.conf"
    conf.write_text(
        "\n".join([
            "ClusterName=trainlabtest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={d_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={root}/munge/socket",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root}/state",
            f"SlurmdSpoolDir={root}/spool",
            f"SlurmctldPidFile={root}/slurmctld.pid",
            f"SlurmdPidFile={root}/slurmd.pid",
            f"SlurmctldLogFile={root}/slurmctld.log",
            f"SlurmdLogFile={root}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={root}/jobcomp.txt",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            "MinJobAge=600",
            "KillWait=10",
            "InactiveLimit=0",
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN",
            f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n"
    )  # fmt: skip
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text(SACCT.format(python=sys.executable))
    (bin_dir / "sacct").chmod(0o755)
    return conf


@contextmanager
def cluster(root: Path) -> Iterator[dict[str, str]]:
    """Start munged, slurmctld and slurmd in `root`; yield the environment that reaches them
    (SLURM_CONF, PATH with the sacct above); always stop them, and every job, at the end."""
    node = "trainlab-node"
    conf = write_config(root, node)
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": f"{root}/bin:{os.environ['PATH']}"}
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge = root / "munge"
    daemons: list[subprocess.Popen] = []
    log = (root / "daemons.log").open("ab")
    try:
        daemons.append(subprocess.Popen(
            ["munged", "-F", "-f", f"--socket={munge}/socket", f"--key-file={key}",
             f"--log-file={munge}/munged.log", f"--pid-file={munge}/munged.pid",
             f"--seed-file={munge}/munged.seed"], stdout=log, stderr=log))  # fmt: skip
        wait_for(lambda: (munge / "socket").exists(), 20, "munged's socket", root)
        daemons.append(
            subprocess.Popen(["slurmctld", "-D", "-c", "-i"], env=env, stdout=log, stderr=log)
        )
        daemons.append(
            subprocess.Popen(["slurmd", "-D", "-N", node], env=env, stdout=log, stderr=log)
        )
        wait_for(lambda: idle(env, node), 60, "the node idle in sinfo", root)
        yield env
    finally:
        subprocess.run(
            ["scancel", "--full", "--user=root"], env=env, capture_output=True, timeout=30
        )
        for proc in reversed(daemons):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def idle(env: dict[str, str], node: str) -> bool:
    out = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], env=env, capture_output=True,
                         text=True, timeout=30)  # fmt: skip
    return out.stdout.strip() == "idle"


def wait_for(check, seconds: float, what: str, root: Path) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            logs = "".join(p.read_text()[-1500:] for p in sorted(root.glob("*.log")))
            raise RuntimeError(f"Slurm test cluster: no {what} after {seconds} s\n{logs}")
        time.sleep(0.3)
