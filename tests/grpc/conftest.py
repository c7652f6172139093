"""One real server (`python -m serving`, gunicorn + gRPC) on two tiny versions, shared by the
gRPC tests, and the SavedModels loaded directly in this process as the reference outputs."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import grpc
import pytest
import requests
import tensorflow as tf
import yaml

from tests.helpers import export_tiny
from tests.server_process import ServerHandle, start_server

MODEL = "tiny"
MAX_MESSAGE_BYTES = 256 * 1024


@pytest.fixture(scope="package")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Versions 1 and 2 of `tiny` (different weights, so answers tell versions apart)."""
    base = tmp_path_factory.mktemp("grpc-models") / MODEL
    return {1: export_tiny(base, seed=1, model_name=MODEL), 2: export_tiny(base, seed=2, model_name=MODEL)}


@pytest.fixture(scope="package")
def server(model_dirs: dict[int, Path], tmp_path_factory: pytest.TempPathFactory,
           serving_runtime: str) -> Iterator[ServerHandle]:
    """Both versions served (policy all), labels stable -> 1 and canary -> 2, on each runtime."""
    config = tmp_path_factory.mktemp("grpc-config") / "models.yaml"
    config.write_text(yaml.safe_dump({"models": [{
        "name": MODEL, "base_path": str(model_dirs[1].parent), "version_policy": "all",
        "version_labels": {"stable": 1, "canary": 2}, "runtime": serving_runtime}]}))
    with start_server("--model-config-file", str(config), "--poll-interval", "0.5",
                      "--grpc-max-message-bytes", str(MAX_MESSAGE_BYTES)) as handle:
        wait_until_available(handle, set(model_dirs))
        yield handle


def wait_until_available(handle: ServerHandle, versions: set[int], timeout: float = 60.0) -> None:
    """Ready means one version is up; these tests need every version AVAILABLE."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = requests.get(f"{handle.rest_url}/v1/models/{MODEL}", timeout=10).json()["model_version_status"]
        if {int(s["version"]) for s in states if s["state"] == "AVAILABLE"} >= versions:
            return
        time.sleep(0.1)
    raise TimeoutError(f"versions {versions} not all AVAILABLE: {states}")


@pytest.fixture(scope="package")
def channel(server: ServerHandle) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as chan:
        grpc.channel_ready_future(chan).result(timeout=30)
        yield chan


@pytest.fixture(scope="package")
def direct(model_dirs: dict[int, Path]) -> dict[int, object]:
    """Each version's SavedModel called in this process: the reference for every answer."""
    return {version: tf.saved_model.load(str(path)) for version, path in model_dirs.items()}
