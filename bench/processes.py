"""Server processes under test: start on free loopback ports, wait until ready, read RSS, stop.

Each system runs in its own session (process group) so that stopping it ends exactly the
processes this benchmark started (gunicorn master and workers, uvicorn), nothing else.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the one copy; tests use it too).
    Racy by nature: another process may bind it before the caller's server does."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(url: str, timeout: float = 5.0) -> tuple[int, object]:
    """GET url -> (status, parsed JSON or None); (0, None) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None
    except (OSError, ValueError):
        return 0, None


def children(pid: int) -> list[int]:
    """Direct child pids of `pid`, from /proc (empty once it has none or is gone)."""
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ServerProcess:
    """One system under test, launched from `command` with its log in `log_path`."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)

    def wait_ready(self, is_ready: Callable[[], bool], timeout: float) -> None:
        """Poll `is_ready` until true; raise with the log's tail if the process dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if is_ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def pids(self) -> list[int]:
        """The launched process and all its descendants."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children(pid)
        return found

    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree now."""
        return 1024 * sum(_status_kb(pid, "VmRSS") for pid in self.pids())

    def peak_rss_bytes(self) -> int:
        """Sum of each process's high-water mark (VmHWM): the tree's peak, or a little above it."""
        return 1024 * sum(_status_kb(pid, "VmHWM") for pid in self.pids())

    def cpu_seconds(self) -> float:
        """User + system CPU time of the live process tree so far (what the server has cost)."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue                      # exited between the listing and the read
            total += int(fields[11]) + int(fields[12])   # utime, stime (clock ticks)
        return total / CLOCK_TICKS

    def largest_process_rss(self) -> tuple[int, int]:
        """(pid, RSS bytes) of the biggest process: the one holding the model."""
        return max(((pid, 1024 * _status_kb(pid, "VmRSS")) for pid in self.pids()), key=lambda x: x[1])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the process group (graceful), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self._log.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
