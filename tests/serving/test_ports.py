"""Issue 20: our server binds ports the kernel picks (`--rest-port any --grpc-port any`) and reports
them in --port-file once both are bound, so nobody picks a port for it beforehand, a race with
every other process on the machine. The harness (bench.processes) reads them back."""
from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.processes import SERVING_ENV, ServerProcess, answering, http_status, start_serving
from tests.conftest import REPO

STALE = {"rest_port": 1, "grpc_port": 2}


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_any_ports_are_reported_once_bound_and_answer(tiny_base: Path, tmp_path: Path) -> None:
    port_file = tmp_path / "ports.json"
    port_file.write_text(json.dumps(STALE))       # an earlier run's: never to be taken for this one's
    command = [sys.executable, "-m", "serving", "--model-name", "tiny", "--model-base-path", str(tiny_base),
               "--host", "127.0.0.1", "--rest-port", "any", "--grpc-port", "any", "--port-file", str(port_file)]
    seen: list[dict[str, int]] = []

    def reported() -> bool:
        """True once this run's file is there; both ports must accept at first sight of it."""
        ports = json.loads(port_file.read_text()) if port_file.exists() else STALE
        if ports != STALE:
            seen.append({**ports, "rest_accepts": _accepts(ports["rest_port"]),
                         "grpc_accepts": _accepts(ports["grpc_port"])})
        return bool(seen)

    with ServerProcess("serving", command, tmp_path / "server.log", env=SERVING_ENV, cwd=REPO) as server:
        server.wait_ready(reported, 90)
        rest, grpc_port = seen[0]["rest_port"], seen[0]["grpc_port"]
        assert seen[0]["rest_accepts"] and seen[0]["grpc_accepts"], seen
        assert rest > 0 and grpc_port > 0 and rest != grpc_port
        assert http_status(f"http://127.0.0.1:{rest}/healthz") == 200
        server.wait_ready(lambda: http_status(f"http://127.0.0.1:{rest}/readyz") == 200, 60)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert f"REST listening on 127.0.0.1:{rest}" in server.log()
        assert f"gRPC listening on 127.0.0.1:{grpc_port}" in server.log()
        assert server.stop() == 0


def test_harness_reads_the_ports_back_and_restarts_on_them(tiny_base: Path, tmp_path: Path) -> None:
    args = ["--model-name", "tiny", "--model-base-path", str(tiny_base)]
    with start_serving(args, tmp_path / "first.log", grpc=False) as first:
        assert first.rest_port > 0 and first.grpc_port == 0 and first.grpc_target == ""
        assert json.loads(first.port_file.read_text()) == {"rest_port": first.rest_port, "grpc_port": 0}
        assert first.answers("/readyz")
    # what the chaos run's restart does: a new process on the ports the last one bound
    with start_serving(args, tmp_path / "second.log", grpc=False, ports=(first.rest_port, 0),
                       ready=answering("/healthz")) as second:
        assert second.rest_url == first.rest_url and second.answers("/healthz")
