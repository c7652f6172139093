"""End to end through the real server (gunicorn, `python -m serving`) with the local backend:
a retrain of the served model on a tiny generated dataset (the real trainer, --weights none,
one epoch) finishes, its new version is hot-loaded and served, and no prediction fails meanwhile.
Token cases give 401, a second retrain while one runs gives 409, and a restarted server still
lists the finished job."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.helpers import TINY_LABELS, export_tiny, image_bytes
from tests.server_process import ClassifyLoop, start_server

TOKEN = "e2e-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RETRAIN = {"data": "tiny", "backbone": "mobilenet_v2", "weights": "none", "image_size": 32,
           "epochs": 1, "ft_epochs": 0, "batch_size": 8, "seed": 1}


def make_dataset(root: Path) -> None:
    """Folder-per-class PNGs, one colour per class (the served model's labels)."""
    rng = np.random.default_rng(0)
    for index, label in enumerate(TINY_LABELS):
        folder = root / label
        folder.mkdir(parents=True)
        colour = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220]][index])
        for i in range(6):
            pixels = np.clip(colour + rng.integers(-40, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")




@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, Path]:
    paths = {"base": tmp_path / "models" / "tiny", "data": tmp_path / "data", "jobs": tmp_path / "jobs",
             "token": tmp_path / "admin-token"}
    export_tiny(paths["base"], seed=1)
    make_dataset(paths["data"] / "tiny")
    paths["token"].write_text(TOKEN)
    return paths


def server_args(paths: dict[str, Path]) -> list[str]:
    return ["--model-name", "tiny", "--model-base-path", str(paths["base"]), "--poll-interval", "0.5",
            "--retrain-backend", "local", "--admin-token-file", str(paths["token"]),
            "--jobs-dir", str(paths["jobs"]), "--data-root", str(paths["data"])]


def wait_job(url: str, job_id: str, timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(f"{url}/v1/jobs/{job_id}", headers=AUTH, timeout=30)
        assert answer.status_code == 200, answer.text
        job = answer.json()
        if job["state"] in ("SUCCEEDED", "FAILED"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s")


def test_retrain_through_the_real_server(setup: dict[str, Path]) -> None:
    with start_server(*server_args(setup), grpc=False) as server:
        url = server.rest_url
        retrain = f"{url}/v1/models/tiny:retrain"
        assert requests.post(retrain, json=RETRAIN, timeout=30).status_code == 401
        wrong = requests.post(retrain, json=RETRAIN, headers={"Authorization": "Bearer nope"}, timeout=30)
        assert wrong.status_code == 401
        assert requests.get(f"{url}/v1/jobs", timeout=30).status_code == 401
        assert requests.post(retrain, json={**RETRAIN, "rm": 1}, headers=AUTH, timeout=30).status_code == 400

        predictor = ClassifyLoop(url, image_bytes(5), pause=0.05)  # leave the CPUs to the trainer
        predictor.start()
        accepted = requests.post(retrain, json=RETRAIN, headers=AUTH, timeout=30)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        conflict = requests.post(retrain, json=RETRAIN, headers=AUTH, timeout=30)
        assert conflict.status_code == 409, conflict.text

        job = wait_job(url, job_id)
        log = Path(job["details"]["log_file"]).read_text()
        assert job["state"] == "SUCCEEDED", (job, log[-3000:])
        assert job["produced_version"] == 2 and (setup["base"] / "2" / "saved_model.pb").exists()
        assert job["training"]["exported_stage"] in ("stage1", "stage2"), job
        deadline = time.monotonic() + 60
        while not (predictor.versions and predictor.versions[-1] == 2) and time.monotonic() < deadline:
            time.sleep(0.2)
        predictor.stop_flag.set()
        predictor.join(timeout=60)
        assert predictor.failures == []
        assert predictor.versions[0] == 1 and predictor.versions[-1] == 2, predictor.versions[-5:]

        metrics = requests.get(f"{url}/metrics", timeout=30).text
        assert 'serving_retrain_jobs_total{backend="local",model="tiny",state="succeeded"} 1.0' in metrics
        assert 'serving_retrain_jobs_running{model="tiny"} 0.0' in metrics
        assert TOKEN not in server.log()

    with start_server(*server_args(setup), grpc=False) as restarted:
        jobs = requests.get(f"{restarted.rest_url}/v1/jobs", headers=AUTH, timeout=30).json()["jobs"]
        assert [(j["id"], j["state"], j["produced_version"]) for j in jobs] == [(job_id, "SUCCEEDED", 2)]
