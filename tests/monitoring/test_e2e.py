"""End to end: the dashboard and the alert rules against a real Prometheus fed by the real server.

Debian's prometheus and prometheus-pushgateway run on loopback with the project's scrape config
(k8s/monitoring/prometheus.yml; only addresses, a 1 s interval and the rule path are changed).
The real server (gunicorn, REST + gRPC) serves two tiny versions; the test sends predictions over
REST and gRPC, client errors, feedback (right and wrong), writes a broken version (load failures),
posts a retrain that fails (a real job of the local backend) and runs a real tiny training
(`python -m trainer train --pushgateway`, 1+1 epochs on generated images, no pretrained weights)
that exports a third version into the served base path and pushes its figures.

Then EVERY PromQL expression of the dashboard JSON (template variables substituted as Grafana
does: model=tiny, version=All, window=1h, $__rate_interval=1m) and of the alert rules goes
through /api/v1/query: each must parse and run, and each panel query must return at least one
finite sample. A panel that shows no data fails the test.
"""
from __future__ import annotations

import base64
import contextlib
import io
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import yaml
from PIL import Image

from serving.protos import image_classifier_pb2 as pb
from serving.protos import image_classifier_pb2_grpc as pb_grpc
from tests.helpers import TINY_LABELS, export_tiny, image_bytes
from tests.monitoring.promstack import (REPO, Daemon, PrometheusAPI, project_config,
                                        start_prometheus)
from tests.monitoring.queries import (alert_rules, panel_queries, substitute, template_variables)
from tests.monitoring.render import render_dashboard
from tests.server_process import start_server

MODEL = "tiny"
TOKEN = "monitoring-e2e-token"
VARIABLES = {"model": MODEL, "version": ".*", "window": "1h", "rate_interval": "1m"}
# Set to a path (e.g. docs/img/monitoring-dashboard.png) to keep the rendered picture.
DOCS_IMG_ENV = "MONITORING_DASHBOARD_PNG"


@dataclass
class Traffic:
    """What the test sent, to check the figures Prometheus ends up with."""
    predictions: dict[int, int] = field(default_factory=dict)     # version -> predictions
    feedback: dict[int, list[bool]] = field(default_factory=dict)  # version -> correct flags
    grpc_calls: int = 0                                             # Classify + Feedback, all ok
    rest_classify: int = 0                                          # :classify_image answered 200


@dataclass
class Scenario:
    prometheus: PrometheusAPI
    started: float
    finished: float
    traffic: Traffic
    trained_version: int
    retrain_job: dict


