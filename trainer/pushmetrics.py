"""Push one training run's figures to a Prometheus Pushgateway.

WHY a Pushgateway: a training run is a batch job. It ends before Prometheus could scrape it, so
it pushes its final figures once, at the end of a successful run, and the Pushgateway keeps them
for Prometheus to scrape (with ``honor_labels: true``, so ``job`` and ``model`` survive).

The push uses its own ``CollectorRegistry`` (never the process default, which would drag along
process metrics), ``job="trainer"`` and the grouping key ``{"model": model_name}``: a new run of
the same model replaces that model's previous figures (``push_to_gateway`` is a PUT of the group),
runs of other models are untouched. The ``model`` label comes from the grouping key, so the metrics
themselves do not carry it (the Pushgateway rejects pushes whose labels contradict the key).

Metric names (the dashboard and alert rules of k8s/monitoring read them; docs/monitoring.md) and
the ``figures`` key each comes from:

    trainer_stage_accuracy{model,stage}            figures["stage_accuracy"][stage]
    trainer_stage_duration_seconds{model,stage}    figures["stage_duration_seconds"][stage]
    trainer_images_per_second{model,stage}         figures["images_per_second"][stage]
    trainer_last_version{model}                    figures["version"]
    trainer_last_success_timestamp_seconds{model}  figures["finished_at"] (unix time), else now

``figures`` as trainer.train.run_figures builds it::

    {
        "stage_accuracy": {"stage1": 0.91, "stage2": 0.94},   # evaluation accuracy per stage
        "stage_duration_seconds": {"stage1": 12.5, "stage2": 30.1},
        "images_per_second": {"stage1": 310.0, "stage2": 120.0},
        "version": 7,                                       # the version the run exported
        "finished_at": 1764288000.0,
    }

Tolerant by design: any key may be missing, unknown keys are ignored, values that are not finite
numbers (None, strings, NaN) are skipped with a warning. A failed push (gateway down, bad URL,
HTTP error) logs a warning and returns False: monitoring must never fail a training run that
already produced a good model.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

log = logging.getLogger(__name__)

JOB = "trainer"
PUSH_TIMEOUT_SECONDS = 10.0

# figures key ({stage: number}) -> (metric name, help)
STAGE_METRICS: dict[str, tuple[str, str]] = {
    "stage_accuracy": ("trainer_stage_accuracy",
                       "Evaluation accuracy of the model at the end of a training stage."),
    "stage_duration_seconds": ("trainer_stage_duration_seconds", "Wall time of a training stage."),
    "images_per_second": ("trainer_images_per_second", "Training throughput of a stage."),
}


def _number(value: Any, where: str) -> float | None:
    """The value as a finite float, or None (with a warning) when it is not one."""
    if isinstance(value, bool) or value is None:
        if value is not None:
            log.warning("pushmetrics: %s is a bool, not a number; skipped", where)
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        log.warning("pushmetrics: %s=%r is not a number; skipped", where, value)
        return None
    if not math.isfinite(number):
        log.warning("pushmetrics: %s=%r is not finite; skipped", where, value)
        return None
    return number


def build_registry(figures: Mapping[str, Any]) -> CollectorRegistry:
    """A fresh registry holding the trainer_* gauges for one run's figures."""
    registry = CollectorRegistry()
    figures = figures if isinstance(figures, Mapping) else {}
    for key, (name, text) in STAGE_METRICS.items():
        per_stage = figures.get(key)
        if per_stage is None:
            continue
        if not isinstance(per_stage, Mapping):
            log.warning("pushmetrics: %s is not a {stage: number} mapping; skipped", key)
            continue
        gauge = Gauge(name, text, ["stage"], registry=registry)
        for stage, raw in per_stage.items():
            value = _number(raw, f"{key}.{stage}")
            if value is not None:
                gauge.labels(stage=str(stage)).set(value)
    version = _number(figures.get("version"), "version")
    if version is not None:
        Gauge("trainer_last_version", "Version number the last successful run exported.",
              registry=registry).set(version)
    finished = _number(figures.get("finished_at"), "finished_at")
    Gauge("trainer_last_success_timestamp_seconds", "Unix time the last successful run finished.",
          registry=registry).set(time.time() if finished is None else finished)
    return registry


def push_run_metrics(url: str, model_name: str, figures: Mapping[str, Any],
                     timeout: float = PUSH_TIMEOUT_SECONDS) -> bool:
    """Push the run's figures to the Pushgateway at ``url``; True on success, never raises."""
    try:
        registry = build_registry(figures)
        push_to_gateway(url, job=JOB, registry=registry, grouping_key={"model": model_name},
                        timeout=timeout)
    except Exception as error:  # noqa: BLE001 - a monitoring failure must not fail training
        log.warning("pushmetrics: push to %s for model %r failed: %s", url, model_name, error)
        return False
    log.info("pushmetrics: pushed run figures for model %r to %s", model_name, url)
    return True
