"""Shared fixtures of the serving tests: one tiny exported model, one real server on it."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import export_tiny
from tests.server_process import ServerHandle, start_server


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base path holding version 1 of the tiny model (a real trainer export)."""
    base = tmp_path_factory.mktemp("models") / "tiny"
    export_tiny(base, seed=1, model_name="tiny")
    return base


@pytest.fixture(scope="session")
def tiny_server(tiny_base: Path, serving_runtime: str) -> Iterator[ServerHandle]:
    """The real server (gunicorn, REST on a loopback port it binds and reports, gRPC off) on the
    tiny model, on each runtime."""
    with start_server("--model-name", "tiny", "--model-base-path", str(tiny_base), "--runtime", serving_runtime,
                      grpc=False) as server:
        yield server
