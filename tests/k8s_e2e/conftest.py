"""Session fixtures of the end-to-end tests against a real Kubernetes 1.20 API server.

The control plane is started once per session (about 6-15 s) and stopped at its end. The service
is deployed from k8s/ as an operator would, as far as 1.20 serves it: the namespace, both
ServiceAccounts, the Role and RoleBinding, the volume claims. Without a build, every test here
skips with the reason (see controlplane.missing_build_reason).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from tests.k8s.tools import K8S
from tests.k8s_e2e.controlplane import STAMP, ControlPlane, missing_build_reason
from tests.k8s_e2e.fake_kubelet import FakeKubelet, wait_until

NAMESPACE = "transfer-serving"
SERVER_ACCOUNT = "transfer-serving"
DEPLOYED = ["namespace.yaml", "serviceaccounts.yaml", "rbac.yaml", "pvc.yaml"]
_timings: dict[str, float] = {}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    reason = missing_build_reason()
    if reason:
        pytest.skip(reason)
    # `make k8s-e2e` names the run directory, so that its trap can stop what this session started
    # even if pytest itself is killed.
    run_dir = Path(os.environ["K8S_RUN"]) if os.environ.get("K8S_RUN") else tmp_path_factory.mktemp("k8s-run")
    plane = ControlPlane(run_dir)
    try:
        plane.start()
        _timings["control plane start (s)"] = plane.start_seconds
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def deployed(cluster: ControlPlane) -> ControlPlane:
    """k8s/ applied as far as the retrain API needs it, and the controllers seen working."""
    for name in DEPLOYED:
        cluster.kubectl("apply", "-f", str(K8S / name))
    # The ServiceAccount controller of kube-controller-manager fills every namespace with `default`.
    wait_until(lambda: cluster.kubectl("-n", NAMESPACE, "get", "serviceaccount", "default",
                                       check=False).returncode == 0, 60, "the ServiceAccount controller")
    return cluster


@pytest.fixture(scope="session")
def server_token(deployed: ControlPlane) -> str:
    """The token the server's pod would carry: its ServiceAccount's, from the TokenRequest API."""
    return deployed.service_account_token(NAMESPACE, SERVER_ACCOUNT)


@pytest.fixture(scope="session")
def server_kubeconfig(deployed: ControlPlane, server_token: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return deployed.kubeconfig_for(server_token, tmp_path_factory.mktemp("sa") / "kubeconfig")


@pytest.fixture(scope="session")
def kubelet(deployed: ControlPlane) -> FakeKubelet:
    fake = FakeKubelet(deployed.api_client(), NAMESPACE)
    fake.register_node()
    return fake


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """They need a real control plane: `slow`, so `make test-fast` leaves them out."""
    for item in items:
        if "k8s_e2e" in item.nodeid:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the issue asks for: build (from the cache stamp) and start-up times."""
    if _timings and STAMP.exists():
        terminalreporter.write_line(f"k8s e2e: control plane {STAMP.read_text().strip()} ({STAMP.parent})")
    for what, seconds in _timings.items():
        terminalreporter.write_line(f"k8s e2e: {what}: {seconds:.1f}")