def _image(seed: int) -> bytes:
    """A flat colour with a little noise, as PNG: the tiny random nets answer different labels for these."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.integers(0, 256, 3) + rng.normal(0, 8, (40, 48, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _send_round(rest: str, channel: grpc.Channel, versions: list[int], seed: int, traffic: Traffic) -> None:
    """Predictions on each version (REST raw body, REST predict, gRPC), errors, and feedback."""
    stub = pb_grpc.ImageClassifierStub(channel)
    for version in versions:
        ids: list[tuple[str, str]] = []
        for i in range(6):
            image = _image(seed * 100 + version * 10 + i)
            if i % 3 == 2:
                answer = stub.Classify(pb.ClassifyRequest(model_name=MODEL, version=version, image=image),
                                       timeout=30)
                ids.append((answer.prediction_id, answer.predictions[0].label))
                traffic.grpc_calls += 1
            else:
                response = requests.post(f"{rest}/v1/models/{MODEL}/versions/{version}:classify_image",
                                         data=image, headers={"Content-Type": "image/png"}, timeout=30)
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["version"] == version
                ids.append((body["prediction_id"], body["predictions"][0]["label"]))
                traffic.rest_classify += 1
        response = requests.post(f"{rest}/v1/models/{MODEL}/versions/{version}:predict", timeout=30,
                                 json={"instances": [{"b64": base64.b64encode(_image(seed + 7)).decode()}]})
        assert response.status_code == 200, response.text
        traffic.predictions[version] = traffic.predictions.get(version, 0) + len(ids) + 1
        bad_label = requests.post(f"{rest}/v1/models/{MODEL}:feedback", timeout=30,
                                  json={"prediction_id": ids[0][0], "label": "not-a-class"})
        assert bad_label.status_code == 400, bad_label.text
        # feedback: four right, two wrong per version and round; one of them over gRPC
        for n, (prediction_id, predicted) in enumerate(ids):
            correct = n < 4
            label = predicted if correct else next(lb for lb in TINY_LABELS if lb != predicted)
            if n == 0:
                answer = stub.Feedback(pb.FeedbackRequest(model_name=MODEL, prediction_id=prediction_id,
                                                          label=label), timeout=30)
                assert answer.correct == correct and answer.version == version
                traffic.grpc_calls += 1
            else:
                response = requests.post(f"{rest}/v1/models/{MODEL}:feedback", timeout=30,
                                         json={"prediction_id": prediction_id, "label": label})
                assert response.status_code == 200, response.text
            traffic.feedback.setdefault(version, []).append(correct)
        # client errors: feedback twice (409), unknown version (404), not an image (400)
        again = requests.post(f"{rest}/v1/models/{MODEL}:feedback", timeout=30,
                              json={"prediction_id": ids[0][0], "label": ids[0][1]})
        assert again.status_code == 409, again.text
    assert requests.post(f"{rest}/v1/models/{MODEL}/versions/99:classify_image", data=_image(1),
                         headers={"Content-Type": "image/png"}, timeout=30).status_code == 404
    assert requests.post(f"{rest}/v1/models/{MODEL}:classify_image", data=b"not an image",
                         headers={"Content-Type": "image/png"}, timeout=30).status_code == 400


def _wait(predicate, what: str, timeout: float = 90.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _training_data(root: Path) -> Path:
    """A tiny folder-per-class PNG dataset (the trainer's real folder loader reads it)."""
    for c, name in enumerate(TINY_LABELS):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(8):
            (folder / f"{i}.png").write_bytes(image_bytes(1000 + c * 50 + i, "PNG", (32, 32)))
    return root


def _break_version(base: Path, version: int) -> None:
    """A version directory whose saved_model.pb is cut short: loads fail, are counted, retried.

    Built in a dot-directory (which the source ignores) and renamed into place, so the server
    never sees the intact copy.
    """
    good = sorted(p for p in base.iterdir() if p.name.isdigit())[0]
    staging = base / f".broken-{version}"
    shutil.copytree(good, staging)
    pb_file = staging / "saved_model.pb"
    pb_file.write_bytes(pb_file.read_bytes()[:100])
    staging.rename(base / str(version))


@pytest.fixture(scope="module")
def scenario(prometheus_debs, pushgateway: Daemon, tmp_path_factory) -> Iterator[Scenario]:
    work = tmp_path_factory.mktemp("monitoring-e2e")
    base = work / "models" / MODEL
    export_tiny(base, seed=1, model_name=MODEL)
    export_tiny(base, seed=2, model_name=MODEL)
    config = work / "models.yaml"
    config.write_text(yaml.safe_dump({"models": [{"name": MODEL, "base_path": str(base),
                                                  "version_policy": "all"}]}))
    (work / "token").write_text(TOKEN)
    data_root = work / "data"
    _training_data(data_root / "train")
    one_class = data_root / "one-class" / "cat"
    one_class.mkdir(parents=True)
    (one_class / "0.png").write_bytes(image_bytes(5, "PNG"))

    with contextlib.ExitStack() as cleanup:
        started = time.time()
        server = start_server("--model-config-file", str(config), "--poll-interval", "0.5",
                              "--load-retry-interval", "0.5", "--admin-token-file", str(work / "token"),
                              "--data-root", str(data_root), "--jobs-dir", str(work / "jobs"),
                              "--retrain-poll-interval", "0.5")
        cleanup.callback(server.stop)
        _break_version(base, 3)
        trainer = _start_training(data_root / "train", base, pushgateway.url, work / "trainer.log")
        cleanup.callback(lambda: trainer.poll() is None and (trainer.kill(), trainer.wait()))
        (work / "prometheus").mkdir()
        prom = start_prometheus(work / "prometheus", project_config(
            server.rest_url.removeprefix("http://"), pushgateway.url.removeprefix("http://")))
        cleanup.callback(prom.stop)
        channel = cleanup.enter_context(grpc.insecure_channel(server.grpc_target))
        api = PrometheusAPI(prom.url)
        _wait(lambda: len(api.query(f'serving_model_version_state{{model="{MODEL}",state="AVAILABLE"}} == 1')) == 2,
              "both versions AVAILABLE in Prometheus")
        traffic = Traffic()
        _send_round(server.rest_url, channel, [1, 2], seed=1, traffic=traffic)
        # a scrape between rounds, so increase() over the window has a first sample to start from
        _wait(lambda: api.query(f'sum(serving_feedback_total{{model="{MODEL}"}}) >= 12'), "feedback scraped")

        auth = {"Authorization": f"Bearer {TOKEN}"}
        response = requests.post(f"{server.rest_url}/v1/models/{MODEL}:retrain", headers=auth,
                                 json={"data": "one-class", "weights": "none"}, timeout=30)
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        _send_round(server.rest_url, channel, [1, 2], seed=2, traffic=traffic)
        trainer.wait(timeout=300)
        output = (work / "trainer.log").read_text()
        assert trainer.returncode == 0, output[-3000:]
        trained_version = int((work / "trainer.out").read_text().strip().splitlines()[-1].rsplit("/", 1)[-1])
        assert trained_version == 4  # 1, 2 exported above, 3 is the broken one
        job = _wait(lambda: (j := requests.get(f"{server.rest_url}/v1/jobs/{job_id}", headers=auth,
                                               timeout=10).json())["state"] in ("SUCCEEDED", "FAILED") and j,
                    "the retrain job to end")
        _wait(lambda: api.query(f'serving_model_version_state{{model="{MODEL}",version="{trained_version}",'
                                f'state="AVAILABLE"}} == 1'), "the trained version served")
        _wait(lambda: api.query(f'trainer_last_version{{model="{MODEL}"}} == {trained_version}'),
              "the trainer's pushed figures scraped")
        _wait(lambda: api.query(f'serving_model_load_failures_total{{model="{MODEL}",version="3"}} >= 1'),
              "load failures of the broken version scraped")
        _send_round(server.rest_url, channel, [1, 2, trained_version], seed=3, traffic=traffic)
        sent = sum(len(flags) for flags in traffic.feedback.values())
        _wait(lambda: api.query(f'sum(serving_feedback_total{{model="{MODEL}"}}) >= {sent}'), "last round scraped")
        time.sleep(2.5)  # rules evaluate every second; let them see the last samples too
        yield Scenario(api, started, time.time(), traffic, trained_version, job)


def _start_training(data: Path, base: Path, pushgateway_url: str, log: Path) -> subprocess.Popen:
    """The real trainer CLI in the background: 1+1 epochs, no pretrained weights, push at the end.

    stdout (the new version's directory) goes to trainer.out beside the log, so pipes never fill.
    """
    command = [sys.executable, "-m", "trainer", "train", "--data", str(data), "--model-name", MODEL,
               "--model-base-path", str(base), "--weights", "none", "--image-size", "32",
               "--epochs", "1", "--ft-epochs", "1", "--batch-size", "8",
               "--pushgateway", pushgateway_url, "--quiet"]
    with log.open("wb") as errors, log.with_suffix(".out").open("wb") as out:
        return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=errors,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def _finite(result: list[dict]) -> list[float]:
    return [float(r["value"][1]) for r in result if math.isfinite(float(r["value"][1]))]


def test_both_targets_are_scraped(scenario: Scenario):
    targets = {t["labels"]["job"]: t["health"] for t in scenario.prometheus.targets()}
    assert targets == {"model-serving": "up", "pushgateway": "up"}


def test_every_dashboard_query_returns_data(scenario: Scenario):
    queries = panel_queries()
    assert len(queries) >= 20
    empty = []
    for query in queries:
        result = scenario.prometheus.query(substitute(query.expr, **VARIABLES))
        if not _finite(result):
            empty.append(f"{query.panel} [{query.ref}]: {query.expr} -> {result}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_template_variables_list_the_model_and_its_versions(scenario: Scenario):
    """Grafana's label_values(metric{...}, label) is the label's values among the selector's series."""
    found = {}
    for variable in template_variables():
        if variable["type"] != "query":
            continue
        inner = variable["query"]["query"].removeprefix("label_values(").removesuffix(")")
        selector, label = (part.strip() for part in inner.rsplit(",", 1))
        series = scenario.prometheus.query(substitute(selector, **VARIABLES))
        found[variable["name"]] = {s["metric"][label] for s in series}
    assert MODEL in found["model"]
    assert {"1", "2", str(scenario.trained_version)} <= found["version"]


def test_every_alert_rule_parses_and_evaluates(scenario: Scenario):
    api = scenario.prometheus
    for rule in alert_rules():
        api.query(rule["expr"])  # raises QueryError on a parse or execution error
    loaded = {rule["name"]: rule for rule in api.rules()}
    assert {rule["alert"] for rule in alert_rules()} <= loaded.keys()
    assert all(rule["health"] == "ok" for rule in loaded.values()), loaded


def test_failed_retrain_job_fires_its_alert(scenario: Scenario):
    assert scenario.retrain_job["state"] == "FAILED"
    firing = scenario.prometheus.query(f'ALERTS{{alertname="RetrainJobFailed",model="{MODEL}",'
                                       f'alertstate="firing"}}')
    assert firing and firing[0]["metric"]["backend"] == "local"
    quiet = scenario.prometheus.query('ALERTS{alertname=~"ServingNoAvailableVersion|ServingHighErrorRatio"}')
    assert quiet == []


def test_online_accuracy_matches_the_feedback_sent(scenario: Scenario):
    """The whole-run ratio (raw counters) equals what the test reported: 4 of 6 right per round."""
    api = scenario.prometheus
    for version, flags in scenario.traffic.feedback.items():
        total = _finite(api.query(f'sum(serving_feedback_total{{model="{MODEL}",version="{version}"}})'))
        correct = _finite(api.query(f'sum(serving_feedback_correct_total{{model="{MODEL}",version="{version}"}})'))
        assert (total, correct) == ([len(flags)], [sum(flags)]), version


def test_drift_series_count_every_prediction(scenario: Scenario):
    """Each prediction (classify over REST/gRPC and :predict) lands in the label and confidence series."""
    api = scenario.prometheus
    for version, sent in scenario.traffic.predictions.items():
        labels = _finite(api.query(f'sum(serving_predicted_label_total{{model="{MODEL}",version="{version}"}})'))
        scores = _finite(api.query(f'sum(serving_prediction_confidence_count{{model="{MODEL}",version="{version}"}})'))
        assert labels == scores == [sent], version


def test_requests_are_counted_per_protocol(scenario: Scenario):
    api = scenario.prometheus
    grpc_ok = _finite(api.query(f'sum(serving_requests_total{{model="{MODEL}",protocol="grpc",outcome="ok"}})'))
    rest_classify = _finite(api.query(f'sum(serving_requests_total{{model="{MODEL}",protocol="rest",'
                                      f'api="classify_image",outcome="ok"}})'))
    assert grpc_ok == [scenario.traffic.grpc_calls] and rest_classify == [scenario.traffic.rest_classify]


def test_render_dashboard_picture(scenario: Scenario, tmp_path):
    out = Path(os.environ.get(DOCS_IMG_ENV) or tmp_path / "dashboard.png")
    if not out.is_absolute():
        out = REPO / out
    empty = render_dashboard(scenario.prometheus, out, scenario.started, scenario.finished, VARIABLES)
    assert empty == [] and out.stat().st_size > 50_000
