"""Server processes under test: start, wait until ready, read RSS and CPU, stop. The one harness
of the tests, the benchmarks and the chaos run.

`ServerProcess` runs any system from its command line. `ServingProcess` (via `start_serving`) runs
ours, `python -m serving`, on loopback ports that the server binds itself and reports: asked for
`any`, the kernel picks them when the server binds, and the server writes them to its --port-file.
A port picked beforehand and passed on is a race (another process may bind it first: a suite run
beside another server failed on "Address already in use"); `free_port` is left for third-party
peers that cannot report their port and for tests that occupy a port on purpose.

Each system runs in its own session (process group) so that stopping it ends exactly the
processes this harness started (gunicorn master and workers, uvicorn), nothing else.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Self, Sequence

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# Our server's environment under the harness: its log complete when read, TensorFlow's C++ notices out.
SERVING_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now: for third-party peers that cannot
    report the port they bound. Racy by nature: another process may bind it before the peer does.
    Never for our server (ServingProcess: it binds `any` and reports)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str, timeout: float = 2.0) -> int:
    """GET url -> HTTP status; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


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
    """One system under test, launched from `command` with its stdout and stderr in `log_path`."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:   # the child keeps its own handle; this one is not needed
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)

    def wait_ready(self, is_ready: Callable[[], bool], timeout: float) -> None:
        """Poll `is_ready` until true; raise with the log's tail if the process dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if is_ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

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

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM to the process group (graceful), SIGKILL if it lingers. Returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        return self.proc.poll()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()



class ServingProcess(ServerProcess):
    """Our server, `python -m serving`, on 127.0.0.1 ports it binds itself and reports.

    Both ports are `any` unless `ports` names them (a restart coming back where its clients look;
    gRPC 0 or grpc=False: no gRPC server). The port file sits beside the log (`x.log` ->
    `x.ports.json`) and is removed here before the launch, so `wait_bound` cannot read an earlier
    run's ports before the server has removed them itself. `rest_port`/`grpc_port` are 0 until
    the ports are known (`ports`, or `wait_bound`)."""

    def __init__(self, args: Sequence[str], log_path: Path, *, name: str = "serving", grpc: bool = True,
                 ports: tuple[int, int] | None = None, env: Mapping[str, str] | None = None) -> None:
        self.port_file = log_path.with_suffix(".ports.json")
        self.port_file.unlink(missing_ok=True)
        asked = ports or ("any", "any" if grpc else 0)
        command = [sys.executable, "-m", "serving", "--host", HOST, "--rest-port", str(asked[0]),
                   "--grpc-port", str(asked[1]), "--port-file", str(self.port_file), *args]
        super().__init__(name, command, log_path, env={**SERVING_ENV, **(env or {})}, cwd=REPO)
        self.rest_port, self.grpc_port = ports or (0, 0)

    @property
    def rest_url(self) -> str:
        return f"http://{HOST}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        """host:port of the gRPC server; "" when it runs none."""
        return f"{HOST}:{self.grpc_port}" if self.grpc_port else ""

    def wait_bound(self, timeout: float) -> None:
        """Until the server has written its port file: both ports bound (not yet ready)."""
        self.wait_ready(self._read_port_file, timeout)

    def _read_port_file(self) -> bool:
        try:
            ports = json.loads(self.port_file.read_text())   # written whole (rename) or not at all
        except FileNotFoundError:
            return False
        self.rest_port, self.grpc_port = int(ports["rest_port"]), int(ports["grpc_port"])
        return True

    def answers(self, path: str) -> bool:
        """GET path on the REST port answers 200 now."""
        return http_status(self.rest_url + path) == 200

    def wait_ok(self, path: str = "/readyz", timeout: float = 60.0) -> None:
        """Until GET path answers 200 (/readyz: ready; /healthz: alive, models or not)."""
        self.wait_ready(lambda: self.answers(path), timeout)

    def worker_rss_bytes(self) -> int:
        """RSS of the gunicorn worker(s): the process that holds the models (not the master)."""
        return sum(1024 * _status_kb(pid, "VmRSS") for pid in self.pids() if pid != self.proc.pid)


def answering(path: str) -> Callable[[ServingProcess], bool]:
    """A `ready` test for start_serving: GET path answers 200."""
    return lambda server: server.answers(path)


def start_serving(args: Sequence[str], log_path: Path, *, ready: Callable[[ServingProcess], bool] = answering("/readyz"),
                  timeout: float = 90.0, name: str = "serving", grpc: bool = True,
                  ports: tuple[int, int] | None = None, env: Mapping[str, str] | None = None) -> ServingProcess:
    """Launch our server with `args` (ServingProcess), wait until its ports are bound and `ready`
    holds, all within `timeout` seconds, and return it. Raises with the log's tail if it exits or
    times out, after stopping it: a failed start leaves no process behind."""
    server = ServingProcess(args, log_path, name=name, grpc=grpc, ports=ports, env=env)
    deadline = time.monotonic() + timeout
    try:
        server.wait_bound(timeout)
        server.wait_ready(lambda: ready(server), deadline - time.monotonic())
    except BaseException:
        server.stop()
        raise
    return server
