"""The systems under test and how each is launched, probed and loaded.

- ours: `python -m serving` (gunicorn + Flask REST, gRPC in the same worker, one model copy).
- naive: Flask on one gunicorn sync worker, one model call per request (bench/naive_server.py).
- kserve: KServe's Python model server in its own venv (bench/peer_kserve.py).
- floor: our REST stack with no model (bench/floor_server.py): the HTTP cost per request.

A `Row` is one line of the results table: a system, a protocol/API and how to drive it.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench import loadgen
from bench.processes import ServerProcess, ServingProcess, free_port, http_json, start_serving
from bench.workload import REPO, WORK, Workload

PYTHON = sys.executable
KSERVE_VENV = WORK / "kserve-venv"
KSERVE_PIP = ["kserve==0.21.0", "tensorflow==2.21.0"]


@dataclass
class Row:
    system: str
    api: str
    run: Callable[[int, float, float], loadgen.LoadResult]  # (concurrency, seconds, warmup)
    probe: Callable[[], str]  # one request, checked; returns a short description of the answer


def _post(url: str, body: bytes, content_type: str) -> dict:
    request = urllib.request.Request(url, body, {"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _check_predict(url: str, body: bytes, classes: int) -> str:
    answer = _post(url, body, "application/json")
    first = answer["predictions"][0]
    probabilities = first["probabilities"] if isinstance(first, dict) else first
    if len(probabilities) != classes or abs(sum(probabilities) - 1) > 1e-3:
        raise AssertionError(f"{url}: unexpected predictions {str(answer)[:200]}")
    return f"{classes} probabilities"


def _check_classify_image(url: str, body: bytes) -> str:
    answer = _post(url, body, "image/jpeg")
    if not answer.get("predictions") or "label" not in answer["predictions"][0]:
        raise AssertionError(f"{url}: unexpected answer {str(answer)[:200]}")
    return f"top label {answer['predictions'][0]['label']}"


def _check_grpc(target: str, request, classes: int) -> str:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    shape = [d.size for d in response.outputs["probabilities"].tensor_shape.dim]
    if shape != [1, classes]:
        raise AssertionError(f"gRPC Predict: probabilities shape {shape}")
    return f"probabilities {shape}"


def http_rows(system: str, api: str, url: str, bodies: list[bytes], content_type: str,
              check: Callable[[], str]) -> Row:
    def run(concurrency: int, seconds: float, warmup: float) -> loadgen.LoadResult:
        return asyncio.run(loadgen.run_http(url, bodies, content_type, concurrency, seconds, warmup))
    return Row(system, api, run, check)


def grpc_row(system: str, target: str, requests: list, classes: int) -> Row:
    def run(concurrency: int, seconds: float, warmup: float) -> loadgen.LoadResult:
        return asyncio.run(loadgen.run_grpc(target, requests, concurrency, seconds, warmup))
    return Row(system, "gRPC Predict", run, lambda: _check_grpc(target, requests[0], classes))


def predict_row(system: str, api: str, base_url: str, workload: Workload, classes: int) -> Row:
    url = f"{base_url}/v1/models/{workload.name}:predict"
    bodies = loadgen.predict_bodies(workload.images)
    return http_rows(system, api, url, bodies, "application/json", lambda: _check_predict(url, bodies[0], classes))


# --- ours ---------------------------------------------------------------------------------------

def version_states(rest_url: str, name: str) -> dict[int, str]:
    """{version: state} from TF Serving's REST model status."""
    status, body = http_json(f"{rest_url}/v1/models/{name}")
    if status != 200 or not isinstance(body, dict):
        return {}
    return {int(s["version"]): s["state"] for s in body.get("model_version_status", [])}


def start_ours(workload: Workload, logs: Path, tag: str, extra_args: list[str], env: dict[str, str] | None = None,
               poll_interval: float = 0.5) -> tuple[ServingProcess, str, str]:
    """Our server on ports it binds and reports; returns (process, REST base URL, gRPC target)
    once v1 is AVAILABLE."""
    server = start_serving(["--model-name", workload.name, "--model-base-path", str(workload.base_path),
                            "--poll-interval", str(poll_interval), *extra_args], logs / f"ours-{tag}.log",
                           ready=lambda s: version_states(s.rest_url, workload.name).get(1) == "AVAILABLE",
                           timeout=180, name=f"ours ({tag})", env=env)
    return server, server.rest_url, server.grpc_target


