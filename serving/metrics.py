"""The server's Prometheus metrics: the one place their names, labels and buckets are defined.

Dashboards and alerts (k8s/monitoring) are built on exactly these names, so they are module
constants in one registry that `/metrics` exposes. Every series that belongs to a model version
carries `model` and `version` labels; `version` is "" when a request failed before one was chosen.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for /metrics)

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (.001, .0025, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .15, .25, .5,
                    1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)
_QUEUE_BUCKETS = (.0001, .0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1.0)
_LOAD_BUCKETS = (.1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_CONFIDENCE_BUCKETS = (.1, .2, .3, .4, .5, .6, .7, .8, .9, .95, .99, 1.0)

REQUESTS = Counter("serving_requests_total", "Requests by model, version, API, protocol and outcome.",
                   ["model", "version", "api", "protocol", "outcome"], registry=REGISTRY)
REQUEST_DURATION = Histogram("serving_request_duration_seconds", "Request latency inside the server.",
                             ["model", "version", "api", "protocol"], buckets=_LATENCY_BUCKETS,
                             registry=REGISTRY)
BATCH_SIZE = Histogram("serving_batch_size", "Items (images/rows) per batch run on the model.",
                       ["model", "version"], buckets=_BATCH_BUCKETS, registry=REGISTRY)
QUEUE_WAIT = Histogram("serving_queue_wait_seconds", "Time a request waited in the batch queue.",
                       ["model", "version"], buckets=_QUEUE_BUCKETS, registry=REGISTRY)
LOAD_DURATION = Histogram("serving_model_load_duration_seconds",
                          "Load + signature check + warm-up time of a version.",
                          ["model", "version"], buckets=_LOAD_BUCKETS, registry=REGISTRY)
LOAD_FAILURES = Counter("serving_model_load_failures_total", "Failed load attempts of a version.",
                        ["model", "version"], registry=REGISTRY)
VERSION_STATE = Gauge("serving_model_version_state",
                      "1 for the state a version is in (START/LOADING/AVAILABLE/UNLOADING/END), else 0.",
                      ["model", "version", "state"], registry=REGISTRY)
RUNTIME_INFO = Gauge("serving_model_runtime_info",
                     "1 for the runtime and precision serving a loaded version (join on model, version).",
                     ["model", "version", "runtime", "precision"], registry=REGISTRY)
RUNTIME_FALLBACKS = Counter("serving_model_runtime_fallbacks_total",
                            "Versions served by a slower runtime or precision than configured, by cause "
                            "(conversion_failed, invalid_form, mismatch, precision_refused, no_contract).",
                            ["model", "version", "cause"], registry=REGISTRY)
EVAL_ACCURACY = Gauge("serving_model_eval_accuracy",
                      "Offline evaluation accuracy from the loaded version's metadata.json.",
                      ["model", "version", "stage"], registry=REGISTRY)
CONFIDENCE = Histogram("serving_prediction_confidence", "Top-1 score of each prediction.",
                       ["model", "version"], buckets=_CONFIDENCE_BUCKETS, registry=REGISTRY)
PREDICTED_LABEL = Counter("serving_predicted_label_total", "Predictions by top-1 label.",
                          ["model", "version", "label"], registry=REGISTRY)
FEEDBACK = Counter("serving_feedback_total", "Predictions that received a true label.",
                   ["model", "version"], registry=REGISTRY)
FEEDBACK_CORRECT = Counter("serving_feedback_correct_total",
                           "Labelled predictions whose top-1 label was right.",
                           ["model", "version"], registry=REGISTRY)
RETRAIN_JOBS = Counter("serving_retrain_jobs_total", "Finished retrain jobs.",
                       ["model", "backend", "state"], registry=REGISTRY)
RETRAIN_RUNNING = Gauge("serving_retrain_jobs_running", "Retrain jobs running now.", ["model"],
                        registry=REGISTRY)

STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")
UNKNOWN_MODEL = "_unknown"
_served_models: frozenset[str] = frozenset()


def serve_models(names: list[str]) -> None:
    """Name the configured models. Requests for any other name are counted under
    UNKNOWN_MODEL: a client inventing model names must not create unbounded label series."""
    global _served_models
    _served_models = frozenset(names)


def model_label(name: str) -> str:
    """The `model` label for a requested name: itself if configured, else UNKNOWN_MODEL."""
    return name if name in _served_models or not name else UNKNOWN_MODEL


def start_version_series(model: str, version: int) -> None:
    """Create a new version's feedback counters at 0, so `increase()` over them counts the
    version's first feedback too (a counter born at its first increment loses that step)."""
    FEEDBACK.labels(model, str(version))
    FEEDBACK_CORRECT.labels(model, str(version))


def set_version_state(model: str, version: int, state: str) -> None:
    """Mark `state` as the current one of a version (1) and every other state 0."""
    for name in STATES:
        VERSION_STATE.labels(model, str(version), name).set(1 if name == state else 0)


def exposition() -> bytes:
    """The text exposition of every serving metric (the body of GET /metrics)."""
    return generate_latest(REGISTRY)


class RequestTrack:
    """What an adapter learns while serving one request; `version` is set once it is resolved."""

    def __init__(self, model: str, api: str, protocol: str) -> None:
        self.model, self.api, self.protocol = model, api, protocol
        self.version: int | str = ""
        self.outcome = "ok"


@contextmanager
def track_request(model: str, api: str, protocol: str) -> Iterator[RequestTrack]:
    """Count one request and time it: outcome "ok", or the lowercase error code it raised.

    Usage (REST and gRPC alike):
        with track_request(name, "predict", "grpc") as track:
            track.version, outputs = core.predict(...)
    """
    from serving.errors import ServingError

    track = RequestTrack(model, api, protocol)
    started = time.perf_counter()
    try:
        yield track
    except ServingError as error:
        track.outcome = error.outcome
        track.version = track.version or error.version
        raise
    except BaseException:
        track.outcome = "internal"
        raise
    finally:
        version, label = str(track.version), model_label(model)
        REQUESTS.labels(label, version, api, protocol, track.outcome).inc()
        REQUEST_DURATION.labels(label, version, api, protocol).observe(time.perf_counter() - started)
