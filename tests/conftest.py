"""Suite-wide settings: quiet TensorFlow, and the repository root for subprocesses."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYTHONHASHSEED", "0")

REPO = Path(__file__).resolve().parent.parent
MATERIALS = REPO / "materials"


SERVING_RUNTIMES = ("tensorflow", "litert")


@pytest.fixture(scope="session", params=SERVING_RUNTIMES)
def serving_runtime(request: pytest.FixtureRequest) -> str:
    """The runtime a server-level test runs on: the tests that take it run on each (`litert`
    insists, so a fallback to TensorFlow fails the load instead of passing silently)."""
    return request.param
