"""One real server (REST + gRPC, tiny model) shared by the fuzz tests, and the model's own answer.

`direct(data)` calls the served SavedModel in this process on the same encoded bytes: a server
answer for an image must equal it. `alive()` checks the worker is the same process as at start
and still answers /healthz, so a crash-and-respawn by gunicorn cannot go unnoticed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf

from bench.processes import children
from tests.helpers import export_tiny
from tests.server_process import ServerHandle, start_server


def worker_pids(handle: ServerHandle) -> list[int]:
    """The gunicorn master's workers (a dead worker is replaced under a new pid)."""
    return sorted(children(handle.proc.pid))


@pytest.fixture(scope="package")
def version_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("fuzz-models") / "tiny", seed=3)


@pytest.fixture(scope="package")
def server(version_dir: Path) -> Iterator[ServerHandle]:
    with start_server("--model-name", "tiny", "--model-base-path", str(version_dir.parent),
                      "--max-request-bytes", str(4 * 1024 * 1024), "--max-image-pixels", "25000000") as handle:
        handle.workers = worker_pids(handle)
        assert len(handle.workers) == 1
        yield handle


@pytest.fixture(scope="package")
def channel(server: ServerHandle) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target, options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024)]) as chan:
        yield chan


@pytest.fixture(scope="package")
def direct(version_dir: Path) -> Callable[[bytes], np.ndarray | None]:
    """Probabilities [C] of the SavedModel on one encoded image, or None if the model refuses it."""
    function = tf.saved_model.load(str(version_dir)).signatures["serving_default"]

    def run(data: bytes) -> np.ndarray | None:
        try:
            return function(image_bytes=tf.constant([data]))["probabilities"].numpy()[0]
        except tf.errors.InvalidArgumentError:
            return None

    return run


@pytest.fixture()
def alive(server: ServerHandle) -> Callable[[], None]:
    def check() -> None:
        assert server.proc.poll() is None, server.log()[-3000:]
        assert worker_pids(server) == server.workers, "the worker died and was replaced"
        assert requests.get(server.rest_url + "/healthz", timeout=10).status_code == 200

    return check
