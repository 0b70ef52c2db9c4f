"""What a command shows in a terminal: run it in a pseudo-terminal of a fixed width and count.

Prints the lines the terminal ends up with (carriage-return redraws of a progress bar count
once), the longest of them, the progress bars broken by a log line (a bar's text and another
line's on one screen line), the lines of no job in a parallel sweep, and the raw ANSI escape
codes found in the files the command wrote below OUT_DIR (job .log files, reports).
Usage (issue 8's before/after figures):

    python scripts/measure_terminal.py --out-dir /tmp/t/bn -- \
        trainlab train -m +experiment=batchnorm hydra.sweep.dir=/tmp/t/bn
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BAR = re.compile(r"\d+%\|")  # tqdm's "42%|####"
TAGGED = re.compile(r"^(\[[^\]]*\])*\s*\[(job|#)\s*\d+")


def run_in_pty(cmd: list[str], columns: int) -> tuple[str, int, float]:
    """The command's whole terminal output (stdout and stderr), its exit code, its wall time."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the follower side closed: the command ended
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    code = proc.wait()
    os.close(leader)
    return b"".join(chunks).decode(errors="replace"), code, time.perf_counter() - start


def screen_lines(text: str) -> list[str]:
    """Each line as the terminal leaves it: escape codes dropped, a '\\r' redraw overwrites."""
    lines = []
    for raw in ANSI.sub("", text).replace("\r\n", "\n").split("\n"):
        shown = ""
        for segment in raw.split("\r"):
            shown = segment + shown[len(segment) :]
        lines.append(shown.rstrip())
    while lines and not lines[-1]:
        lines.pop()
    return lines


def bar_lines(lines: list[str]) -> tuple[int, int]:
    """(screen lines showing a progress bar, those where a log line was written into the bar)."""
    bars = [ln for ln in lines if BAR.search(ln)]
    broken = [ln for ln in bars if BAR.split(ln, 1)[1].partition("]")[2].strip()]
    return len(bars), len(broken)


def ansi_in_files(out_dir: Path) -> dict[str, int]:
    found = {}
    for path in sorted(out_dir.rglob("*")):
        if path.is_file() and path.suffix in (".log", ".md", ".csv", ".json", ".txt", ".html"):
            n = len(ANSI.findall(path.read_text(errors="replace")))
            if n:
                found[str(path.relative_to(out_dir))] = n
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, default=100)
    parser.add_argument("--out-dir", type=Path, help="where the command writes (ANSI check)")
    parser.add_argument("--save", type=Path, help="write the raw terminal output here")
    parser.add_argument("--untagged", help="a parallel sweep: count lines not matching this regex")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    text, code, wall = run_in_pty(cmd, args.columns)
    if args.save:
        args.save.write_text(text)
    lines = screen_lines(text)
    longest = max(lines, key=len, default="")
    print(f"command: {' '.join(cmd)}")
    print(f"exit {code}, {wall:.0f} s, terminal {args.columns} columns")
    bars, broken = bar_lines(lines)
    print(f"lines: {len(lines)}; longest: {len(longest)} characters")
    print(f"progress bars left on screen: {bars}, of them broken by a log line: {broken}")
    print(f"ANSI escape codes on the terminal: {len(ANSI.findall(text))}")
    stamp = r"^(\[job \d+\] )?\[(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d"
    stamped = [ln for ln in lines if re.match(stamp, ln)]
    hydra = sum("[HYDRA]" in ln for ln in stamped)
    print(
        f"lines with a time stamp: {len(stamped)} ({hydra} Hydra's), without: "
        f"{len(lines) - len(stamped)} (trainlab's lines: {sum('[trainlab' in ln for ln in lines)})"
    )
    if args.untagged:
        untagged = [ln for ln in lines if ln and not re.search(args.untagged, ln)]
        print(f"lines without a job tag ({args.untagged!r}): {len(untagged)} of {len(lines)}")
    if args.out_dir is not None:
        found = ansi_in_files(args.out_dir) if args.out_dir.is_dir() else {}
        total = sum(found.values())
        print(f"ANSI escape codes in files under {args.out_dir}: {total} in {len(found)} files")
        for name, n in list(found.items())[:5]:
            print(f"  {name}: {n}")
    sys.exit(0)


if __name__ == "__main__":
    main()
