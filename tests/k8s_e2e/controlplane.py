"""The local Kubernetes 1.20 control plane of scripts/k8s/, driven from tests.

`ControlPlane.start()` runs scripts/k8s/start-controlplane.sh on free loopback ports with its run
state in a temporary directory (so two test sessions never share etcd), and `stop()` runs
stop-controlplane.sh, which ends exactly the processes the start script launched. The build is
not done here: it takes minutes, so `make k8s-controlplane` (or `make test`) does it once into the
cache, and tests skip with the reason when it is missing.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO
from bench.processes import free_port

SCRIPTS = REPO / "scripts" / "k8s"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transfer-serving" / "k8s-1.20"
K8S_HOME = Path(os.environ.get("K8S_HOME", CACHE))
BIN = K8S_HOME / "bin"
STAMP = BIN / ".complete"
BUILD_FAILURE = K8S_HOME / "build-failed.txt"   # written by `make k8s-controlplane-optional`


def missing_build_reason() -> str | None:
    """None when the control plane is built, else why the e2e tests cannot run."""
    if STAMP.exists():
        return None
    if BUILD_FAILURE.exists():
        return f"the Kubernetes 1.20 build failed: {BUILD_FAILURE.read_text().strip()[-600:]}"
    return (f"no Kubernetes 1.20 build in {BIN}: run `make k8s-controlplane` "
            f"(about 7-10 minutes on 2 cores), or `make k8s-e2e`")


@dataclass
class ControlPlane:
    """One running etcd + kube-apiserver + kube-controller-manager, reachable as admin."""

    run_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    start_seconds: float = 0.0

    @property
    def env(self) -> dict[str, str]:
        names = {"api": "K8S_API_PORT", "etcd": "K8S_ETCD_PORT", "peer": "K8S_ETCD_PEER_PORT", "kcm": "K8S_KCM_PORT"}
        return {**os.environ, "K8S_HOME": str(K8S_HOME), "K8S_RUN": str(self.run_dir),
                **{names[k]: str(v) for k, v in self.ports.items()}}

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['api']}"

    @property
    def ca_file(self) -> Path:
        return self.run_dir / "pki" / "ca.crt"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.run_dir / "pki" / "admin.kubeconfig"

    def start(self) -> None:
        self.ports = {name: free_port() for name in ("api", "etcd", "peer", "kcm")}
        started = time.monotonic()
        result = subprocess.run([str(SCRIPTS / "start-controlplane.sh")], env=self.env,
                                capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"start-controlplane.sh failed:\n{result.stdout}\n{result.stderr}")
        self.start_seconds = time.monotonic() - started

    def stop(self) -> str:
        return subprocess.run([str(SCRIPTS / "stop-controlplane.sh")], env=self.env,
                              capture_output=True, text=True, timeout=60).stdout

    def kubectl(self, *args: str, token: str | None = None, stdin: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
        """kubectl v1.20.2 of the same build: as admin, or with `token` as a bare bearer token."""
        auth = (["--kubeconfig", os.devnull, "--server", self.server, "--certificate-authority",
                 str(self.ca_file), "--token", token] if token else ["--kubeconfig", str(self.admin_kubeconfig)])
        result = subprocess.run([str(BIN / "kubectl"), *auth, *args], input=stdin, capture_output=True,
                                text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def api_client(self, token: str | None = None) -> Any:
        """An official-client ApiClient as admin, or as the holder of `token`."""
        from kubernetes import client, config

        if token is None:
            return config.new_client_from_config(config_file=str(self.admin_kubeconfig))
        configuration = client.Configuration(host=self.server, api_key={"authorization": f"Bearer {token}"})
        configuration.ssl_ca_cert = str(self.ca_file)
        return client.ApiClient(configuration)

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A token of the ServiceAccount from the TokenRequest API (what a pod's projected token is)."""
        from kubernetes import client

        body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=["https://kubernetes.default.svc.cluster.local"], expiration_seconds=seconds))
        core = client.CoreV1Api(self.api_client())
        return core.create_namespaced_service_account_token(name, namespace, body).status.token

    def kubeconfig_for(self, token: str, path: Path) -> Path:
        """A kubeconfig that authenticates with `token` only (no admin fallback)."""
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "local",
                  "clusters": [{"name": "local", "cluster": {"server": self.server,
                                                              "certificate-authority": str(self.ca_file)}}],
                  "users": [{"name": "sa", "user": {"token": token}}],
                  "contexts": [{"name": "local", "context": {"cluster": "local", "user": "sa"}}]}
        path.write_text(yaml.safe_dump(config))
        return path
