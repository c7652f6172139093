"""The Role of k8s/rbac.yaml, as deployed, against the real authorizer of kube-apiserver v1.20.2.

The server's ServiceAccount (its token from the TokenRequest API) may make exactly the calls of
serving/jobs/kube.py in its namespace, and gets 403 for everything around them.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest

from tests.k8s_e2e.conftest import NAMESPACE
from tests.k8s_e2e.controlplane import ControlPlane

# What the kubernetes retrain backend calls: (API group, resource) -> verbs.
NEEDED = {("batch", "jobs"): {"create", "list", "delete"}, ("", "pods"): {"list"}}
# Rules every authenticated user has (ClusterRole system:basic-user): not the Role's doing.
EVERYONE = {("authorization.k8s.io", "selfsubjectaccessreviews"), ("authorization.k8s.io", "selfsubjectrulesreviews")}
JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "rbac-probe"},
       "spec": {"template": {"spec": {"restartPolicy": "Never",
                                      "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}


@pytest.fixture(scope="module")
def apis(deployed: ControlPlane, server_token: str) -> dict[str, Any]:
    from kubernetes import client

    api_client = deployed.api_client(server_token)
    return {"batch": client.BatchV1Api(api_client), "core": client.CoreV1Api(api_client),
            "authz": client.AuthorizationV1Api(api_client)}


def status_of(call: Callable[[], Any]) -> int:
    from kubernetes.client import ApiException

    try:
        call()
    except ApiException as exc:
        return exc.status
    return 200


def test_the_account_may_make_every_call_of_the_backend(apis: dict[str, Any]) -> None:
    batch, core = apis["batch"], apis["core"]
    assert status_of(lambda: batch.create_namespaced_job(NAMESPACE, JOB, dry_run="All")) == 200
    assert status_of(lambda: batch.list_namespaced_job(NAMESPACE, label_selector="a=b")) == 200
    assert status_of(lambda: core.list_namespaced_pod(NAMESPACE, label_selector="a=b")) == 200
    # Authorized, and then not found: the authorizer let the delete through.
    assert status_of(lambda: batch.delete_namespaced_job("no-such-job", NAMESPACE,
                                                         propagation_policy="Background")) == 404


def test_the_account_has_no_other_rule_in_its_namespace(apis: dict[str, Any]) -> None:
    from kubernetes import client

    review = apis["authz"].create_self_subject_rules_review(
        client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(namespace=NAMESPACE)))
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in review.status.resource_rules:
        for group in rule.api_groups or [""]:
            for resource in rule.resources or []:
                if (group, resource) not in EVERYONE:
                    granted.setdefault((group, resource), set()).update(rule.verbs)
    assert granted == NEEDED


@pytest.mark.parametrize("what", [
    "list secrets", "get a secret", "get a job", "watch jobs", "create a pod", "read pod logs",
    "list pods in default", "list jobs in default", "create a job in default", "list nodes"])
def test_the_account_is_refused_everything_else(apis: dict[str, Any], what: str) -> None:
    batch, core = apis["batch"], apis["core"]
    calls: dict[str, Callable[[], Any]] = {
        "list secrets": lambda: core.list_namespaced_secret(NAMESPACE),
        "get a secret": lambda: core.read_namespaced_secret("retrain-admin-token", NAMESPACE),
        "get a job": lambda: batch.read_namespaced_job("any", NAMESPACE),
        "watch jobs": lambda: batch.list_namespaced_job(NAMESPACE, watch=True, timeout_seconds=1,
                                                        _preload_content=False),
        "create a pod": lambda: core.create_namespaced_pod(NAMESPACE, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}, dry_run="All"),
        "read pod logs": lambda: core.read_namespaced_pod_log("any", NAMESPACE),
        "list pods in default": lambda: core.list_namespaced_pod("default"),
        "list jobs in default": lambda: batch.list_namespaced_job("default"),
        "create a job in default": lambda: batch.create_namespaced_job("default", JOB, dry_run="All"),
        "list nodes": lambda: core.list_node(),
    }
    assert status_of(calls[what]) == 403
