"""The retrain API of the real server (`python -m serving --retrain-backend kubernetes`) against a
real kube-apiserver and Job controller v1.20.2, authenticated as the ServiceAccount of k8s/.

No container runs: the fake kubelet moves the Job's pods, and when a pod "completes" the test
publishes a model version into the base path named in the pod's arguments, as the trainer would.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from serving.jobs.versions import highest_version
from tests.helpers import export_tiny
from tests.k8s.tools import K8S
from tests.k8s_e2e.conftest import NAMESPACE
from tests.k8s_e2e.controlplane import ControlPlane
from tests.k8s_e2e.fake_kubelet import FakeKubelet, wait_until
from tests.server_process import ServerHandle, start_server

TOKEN = "k8s-e2e-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RETRAIN = {"data": "tiny/train", "epochs": 1, "image_size": 32}


class Serving:
    """The server under test; restart() replaces the process, as a rollout or a crash would."""

    def __init__(self, args: list[str], kubeconfig: Path) -> None:
        # Empty service host/port: were the tests run inside a pod, the server must still not
        # take the in-cluster config and talk to that cluster.
        self.args = args
        self.env = {"KUBECONFIG": str(kubeconfig), "KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": ""}
        self.handle: ServerHandle | None = None

    def start(self) -> None:
        self.handle = start_server(*self.args, env=self.env, grpc=False, timeout=180)

    def restart(self) -> None:
        assert self.handle is not None
        self.handle.stop()
        self.start()

    @property
    def url(self) -> str:
        assert self.handle is not None
        return self.handle.rest_url

    def job(self, job_id: str) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/v1/jobs/{job_id}", headers=AUTH, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def wait_job(self, job_id: str, state: str, timeout: float = 60) -> dict[str, Any]:
        return wait_until(lambda: (lambda j: j if j["state"] == state else None)(self.job(job_id)),
                          timeout, f"job {job_id} to be {state}")

    def submit(self) -> tuple[str, str]:
        """POST a retrain; returns the job id and the Kubernetes Job's name."""
        answer = requests.post(f"{self.url}/v1/models/tiny:retrain", json=RETRAIN, headers=AUTH, timeout=30)
        assert answer.status_code == 202, answer.text
        job = answer.json()["job"]
        return job["id"], job["details"]["job_name"]


@pytest.fixture(scope="module")
def base_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("models") / "tiny"
    export_tiny(base, seed=1)
    return base


