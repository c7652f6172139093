"""trainer.pushmetrics against Debian's real Pushgateway: what lands there, and failures that must not raise."""
from __future__ import annotations

import logging
import math

import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.processes import free_port
from trainer.pushmetrics import push_run_metrics

FIGURES = {
    "stage_accuracy": {"stage1": 0.81, "stage2": 0.875},
    "stage_duration_seconds": {"stage1": 12.5, "stage2": 30.25},
    "images_per_second": {"stage1": 310.0, "stage2": 120.5},
    "version": 7,
    "finished_at": 1764288000.0,
}


def gateway_samples(url: str) -> dict[tuple, float]:
    """(name, sorted labels without push_time) -> value, for the trainer's series on the gateway."""
    text = requests.get(url + "/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("trainer_")}


def labels(model: str, **extra: str) -> tuple:
    return tuple(sorted({"job": "trainer", "instance": "", "model": model, **extra}.items()))


def test_push_lands_with_job_and_model_grouping(pushgateway):
    assert push_run_metrics(pushgateway.url, "pizza", FIGURES) is True
    samples = gateway_samples(pushgateway.url)
    assert samples[("trainer_stage_accuracy", labels("pizza", stage="stage1"))] == 0.81
    assert samples[("trainer_stage_accuracy", labels("pizza", stage="stage2"))] == 0.875
    assert samples[("trainer_stage_duration_seconds", labels("pizza", stage="stage2"))] == 30.25
    assert samples[("trainer_images_per_second", labels("pizza", stage="stage1"))] == 310.0
    assert samples[("trainer_last_version", labels("pizza"))] == 7
    assert samples[("trainer_last_success_timestamp_seconds", labels("pizza"))] == 1764288000.0


def test_next_run_replaces_its_model_only(pushgateway):
    assert push_run_metrics(pushgateway.url, "pizza", FIGURES)
    assert push_run_metrics(pushgateway.url, "dogs", FIGURES)
    # a later pizza run without fine-tuning: its stage2 figures must not linger from the last run
    assert push_run_metrics(pushgateway.url, "pizza", {"stage_accuracy": {"stage1": 0.9}, "version": 8})
    samples = gateway_samples(pushgateway.url)
    assert ("trainer_stage_accuracy", labels("pizza", stage="stage2")) not in samples
    assert samples[("trainer_stage_accuracy", labels("pizza", stage="stage1"))] == 0.9
    assert samples[("trainer_last_version", labels("pizza"))] == 8
    assert samples[("trainer_stage_accuracy", labels("dogs", stage="stage2"))] == 0.875
    assert samples[("trainer_last_version", labels("dogs"))] == 7


def test_bad_values_are_skipped_not_fatal(pushgateway, caplog):
    figures = {"stage_accuracy": {"stage1": None, "stage2": "high", "stage3": math.nan, "stage4": 0.5},
               "images_per_second": [1, 2], "version": True, "unknown_key": object()}
    with caplog.at_level(logging.WARNING, logger="trainer.pushmetrics"):
        assert push_run_metrics(pushgateway.url, "odd", figures) is True
    samples = gateway_samples(pushgateway.url)
    odd = {key: value for key, value in samples.items() if ("model", "odd") in key[1]}
    assert odd.pop(("trainer_stage_accuracy", labels("odd", stage="stage4"))) == 0.5
    assert list(key[0] for key in odd) == ["trainer_last_success_timestamp_seconds"]
    assert "stage_accuracy.stage2" in caplog.text and "version is a bool" in caplog.text
    assert "images_per_second is not a {stage: number} mapping" in caplog.text


def test_unreachable_gateway_warns_and_returns_false(caplog):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="trainer.pushmetrics"):
        assert push_run_metrics(url, "pizza", FIGURES, timeout=2) is False
    assert "push to" in caplog.text and "failed" in caplog.text


def test_http_error_from_gateway_warns_and_returns_false(pushgateway, caplog):
    with caplog.at_level(logging.WARNING, logger="trainer.pushmetrics"):
        assert push_run_metrics(pushgateway.url + "/no/such/prefix", "pizza", FIGURES) is False
    assert "failed" in caplog.text
