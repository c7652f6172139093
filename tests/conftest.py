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


# What `make test-fast` (`-m "not slow"`, under 2 minutes) leaves out; `make test` runs it all.
# Suites that install Debian or pip packages (monitoring's Prometheus stack, the Kubernetes schema
# tools) or run for minutes (chaos, the bench smoke test, the retrain end to end, training runs in
# subprocesses, hot swaps and shutdowns waited out in real time, the forced stage-2 collapse, the
# schemathesis fuzz of every operation, the browser, server restarts on reported ports, the two
# servers of the runtimes' equal-answers test), and every test that needs the session's real
# training run (the `tiny_run` fixture, ~90 s).
SLOW_PATHS = (
    "tests/monitoring/",
    "tests/chaos/",
    "tests/bench/",
    "tests/k8s/test_manifests.py",
    "tests/k8s/test_kube_backend.py",
    "tests/k8s/test_distributed.py",
    "tests/retrain/test_retrain_e2e.py",
    "tests/trainer/test_processes.py",
    "tests/trainer/test_real_backbone.py",
    "tests/trainer/test_train.py::test_train_twice",
    "tests/trainer/test_stage_choice.py::test_a_collapsed_stage2_is_not_exported",
    "tests/serving/test_schemathesis.py",
    "tests/web/",
    "tests/serving/test_ports.py",
    "tests/serving/test_manager.py::test_specific_policy_and_latest_n",
    "tests/serving/test_manager.py::test_labels_and_all_policy_route_to_their_versions",
    "tests/serving/test_manager.py::test_failed_load_keeps_last_good_version_and_retries_when_fixed",
    "tests/serving/test_manager.py::test_swap_waits_for_in_flight_requests_on_the_old_version",
    "tests/serving/test_inference_runtime.py::test_both_runtimes_give_the_same_answers_over_rest_and_grpc",
    "tests/serving/test_lifecycle.py",
    "tests/grpc/test_lifecycle.py",
    "tests/test_tensorflow_logs.py",
)
SLOW_FIXTURES = {"tiny_run"}


def pytest_collection_modifyitems(config, items) -> None:
    """Mark `slow` every test under SLOW_PATHS or using SLOW_FIXTURES (one list, not a marker per file)."""
    for item in items:
        if item.nodeid.startswith(SLOW_PATHS) or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
