"""Start the real server (`python -m serving`, gunicorn) as a subprocess for tests.

    with start_server("--model-name", "tiny", "--model-base-path", str(path)) as server:
        requests.get(server.rest_url + "/v1/models/tiny")
        grpc.insecure_channel(server.grpc_target)

The harness is bench.processes (`start_serving`, shared with the benchmarks and the chaos run):
the server binds loopback ports the kernel picks and reports them (pass `grpc=False` for
--grpc-port 0). `start_server` waits until /readyz answers 200 (or `wait_ready=False`: until
/healthz answers), and raises with the server's log if it exits or times out. The log is kept in
a temporary directory; `stop()` sends SIGTERM to the server's process group and waits (SIGKILL
if it lingers); a test of the shutdown itself signals `server.proc` as Kubernetes would.
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Mapping

import requests

from bench.processes import ServingProcess, answering, start_serving

ServerHandle = ServingProcess   # the name the tests give a running server


def start_server(*server_args: str, env: Mapping[str, str] | None = None, grpc: bool = True,
                 wait_ready: bool = True, timeout: float = 90.0) -> ServingProcess:
    """Launch `python -m serving` with server_args on ports it binds and reports."""
    log_path = Path(tempfile.mkdtemp(prefix="serving-")) / "server.log"
    return start_serving(server_args, log_path, ready=answering("/readyz" if wait_ready else "/healthz"),
                         timeout=timeout, grpc=grpc, env=env)


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
