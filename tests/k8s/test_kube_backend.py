"""The kubernetes retrain backend: the Job it builds from k8s/trainer/job-template.yaml, and its
API calls made with the official client against a loopback STAND-IN for the API server
(tests/k8s/apiserver_standin.py: a few batch/v1 endpoints, no real cluster)."""
from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from flask import Flask

from serving import retrain_api
from serving.errors import ServingError
from serving.jobs import JobManager
from serving.jobs.kube import LABEL_MANAGED_BY, MANAGER, KubernetesBackend, load_job_template
from serving.jobs.record import JobRecord
from tests.k8s.apiserver_standin import ApiServerStandIn
from tests.k8s.tools import K8S, KUBERNETES_VERSION, ensure_pip

ensure_pip("kubernetes_validate")
import kubernetes_validate  # noqa: E402

NAMESPACE = "transfer-serving"
TEMPLATE = K8S / "trainer" / "job-template.yaml"


def client_for(api: ApiServerStandIn):
    from kubernetes import client

    configuration = client.Configuration(host=api.url, api_key={"authorization": f"Bearer {api.token}"})
    return client.ApiClient(configuration)


def backend_for(api: ApiServerStandIn) -> KubernetesBackend:
    return KubernetesBackend(NAMESPACE, load_job_template(TEMPLATE), api_client=client_for(api))


def test_built_job_is_valid_and_keeps_the_template(tmp_path: Path) -> None:
    template = load_job_template(TEMPLATE)
    backend = KubernetesBackend(NAMESPACE, template, api_client=object.__new__(type("NoClient", (), {})))
    record = JobRecord(id="0a1b2c3d4e", model="fashion", backend="kubernetes", baseline_version=3,
                       options={"data": "/data/fashion/train", "epochs": 2, "cache_features": True})
    job = backend.build_job(record, Path("/models/fashion"))
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)

    name = job["metadata"]["name"]
    assert name == "retrain-fashion-0a1b2c3d4e" and re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name)
    assert job["metadata"]["namespace"] == NAMESPACE
    labels = {"transfer-serving/model": "fashion", "transfer-serving/job-id": "0a1b2c3d4e",
              "app.kubernetes.io/managed-by": "transfer-serving-retrain"}
    assert labels.items() <= job["metadata"]["labels"].items()
    assert labels.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert job["metadata"]["annotations"]["transfer-serving/baseline-version"] == "3"
    assert job["spec"]["ttlSecondsAfterFinished"] == template["spec"]["ttlSecondsAfterFinished"]
    assert job["spec"]["backoffLimit"] == template["spec"]["backoffLimit"]

    pod, source = job["spec"]["template"]["spec"], template["spec"]["template"]["spec"]
    container, source_container = pod["containers"][0], source["containers"][0]
    for kind in ("requests", "limits"):   # the same quantities, as strings for the typed client
        assert container["resources"][kind] == {k: str(v) for k, v in source_container["resources"][kind].items()}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["volumes"] == source["volumes"] and container["volumeMounts"] == source_container["volumeMounts"]
    assert pod["nodeSelector"] == source["nodeSelector"] and pod["tolerations"] == source["tolerations"]
    assert container["command"] == ["python", "-m", "trainer", "train"]
    assert container["args"] == ["--data", "/data/fashion/train", "--epochs", "2", "--cache-features",
                                 "--model-name", "fashion", "--model-base-path", "/models/fashion",
                                 *source_container["args"]]
    assert "transfer-serving/job-id" not in template["metadata"]["labels"]   # template untouched


def test_invalid_label_value_model_is_refused() -> None:
    backend = KubernetesBackend(NAMESPACE, load_job_template(TEMPLATE), api_client=object())
    with pytest.raises(ServingError) as info:
        backend.build_job(JobRecord(id="ab", model="-bad-", backend="kubernetes", options={}), Path("/m"))
    assert info.value.code == "INVALID_ARGUMENT"


