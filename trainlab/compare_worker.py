"""The end-of-sweep compare, made ready while the sweep's jobs train.

A training sweep starts this module as a second process (`python -m trainlab.compare_worker`)
when it starts: it imports what compare needs (matplotlib, tensorboard's event writer, jinja2,
scipy's special functions and root finder for the claims' tests), compiles the report's
template and draws one throw-away figure (fonts, the log axis's tick labels) on a core the jobs
leave free, then waits. When every job has returned, the sweep sends it the sweep directory; it runs
`trainlab compare` on it, printing to the sweep's own stdout and stderr, and exits with
compare's code (compare.run_compare). Where it cannot be used (not started, gone, stdout not
a real file), the sweep compares in its own process, as `trainlab compare` would.

The worker runs in its own session: a Ctrl-C meant for the sweep does not break a compare in
progress, and it exits as soon as its stdin closes (the sweep ended, or died).
"""

from __future__ import annotations

import atexit
import os
import queue
import subprocess
import sys
import threading
import traceback
from pathlib import Path

BROKEN = 3  # the worker could not get ready (compare's own exit codes are 0, 1 and 2)


def start() -> subprocess.Popen | None:
    """The worker, or None where its output could not reach the sweep's (captured stdout)."""
    try:
        if sys.stdout.fileno() != 1 or sys.stderr.fileno() != 2:
            return None
    except (AttributeError, OSError, ValueError):  # replaced by a capture without a file
        return None
    root = str(Path(__file__).resolve().parents[1])  # this trainlab, wherever it is imported from
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainlab.compare_worker"],
            stdin=subprocess.PIPE, env=env, start_new_session=True, text=True,
        )  # fmt: skip
    except OSError:
        return None
    atexit.register(stop, proc)
    return proc


def run(proc: subprocess.Popen | None, sweep_dir: str) -> int | None:
    """compare's exit code from the worker; None when it could not compare (compare here)."""
    if proc is None or proc.poll() is not None:
        return None
    sys.stdout.flush()  # what the sweep printed comes before the comparison
    sys.stderr.flush()
    try:
        proc.stdin.write(os.path.abspath(sweep_dir) + "\n")
        proc.stdin.close()
    except OSError:
        stop(proc)
        return None
    code = proc.wait()
    return code if code in (0, 1, 2) else None  # BROKEN, or killed by a signal: compare here


def stop(proc: subprocess.Popen | None) -> None:
    """End an unused worker (the sweep ended without a compare)."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def main() -> int:
    request: queue.Queue[str] = queue.Queue()
    threading.Thread(target=listen, args=(request,), daemon=True).start()
    try:
        from trainlab.compare import run_compare
        from trainlab.report.html import environment
        from trainlab.report.plots import warm_up
        from trainlab.report.tensorboard import import_writer

        warm_up()
        import_writer()
        environment().get_template("report.html.j2")
        import scipy.optimize  # noqa: F401 - every claim's test (verdict: t tail, power)
        import scipy.special  # noqa: F401
    except Exception:  # not ready: the sweep compares in its own process (and shows why)
        return BROKEN
    sweep_dir = request.get()
    try:
        return run_compare(sweep_dir)
    except Exception:  # compare itself broke: the jobs' results are there
        print("trainlab compare failed at the end of the multirun:", file=sys.stderr)
        traceback.print_exc()
        return 1


def listen(request: queue.Queue) -> None:
    """The sweep directory, once sent; an empty stdin (the sweep ended without a compare, or
    died) ends the worker at once, even halfway through its imports."""
    sweep_dir = sys.stdin.readline().strip()
    if not sweep_dir:
        os._exit(0)
    request.put(sweep_dir)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the sweep waits for this exit: the interpreter's teardown took 0.4 s
