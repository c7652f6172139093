"""Run one command and leave its exit status in a file: the local backend's process wrapper.

The local backend starts `python -m serving.jobs.runner --exit-file F -- python -m trainer train ...`
in its own session. Writing the exit status to a file (instead of only the server waiting on the
child) is what lets a job outlive a server restart: the next server reads the file, and a runner
that vanished without writing it is known to have been killed.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def write_exit_file(path: Path, exit_code: int) -> None:
    """Atomically, so a reader never sees half a status."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"exit_code": exit_code, "finished_at": time.time()}))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    # A cancel (SIGTERM to the runner) reaches the trainer too, even one that arrives before the
    # trainer is started; its exit status is still recorded.
    child: subprocess.Popen | None = None
    terminated = False

    def forward(signum: int, frame: object) -> None:
        nonlocal terminated
        terminated = True
        if child is not None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    parser = argparse.ArgumentParser(prog="python -m serving.jobs.runner")
    parser.add_argument("--exit-file", required=True, type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    child = subprocess.Popen(command)
    if terminated:
        child.send_signal(signal.SIGTERM)
    exit_code = child.wait()
    write_exit_file(args.exit_file, exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