@pytest.fixture(scope="module")
def serving(deployed: ControlPlane, server_kubeconfig: Path, base_path: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    token = tmp_path_factory.mktemp("secret") / "admin-token"
    token.write_text(TOKEN)
    server = Serving(["--model-name", "tiny", "--model-base-path", str(base_path), "--poll-interval", "0.5",
                      "--retrain-backend", "kubernetes", "--k8s-namespace", NAMESPACE,
                      "--trainer-job-template", str(K8S / "trainer" / "job-template.yaml"),
                      "--admin-token-file", str(token), "--data-root", "/data",
                      "--retrain-poll-interval", "0.5"], server_kubeconfig)
    server.start()
    yield server
    if server.handle is not None:
        server.handle.stop()


@pytest.fixture(autouse=True)
def no_jobs_left(deployed: ControlPlane, kubelet: FakeKubelet) -> Iterator[None]:
    """A failing test must not leave an active Job that makes the next one a 409."""
    yield
    deployed.kubectl("-n", NAMESPACE, "delete", "jobs", "--all", "--wait=false")
    kubelet.confirm_deletions()


def batch(cluster: ControlPlane) -> Any:
    from kubernetes import client

    return client.BatchV1Api(cluster.api_client())


def publish_as_trainer(pod: Any) -> int:
    """What the trainer container would do before exiting 0: export the next version into the
    --model-base-path of its own arguments (the shared volume). Returns the version."""
    args = pod.spec.containers[0].args
    base, name = Path(args[args.index("--model-base-path") + 1]), args[args.index("--model-name") + 1]
    return int(export_tiny(base, seed=2, model_name=name).name)


def version_state(serving: Serving, version: int) -> str | None:
    answer = requests.get(f"{serving.url}/v1/models/tiny", timeout=30).json()
    return next((s["state"] for s in answer["model_version_status"] if s["version"] == str(version)), None)


def test_a_retrain_job_goes_pending_running_succeeded_and_its_version_is_served(
        serving: Serving, deployed: ControlPlane, kubelet: FakeKubelet, base_path: Path) -> None:
    baseline = highest_version(base_path)
    job_id, name = serving.submit()
    job = batch(deployed).read_namespaced_job(name, NAMESPACE)   # the API server accepted and stored it
    assert job.metadata.labels["transfer-serving/job-id"] == job_id
    assert job.spec.template.spec.service_account_name == "transfer-trainer"
    (pod,) = kubelet.wait_pods(name, 1)
    # The Job controller counts the unscheduled pod as active; the record must still say PENDING.
    wait_until(lambda: batch(deployed).read_namespaced_job(name, NAMESPACE).status.active == 1, 30, "active=1")
    assert pod.status.phase == "Pending" and serving.job(job_id)["state"] == "PENDING"

    kubelet.run(pod)
    assert serving.wait_job(job_id, "RUNNING")["details"]["job_name"] == name
    version = publish_as_trainer(pod)
    assert version == baseline + 1
    kubelet.finish(pod, 0)
    done = serving.wait_job(job_id, "SUCCEEDED")
    assert done["produced_version"] == version and done["finished_at"].endswith("Z")
    wait_until(lambda: version_state(serving, version) == "AVAILABLE", 60, f"version {version} AVAILABLE")


def test_a_failing_trainer_is_retried_then_the_job_fails(serving: Serving, kubelet: FakeKubelet) -> None:
    job_id, name = serving.submit()
    (first,) = kubelet.wait_pods(name, 1)
    kubelet.run(first)
    serving.wait_job(job_id, "RUNNING")
    kubelet.finish(first, 1)
    # The template's backoffLimit is 1: the Job controller makes one more pod. Until it runs, the
    # job is PENDING again, with the failure counted.
    retry = wait_until(lambda: (lambda j: j if j["details"].get("failed_pods") == 1 else None)(serving.job(job_id)),
                       30, "the first failure counted")
    assert retry["state"] == "PENDING"
    pods = kubelet.wait_pods(name, 2, timeout=90)
    # creationTimestamp has whole seconds: the retry is the pod that is not the first one.
    (second,) = [p for p in pods if p.metadata.uid != first.metadata.uid]
    kubelet.run(second)
    serving.wait_job(job_id, "RUNNING")
    kubelet.finish(second, 1)
    failed = serving.wait_job(job_id, "FAILED")
    assert failed["exit_reason"].startswith("BackoffLimitExceeded"), failed
    assert failed["details"]["failed_pods"] == 2 and len(kubelet.pods(name)) == 2


def test_delete_removes_the_job_and_its_pods(serving: Serving, deployed: ControlPlane, kubelet: FakeKubelet) -> None:
    from kubernetes.client import ApiException

    job_id, name = serving.submit()
    (pod,) = kubelet.wait_pods(name, 1)
    kubelet.run(pod)
    serving.wait_job(job_id, "RUNNING")
    answer = requests.delete(f"{serving.url}/v1/jobs/{job_id}", headers=AUTH, timeout=30)
    assert answer.status_code == 202 and answer.json()["state"] == "FAILED", answer.text
    with pytest.raises(ApiException) as gone:
        batch(deployed).read_namespaced_job(name, NAMESPACE)
    assert gone.value.status == 404
    # The garbage collector deletes the orphaned pod; the (fake) kubelet confirms it stopped.
    wait_until(lambda: (kubelet.confirm_deletions(), not kubelet.pods(name))[1], 60, f"the pods of {name} gone")
    assert serving.job(job_id)["exit_reason"] == "cancelled: the Job was deleted"


def test_a_job_deleted_behind_the_servers_back_is_reported(serving: Serving, deployed: ControlPlane,
                                                           kubelet: FakeKubelet) -> None:
    job_id, name = serving.submit()
    (pod,) = kubelet.wait_pods(name, 1)
    kubelet.run(pod)
    serving.wait_job(job_id, "RUNNING")
    deployed.kubectl("-n", NAMESPACE, "delete", "job", name)
    failed = serving.wait_job(job_id, "FAILED", timeout=30)
    assert failed["exit_reason"].startswith("JobDeleted:"), failed
    assert job_id in [j["id"] for j in requests.get(f"{serving.url}/v1/jobs", headers=AUTH, timeout=30).json()["jobs"]]


def test_a_restarted_server_picks_up_the_running_job(serving: Serving, kubelet: FakeKubelet, base_path: Path) -> None:
    baseline = highest_version(base_path)
    job_id, name = serving.submit()
    (pod,) = kubelet.wait_pods(name, 1)
    kubelet.run(pod)
    before = serving.wait_job(job_id, "RUNNING")
    serving.restart()
    after = serving.job(job_id)
    assert after["state"] == "RUNNING" and after["options"] == before["options"] and after["id"] == job_id
    again = requests.post(f"{serving.url}/v1/models/tiny:retrain", json=RETRAIN, headers=AUTH, timeout=30)
    assert again.status_code == 409, again.text   # the new process knows the model has an active job
    version = publish_as_trainer(pod)
    kubelet.finish(pod, 0)
    done = serving.wait_job(job_id, "SUCCEEDED")
    assert done["produced_version"] == version == baseline + 1
