"""Start the real server (`python -m serving`, gunicorn) as a subprocess for tests.

    with start_server("--model-name", "tiny", "--model-base-path", str(path)) as server:
        requests.get(server.rest_url + "/v1/models/tiny")
        grpc.insecure_channel(server.grpc_target)

Ports are free loopback ports picked here (REST and gRPC; pass `grpc=False` for --grpc-port 0).
`start_server` waits until /readyz answers 200 (or `wait_ready=False`: until /healthz answers),
and raises with the server's log if it exits or times out. `stop()` sends SIGTERM and waits.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Mapping

import requests

from bench.processes import free_port

REPO = Path(__file__).resolve().parent.parent


class ServerHandle:
    """A running server subprocess; usable as a context manager (stops on exit)."""

    def __init__(self, proc: subprocess.Popen, rest_port: int, grpc_port: int, log_path: Path) -> None:
        self.proc = proc
        self.rest_port = rest_port
        self.grpc_port = grpc_port
        self.rest_url = f"http://127.0.0.1:{rest_port}"
        self.grpc_target = f"127.0.0.1:{grpc_port}" if grpc_port else ""
        self.log_path = log_path

    def log(self) -> str:
        """Everything the server wrote to stdout/stderr so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0, path: str = "/readyz") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if requests.get(self.rest_url + path, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful), then wait; SIGKILL if it does not exit in time. Returns exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(*server_args: str, env: Mapping[str, str] | None = None, grpc: bool = True,
                 wait_ready: bool = True, timeout: float = 90.0) -> ServerHandle:
    """Launch `python -m serving` with server_args on free loopback ports."""
    rest_port, grpc_port = free_port(), (free_port() if grpc else 0)
    log_file = tempfile.NamedTemporaryFile(prefix="serving-", suffix=".log", delete=False)
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, "-m", "serving", "--host", "127.0.0.1", "--rest-port", str(rest_port),
               "--grpc-port", str(grpc_port), *server_args]
    proc = subprocess.Popen(command, cwd=REPO, env=full_env, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log_file.close()
    handle = ServerHandle(proc, rest_port, grpc_port, Path(log_file.name))
    try:
        handle.wait_ready(timeout, "/readyz" if wait_ready else "/healthz")
    except BaseException:
        handle.stop()
        raise
    return handle


class ClassifyLoop(threading.Thread):
    """A client classifying one image in a loop while something else happens (a hot swap, a
    retrain): every status code, answering version and failure is kept for the test to judge."""

    def __init__(self, url: str, image: bytes, model: str = "tiny", pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.url, self.image, self.model, self.pause = url, image, model, pause
        self.stop_flag = threading.Event()
        self.statuses: list[int] = []
        self.versions: list[int] = []
        self.failures: list[str] = []

    def run(self) -> None:
        session = requests.Session()
        while not self.stop_flag.is_set():
            try:
                answer = session.post(f"{self.url}/v1/models/{self.model}:classify_image", data=self.image,
                                      headers={"Content-Type": "image/jpeg"}, timeout=60)
                self.statuses.append(answer.status_code)
                if answer.status_code == 200:
                    self.versions.append(answer.json()["version"])
                else:
                    self.failures.append(f"{answer.status_code} {answer.text}")
            except requests.RequestException as error:
                self.failures.append(repr(error))
            time.sleep(self.pause)

    def wait_for_version(self, version: int, timeout: float) -> float:
        """Seconds until the newest answer came from `version`; AssertionError after timeout."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.versions and self.versions[-1] == version:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"version {version} not served after {timeout}s (last: {self.versions[-3:]})")
