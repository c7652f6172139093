"""A fake kubelet, driven step by step by the tests (adapted from ../shared/k8s-controlplane).

There is no container runtime and no scheduler here. The Job controller of the real
kube-controller-manager creates the Pods; this class does what a scheduler and a kubelet would do
to them, when a test says so: bind a Pod to a fake GPU node and mark it Running, then Succeeded or
Failed with an exit code; and confirm the deletion of Pods being deleted (a bound Pod stays
Terminating until its kubelet confirms). It acts as admin, like the node and scheduler would.
Stepping by hand (no background loop) lets a test observe every state in between.
"""
from __future__ import annotations

import datetime
import time
from typing import Any, Callable

NODE = "fake-gpu-node-0"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until check() returns something truthy; AssertionError naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


class FakeKubelet:
    """Moves the Pods of one namespace through their phases on a fake node."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.client = client
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace

    def register_node(self) -> None:
        """A Ready node with the GPU label and capacity the trainer template asks for."""
        node = self.client.V1Node(metadata=self.client.V1ObjectMeta(
            name=NODE, labels={"nvidia.com/gpu.present": "true"}))
        try:
            self.core.create_node(node)
        except self.client.ApiException as exc:
            if exc.status != 409:
                raise
        capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": "4"}
        self.core.patch_node_status(NODE, {"status": {"capacity": capacity, "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True", "reason": "FakeKubeletReady",
                            "message": "fake kubelet", "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}]}})

    def pods(self, job_name: str) -> list[Any]:
        """The Job's pods (label `job-name`, set by the Job controller), oldest first."""
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job_name}").items
        return sorted(pods, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))

    def wait_pods(self, job_name: str, count: int, timeout: float = 60) -> list[Any]:
        """Wait until the Job controller has created `count` pods of the Job."""
        return wait_until(lambda: (lambda pods: pods if len(pods) >= count else None)(self.pods(job_name)),
                          timeout, f"{count} pod(s) of Job {job_name}")

    def run(self, pod: Any) -> None:
        """Schedule the pod on the fake node and report its container running."""
        name = pod.metadata.name
        self.core.create_namespaced_pod_binding(name, self.namespace, self.client.V1Binding(
            metadata=self.client.V1ObjectMeta(name=name),
            target=self.client.V1ObjectReference(kind="Node", name=NODE)), _preload_content=False)
        started = _now()
        self._patch_status(pod, "Running", {"running": {"startedAt": started}}, started)

    def finish(self, pod: Any, exit_code: int) -> None:
        """The container exited with exit_code: the pod is Succeeded (0) or Failed."""
        terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                      "startedAt": _now(), "finishedAt": _now()}
        self._patch_status(pod, "Succeeded" if exit_code == 0 else "Failed", {"terminated": terminated})

    def confirm_deletions(self) -> int:
        """Delete for good the pods marked for deletion (what a kubelet does once containers stop)."""
        pods = [p for p in self.core.list_namespaced_pod(self.namespace).items if p.metadata.deletion_timestamp]
        for pod in pods:
            try:
                self.core.delete_namespaced_pod(pod.metadata.name, self.namespace, grace_period_seconds=0)
            except self.client.ApiException as exc:
                if exc.status != 404:
                    raise
        return len(pods)

    def _patch_status(self, pod: Any, phase: str, state: dict[str, Any], started: str | None = None) -> None:
        statuses = [{"name": c.name, "image": c.image, "imageID": "", "ready": phase == "Running",
                     "restartCount": 0, "state": state} for c in pod.spec.containers]
        status: dict[str, Any] = {"phase": phase, "containerStatuses": statuses}
        if started:
            status["startTime"] = started
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})
