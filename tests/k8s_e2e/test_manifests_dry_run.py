"""Server-side dry run of k8s/ against a real kube-apiserver v1.20.2.

Everything 1.20 serves goes through `kubectl apply --dry-run=server` (kubectl v1.20.2 of the same
build, so its client-side validation uses this server's OpenAPI schema): admission, defaulting
and validation run, nothing is stored. What 1.20 cannot serve is listed below with the version it
needs; the test proves each entry is really unserved and that docs/deploy.md lists it.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from tests.conftest import REPO
from tests.k8s.tools import K8S
from tests.k8s_e2e.conftest import NAMESPACE
from tests.k8s_e2e.controlplane import ControlPlane

# (apiVersion, kind) -> what serves it. docs/deploy.md carries the same list.
NOT_SERVED_KINDS = {
    ("batch/v1", "CronJob"): "Kubernetes 1.21",
    ("policy/v1", "PodDisruptionBudget"): "Kubernetes 1.21",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "Kubernetes 1.23",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "the Prometheus Operator CRDs",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "the Prometheus Operator CRDs",
}
# A kind 1.20 serves, with a field it does not know: (kind, name) -> (field, what serves it).
NOT_SERVED_FIELDS = {("Job", "train-multiworker"): ("completionMode", "Kubernetes 1.22")}


def rendered(cluster: ControlPlane, directory: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` of kubectl 1.20 (kustomize v2), as an operator of 1.20 would run it."""
    output = cluster.kubectl("kustomize", str(K8S / directory)).stdout
    return [d for d in yaml.safe_load_all(output) if d]


def all_documents(cluster: ControlPlane) -> list[dict[str, Any]]:
    template = yaml.safe_load((K8S / "trainer" / "job-template.yaml").read_text())
    template["metadata"]["namespace"] = NAMESPACE   # the backend sets it when it creates a Job
    return rendered(cluster, ".") + rendered(cluster, "multiworker") + [template]


def unserved(doc: dict[str, Any]) -> bool:
    return ((doc["apiVersion"], doc["kind"]) in NOT_SERVED_KINDS
            or (doc["kind"], doc["metadata"]["name"]) in NOT_SERVED_FIELDS)


def dry_run(cluster: ControlPlane, docs: list[dict[str, Any]], check: bool = True):
    return cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs), check=check)


def test_everything_1_20_serves_passes_a_server_side_dry_run(deployed: ControlPlane) -> None:
    docs = [d for d in all_documents(deployed) if not unserved(d)]
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim", "Deployment",
            "Service", "NetworkPolicy", "ConfigMap", "Job"} <= kinds
    lines = dry_run(deployed, docs).stdout.splitlines()
    # kubectl 1.20 prints one line per object: `<kind>.<group>/<name> <verb> (server dry run)`.
    assert len(lines) == len(docs), lines
    for doc, line in zip(docs, lines):
        assert re.fullmatch(rf"{doc['kind'].lower()}(\.[a-z0-9.]+)?/{re.escape(doc['metadata']['name'])} "
                            r"(created|configured|unchanged) \(server dry run\)", line), line
    # A dry run stores nothing: the Deployment and the trainer template Job do not exist.
    for kind, name in (("deployment", "transfer-serving"), ("job", "retrain-template")):
        result = deployed.kubectl("-n", NAMESPACE, "get", kind, name, check=False)
        assert result.returncode != 0 and "NotFound" in result.stderr, result.stdout


def test_the_dry_run_really_validates_on_the_server(deployed: ControlPlane) -> None:
    """An object the schema accepts but the API server's validation refuses is refused."""
    (deployment,) = [d for d in all_documents(deployed) if d["kind"] == "Deployment"]
    deployment["spec"]["replicas"] = -1
    result = dry_run(deployed, [deployment], check=False)
    assert result.returncode != 0 and "spec.replicas: Invalid value: -1" in result.stderr, result.stderr


def test_the_unserved_list_is_exact_and_documented(deployed: ControlPlane) -> None:
    docs = all_documents(deployed)
    found = {(d["apiVersion"], d["kind"]) for d in docs} & set(NOT_SERVED_KINDS)
    assert found == set(NOT_SERVED_KINDS), "an entry matches no manifest any more"
    for api_version, kind in NOT_SERVED_KINDS:
        result = dry_run(deployed, [d for d in docs if (d["apiVersion"], d["kind"]) == (api_version, kind)],
                         check=False)
        assert result.returncode != 0 and f'no matches for kind "{kind}" in version "{api_version}"' \
            in result.stderr, result.stderr
    (job,) = [d for d in docs if (d["kind"], d["metadata"]["name"]) in NOT_SERVED_FIELDS]
    field, _ = NOT_SERVED_FIELDS[(job["kind"], job["metadata"]["name"])]
    result = dry_run(deployed, [job], check=False)
    assert result.returncode != 0 and f"unknown field \"{field}\"" in result.stderr, result.stderr

    deploy_md = (REPO / "docs" / "deploy.md").read_text()
    for (api_version, kind), needs in NOT_SERVED_KINDS.items():
        assert f"| {kind} (`{api_version}`) | {needs} |" in deploy_md
    for (kind, name), (field, needs) in NOT_SERVED_FIELDS.items():
        assert f"| {kind} `{name}` (`{field}`) | {needs} |" in deploy_md