def our_rows(url: str, target: str, workload: Workload, classes: int, system: str = "ours") -> list[Row]:
    classify_url = f"{url}/v1/models/{workload.name}:classify_image"
    raw = workload.images
    return [
        predict_row(system, "REST :predict b64", url, workload, classes),
        http_rows(system, "REST :classify_image raw", classify_url, raw, "image/jpeg",
                  lambda: _check_classify_image(classify_url, raw[0])),
        grpc_row(system, target, loadgen.grpc_predict_requests(workload.name, raw), classes),
    ]


def served_runtime(rest_url: str, name: str) -> dict:
    """The runtime our server reports for the newest AVAILABLE version (model status)."""
    status, body = http_json(f"{rest_url}/v1/models/{name}")
    for entry in body.get("model_version_status", []) if status == 200 and isinstance(body, dict) else []:
        if entry["state"] == "AVAILABLE":
            return entry.get("runtime") or {}
    return {}


# --- naive --------------------------------------------------------------------------------------

def start_naive(workload: Workload, logs: Path) -> tuple[ServerProcess, str]:
    port = free_port()
    command = [str(Path(PYTHON).parent / "gunicorn"), "--workers", "1", "--worker-class", "sync",
               "--bind", f"127.0.0.1:{port}", "--timeout", "120", "bench.naive_server:create_app()"]
    server = ServerProcess("naive", command, logs / "naive.log", cwd=REPO,
                           env={"NAIVE_MODEL_DIR": str(workload.version_dir)})
    url = f"http://127.0.0.1:{port}"
    server.wait_ready(lambda: http_json(f"{url}/healthz")[0] == 200, timeout=120)
    return server, url


# --- floor -------------------------------------------------------------------------------------

FLOOR_API = "REST :predict b64, no model"


def floor_row(base_url: str, workload: Workload) -> Row:
    """The same bodies as ours' `:predict` row, against the floor; its answer is a constant."""
    url = f"{base_url}/v1/models/{workload.name}:predict"
    bodies = loadgen.predict_bodies(workload.images)

    def check() -> str:
        answer = _post(url, bodies[0], "application/json")
        if len(answer.get("predictions", [])) != 1:
            raise AssertionError(f"{url}: unexpected answer {str(answer)[:200]}")
        return "one constant prediction"
    return http_rows("floor", FLOOR_API, url, bodies, "application/json", check)


def start_floor(logs: Path) -> tuple[ServerProcess, str]:
    """bench/floor_server.py on gunicorn with the worker settings of ours (serving/server.py)."""
    port = free_port()
    command = [str(Path(PYTHON).parent / "gunicorn"), "--workers", "1", "--worker-class", "gthread",
               "--threads", "32", "--keep-alive", "5", "--no-control-socket",
               "--bind", f"127.0.0.1:{port}", "bench.floor_server:create_app()"]
    server = ServerProcess("floor", command, logs / "floor.log", cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    server.wait_ready(lambda: http_json(f"{url}/healthz")[0] == 200, timeout=60)
    return server, url


# --- kserve -------------------------------------------------------------------------------------

def kserve_python(install: bool) -> Path | None:
    """The peer venv's python; created (kserve + tensorflow, ~2-4 min from the pip cache) if allowed."""
    python = KSERVE_VENV / "bin" / "python"
    ready = python.exists() and subprocess.run([str(python), "-c", "import kserve, tensorflow"],
                                               capture_output=True).returncode == 0
    if ready or not install:
        return python if ready else None
    subprocess.run(["python3.11", "-m", "venv", str(KSERVE_VENV)], check=True)
    subprocess.run([str(KSERVE_VENV / "bin" / "pip"), "install", "-q", *KSERVE_PIP], check=True)
    return python


def start_kserve(python: Path, workload: Workload, logs: Path) -> tuple[ServerProcess, str]:
    port = free_port()
    command = [str(python), str(REPO / "bench" / "peer_kserve.py"), "--model_name", workload.name,
               "--model_dir", str(workload.version_dir), "--http_port", str(port), "--enable_grpc", "false",
               "--enable_latency_logging", "false"]
    server = ServerProcess("kserve", command, logs / "kserve.log", cwd=REPO, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    url = f"http://127.0.0.1:{port}"
    server.wait_ready(lambda: (http_json(f"{url}/v1/models/{workload.name}")[1] or {}).get("ready") is True,
                      timeout=180)
    return server, url
