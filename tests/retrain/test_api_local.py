"""The retrain blueprint with the local backend, through Flask's test client (no gunicorn).

The trainer really runs here (python -m trainer train), on data that makes it fail fast, so the
failure paths are real: exit status, a killed runner, a restart that finds jobs on disk, 409.
The success path through the real server is tests/retrain/test_retrain_e2e.py.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from serving import metrics, retrain_api
from serving.jobs.local import LocalBackend

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


_MANAGERS: list = []


@pytest.fixture(autouse=True)
def _stop_refreshers():
    yield
    while _MANAGERS:
        _MANAGERS.pop().stop()


def make_client(root: Path, token_file: Path | None) -> FlaskClient:
    options = SimpleNamespace(
        models=[SimpleNamespace(name="tiny", base_path=root / "models" / "tiny")],
        extra={"retrain_backend": "local", "admin_token_file": token_file and str(token_file),
               "jobs_dir": str(root / "jobs"), "data_root": str(root / "data"), "retrain_poll_interval": 0.2})
    app = Flask(__name__)
    blueprint = retrain_api.blueprint(None, options)
    app.register_blueprint(blueprint)
    client = app.test_client()
    if hasattr(blueprint, "job_manager"):
        _MANAGERS.append(blueprint.job_manager)
    return client


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text(TOKEN + "\n")
    broken = tmp_path / "data" / "broken" / "only_class"
    broken.mkdir(parents=True)
    (broken / "not-an-image.png").write_bytes(b"this is not a PNG")
    return tmp_path


def wait_final(client: FlaskClient, job_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=AUTH).get_json()
        if job["state"] in ("SUCCEEDED", "FAILED"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_token_cases(root: Path) -> None:
    client = make_client(root, root / "token")
    body = {"data": "broken"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "}):
        response = client.post("/v1/models/tiny:retrain", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert TOKEN not in response.get_data(as_text=True)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/v1/jobs", headers=AUTH).get_json() == {"jobs": []}
    # A rotated Secret takes effect without a restart.
    (root / "token").write_text("rotated")
    os.utime(root / "token", (time.time() + 5, time.time() + 5))
    assert client.get("/v1/jobs", headers=AUTH).status_code == 401
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer rotated"}).status_code == 200


def test_disabled_without_token_file(root: Path) -> None:
    client = make_client(root, None)
    response = client.post("/v1/models/tiny:retrain", json={"data": "broken"}, headers=AUTH)
    assert response.status_code == 401 and "disabled" in response.get_json()["error"]
    assert not (root / "jobs").exists()


def test_bad_requests(root: Path) -> None:
    client = make_client(root, root / "token")
    cases = [("tiny", {"data": "broken", "shell": "x"}, 400, "unknown option"),
             ("tiny", {"data": "../token"}, 400, "data root"),
             ("nope", {"data": "broken"}, 404, "not served"),
             ("tiny", None, 400, "missing required")]
    for model, body, status, needle in cases:
        response = client.post(f"/v1/models/{model}:retrain", json=body, headers=AUTH)
        assert response.status_code == status and needle in response.get_json()["error"], (body, response.get_json())
    response = client.post("/v1/models/tiny:retrain", data="{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert client.get("/v1/jobs/0123456789", headers=AUTH).status_code == 404
    assert client.get("/v1/jobs/..%2Fetc", headers=AUTH).status_code == 404


def failed_count() -> float:
    return metrics.REGISTRY.get_sample_value(
        "serving_retrain_jobs_total", {"model": "tiny", "backend": "local", "state": "failed"}) or 0.0


def test_failed_job_409_and_restart(root: Path) -> None:
    """A trainer failure is reported with its exit code; a second retrain meanwhile is 409; a new
    backend on the same jobs dir (a restarted server) follows the running job to its end."""
    before = failed_count()
    client = make_client(root, root / "token")
    response = client.post("/v1/models/tiny:retrain", json={"data": "broken", "epochs": 1}, headers=AUTH)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job_id"]
    assert response.headers["Location"] == f"/v1/jobs/{job_id}"
    conflict = client.post("/v1/models/tiny:retrain", json={"data": "broken"}, headers=AUTH)
    assert conflict.status_code == 409 and job_id in conflict.get_json()["error"]

    restarted = LocalBackend(root / "jobs")
    assert restarted.get_job(job_id).state == "RUNNING"
    job = wait_final(client, job_id)
    assert job["state"] == "FAILED" and "exited with code" in job["exit_reason"], job
    assert job["produced_version"] is None and job["finished_at"] and job["started_at"]
    assert restarted.get_job(job_id).to_dict() == LocalBackend(root / "jobs").get_job(job_id).to_dict()
    assert Path(job["details"]["log_file"]).read_text()
    deadline = time.monotonic() + 5   # the background refresher counts it
    while failed_count() != before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert failed_count() == before + 1
    assert metrics.REGISTRY.get_sample_value("serving_retrain_jobs_running", {"model": "tiny"}) == 0


def test_killed_runner_is_failed_after_restart(root: Path) -> None:
    client = make_client(root, root / "token")
    job_id = client.post("/v1/models/tiny:retrain", json={"data": "broken"}, headers=AUTH).get_json()["job_id"]
    pid = client.get(f"/v1/jobs/{job_id}", headers=AUTH).get_json()["details"]["pid"]
    os.killpg(pid, signal.SIGKILL)   # runner and trainer die without an exit status
    deadline = time.monotonic() + 10
    while LocalBackend(root / "jobs").get_job(job_id).state == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)
    job = LocalBackend(root / "jobs").get_job(job_id)
    assert job.state == "FAILED" and "gone without an exit status" in job.exit_reason
    listed = client.get("/v1/jobs?model=tiny", headers=AUTH).get_json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]


def test_cancel_a_running_job(root: Path) -> None:
    client = make_client(root, root / "token")
    job_id = client.post("/v1/models/tiny:retrain", json={"data": "broken"}, headers=AUTH).get_json()["job_id"]
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 401
    pid = client.get(f"/v1/jobs/{job_id}", headers=AUTH).get_json()["details"]["pid"]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + 20
    while not children.read_text().strip() and time.monotonic() < deadline:   # the trainer started
        time.sleep(0.05)
    response = client.delete(f"/v1/jobs/{job_id}", headers=AUTH)
    assert response.status_code == 202, response.get_json()
    job = wait_final(client, job_id)
    assert job["state"] == "FAILED" and job["exit_reason"].startswith("cancelled: trainer "), job
    again = client.delete(f"/v1/jobs/{job_id}", headers=AUTH)
    assert again.status_code == 412 and "already finished" in again.get_json()["error"]
    assert client.delete("/v1/jobs/0123456789", headers=AUTH).status_code == 404


@pytest.mark.parametrize("extra, problem", [
    ({}, "--data-root"),
    ({"data_root": "/d"}, "--jobs-dir"),
    ({"data_root": "/d", "jobs_dir": "/j"}, None),
    ({"data_root": "/d", "retrain_backend": "kubernetes", "k8s_namespace": "ns"}, "--trainer-job-template"),
])
def test_retrain_settings_name_what_an_enabled_api_lacks(extra: dict, problem: str | None) -> None:
    settings = retrain_api.RetrainSettings.of(SimpleNamespace(extra={"admin_token_file": "/t", **extra}))
    assert settings.retrain_poll_interval == 2.0 and settings.admin_token_file == "/t"
    assert (problem in settings.problem()) if problem else settings.problem() is None