def test_lifecycle_against_the_api_server_standin(tmp_path: Path) -> None:
    base = tmp_path / "models" / "fashion"
    (base / "2").mkdir(parents=True)
    with ApiServerStandIn() as api:
        manager = JobManager(backend_for(api), data_root=Path("/data"),
                             base_path_for={"fashion": base}.get)
        record = manager.submit("fashion", {"data": "fashion/train", "epochs": 1})
        assert record.state == "PENDING" and record.baseline_version == 2
        (key, job), = api.jobs.items()
        assert key == (NAMESPACE, f"retrain-fashion-{record.id}")
        kubernetes_validate.validate({k: v for k, v in job.items() if k != "status"}, KUBERNETES_VERSION, strict=True)
        assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert ("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", "") in api.requests

        with pytest.raises(ServingError) as info:   # one retrain per model: the cluster says one is active
            manager.submit("fashion", {"data": "fashion/train"})
        assert info.value.code == "ALREADY_EXISTS"

        api.set_status(*key, {"active": 1, "startTime": "2026-11-28T00:00:05Z"})
        api.set_pod_phase(*key, "Pending")   # active, but not scheduled or started yet
        assert manager.get(record.id).state == "PENDING"
        api.set_pod_phase(*key, "Running")
        assert manager.get(record.id).state == "RUNNING"
        assert ("GET", f"/api/v1/namespaces/{NAMESPACE}/pods",
                "labelSelector=app.kubernetes.io/managed-by%3Dtransfer-serving-retrain%2C"
                f"transfer-serving/job-id%3D{record.id}") in api.requests
        (base / "3").mkdir()   # what the trainer pod writes to the shared volume
        api.set_status(*key, {"succeeded": 1, "startTime": "2026-11-28T00:00:05Z",
                              "completionTime": "2026-11-28T00:03:00Z",
                              "conditions": [{"type": "Complete", "status": "True",
                                              "lastTransitionTime": "2026-11-28T00:03:00Z"}]})
        restarted = backend_for(api)   # a new server process: everything comes from the cluster
        done = restarted.get_job(record.id)
        assert (done.state, done.produced_version, done.finished_at) == ("SUCCEEDED", 3, "2026-11-28T00:03:00Z")
        assert done.options == {"data": "/data/fashion/train", "epochs": 1}
        assert [r.id for r in restarted.list_jobs()] == [record.id]
        assert restarted.get_job("ffffffffff") is None

        second = manager.submit("fashion", {"data": "fashion/train"})
        api.set_status(NAMESPACE, f"retrain-fashion-{second.id}", {"failed": 2, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit", "lastTransitionTime": "2026-11-28T01:00:00Z"}]})
        failed = manager.get(second.id)
        assert failed.state == "FAILED" and failed.exit_reason.startswith("BackoffLimitExceeded: Job has reached")
        selectors = [q for m, p, q in api.requests if m == "GET"]
        assert any(q.endswith("transfer-serving/job-id%3D" + second.id) for q in selectors)

        third = manager.submit("fashion", {"data": "fashion/train"})
        assert manager.cancel(third.id).exit_reason == "cancelled: the Job was deleted"
        deletes = [(p, q) for m, p, q in api.requests if m == "DELETE"]
        assert deletes == [(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/retrain-fashion-{third.id}",
                            "propagationPolicy=Background")]
        listed = {r.id: r for r in manager.list()}   # this process still reports the cancelled job
        assert sorted(listed) == sorted([record.id, second.id, third.id])
        assert (listed[third.id].state, listed[third.id].exit_reason) == ("FAILED", "cancelled: the Job was deleted")
        # the cluster has no record of the cancelled job (two Jobs made in one second list in either order)
        assert sorted(r.id for r in restarted.list_jobs()) == sorted([record.id, second.id])

        fourth = manager.submit("fashion", {"data": "fashion/train"})
        del api.jobs[(NAMESPACE, f"retrain-fashion-{fourth.id}")]   # kubectl delete, behind our back
        vanished = manager.get(fourth.id)
        assert vanished.state == "FAILED" and vanished.exit_reason.startswith("JobDeleted:")
        with pytest.raises(ServingError) as info:
            manager.cancel(second.id)   # already failed
        assert info.value.code == "FAILED_PRECONDITION"

        api.forbidden = True
        with pytest.raises(ServingError) as info:
            manager.list()
        assert info.value.code == "INTERNAL" and "Role" in info.value.message
    with pytest.raises(ServingError) as info:   # the API server is gone
        manager.list()
    assert info.value.code == "UNAVAILABLE"


def test_a_job_submitted_while_a_list_is_on_its_way_is_not_taken_for_deleted(tmp_path: Path) -> None:
    """The refresher lists while a request submits: the list started before the Job existed."""
    with ApiServerStandIn() as api:
        backend = backend_for(api)
        listed_at = time.monotonic()
        before = backend._records(f"{LABEL_MANAGED_BY}={MANAGER}")   # the list, sent before the POST
        record = JobRecord(id="0a1b2c3d4e", model="fashion", backend="kubernetes", options={"data": "/data/x"})
        backend.submit(record, tmp_path)
        assert backend._remember(before, None, listed_at) == [] and record.state == "PENDING"
        assert [(r.id, r.state) for r in backend.list_jobs()] == [(record.id, "PENDING")]


def test_rest_api_with_kubeconfig_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's own wiring: flags -> kubeconfig auth -> the stand-in, through the REST routes."""
    (tmp_path / "token").write_text("admin")
    (tmp_path / "models" / "fashion").mkdir(parents=True)
    with ApiServerStandIn() as api:
        kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "standin",
                      "clusters": [{"name": "standin", "cluster": {"server": api.url}}],
                      "users": [{"name": "admin", "user": {"token": api.token}}],
                      "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "admin"}}]}
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        options = SimpleNamespace(
            models=[SimpleNamespace(name="fashion", base_path=tmp_path / "models" / "fashion")],
            extra={"retrain_backend": "kubernetes", "admin_token_file": str(tmp_path / "token"),
                   "data_root": "/data", "k8s_namespace": NAMESPACE, "trainer_job_template": str(TEMPLATE),
                   "retrain_poll_interval": 0.2})
        app = Flask(__name__)
        blueprint = retrain_api.blueprint(None, options)
        app.register_blueprint(blueprint)
        client = app.test_client()
        auth = {"Authorization": "Bearer admin"}
        response = client.post("/v1/models/fashion:retrain", json={"data": "fashion/train"}, headers=auth)
        assert response.status_code == 202, response.get_json()
        job_id = response.get_json()["job_id"]
        assert response.get_json()["job"]["backend"] == "kubernetes"
        assert client.post("/v1/models/fashion:retrain", json={"data": "x"}, headers=auth).status_code == 409
        assert client.get(f"/v1/jobs/{job_id}", headers=auth).get_json()["state"] == "PENDING"
        assert [j["id"] for j in client.get("/v1/jobs", headers=auth).get_json()["jobs"]] == [job_id]
        time.sleep(0.5)   # the background refresher lists too; it must not fail against the stand-in
        assert all(method in ("GET", "POST") for method, _, _ in api.requests)
        blueprint.job_manager.stop()
