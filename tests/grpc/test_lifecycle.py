"""A server that starts with no model: UNAVAILABLE and NOT_SERVING, then versions land on disk and
gRPC health, GetModelStatus and Predict follow the hot swap; SIGTERM ends it cleanly."""
from __future__ import annotations

import signal
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving.protos import image_classifier_pb2 as pb
from serving.protos import image_classifier_pb2_grpc as pb_grpc
from tests.helpers import export_tiny, image_bytes
from tests.server_process import start_server

MODEL = "swap"
State = get_model_status_pb2.ModelVersionStatus.State


def _predict_request(images: int = 1) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["image_bytes"].CopyFrom(
        tf.make_tensor_proto([image_bytes(i) for i in range(images)], dtype=tf.string))
    return request


def _in_background(call, request) -> futures.Future:
    """Start a call in another thread and give it time to reach the server's batch queue."""
    future = futures.ThreadPoolExecutor(1).submit(call, request, timeout=30)
    time.sleep(0.4)
    assert not future.done(), "the call should still be waiting for its batch"
    return future


def _states(models: model_service_pb2_grpc.ModelServiceStub) -> dict[int, str]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = models.GetModelStatus(request, timeout=10)
    return {s.version: State.Name(s.state) for s in response.model_version_status}


def _wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(what)


def test_health_status_and_predict_follow_versions_on_disk(tmp_path: Path) -> None:
    base = tmp_path / MODEL
    base.mkdir()
    # A batch of 4 waits up to 2 s to fill, and one batch may wait: a request of 3 images sits in
    # the queue long enough to be in flight when the queue-full or the SIGTERM case comes. Only
    # TensorFlow's queues wait for partners (LiteRT's take what is queued at once), so this runs
    # on TensorFlow.
    server = start_server("--model-name", MODEL, "--model-base-path", str(base), "--poll-interval", "0.3",
                          "--runtime", "tensorflow",
                          "--max-batch-size", "4", "--max-enqueued-batches", "1",
                          "--batch-timeout-micros", "2000000", "--graceful-timeout", "10", wait_ready=False)
    with server, grpc.insecure_channel(server.grpc_target) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        health = health_pb2_grpc.HealthStub(channel)
        predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        classifier = pb_grpc.ImageClassifierStub(channel)

        # No version on disk: nothing to serve.
        for service in ("", MODEL):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        for call, request in ((predictions.Predict, _predict_request()),
                              (classifier.Classify, pb.ClassifyRequest(model_name=MODEL, image=image_bytes(1)))):
            with pytest.raises(grpc.RpcError) as raised:
                call(request, timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE

        # Version 1 lands: a Watch stream sees SERVING; the status shows it AVAILABLE.
        watch = health.Watch(health_pb2.HealthCheckRequest(service=MODEL), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        export_tiny(base, seed=1, model_name=MODEL)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        assert _wait_for(lambda: _states(models) == {1: "AVAILABLE"}, "version 1 AVAILABLE")
        assert predictions.Predict(_predict_request(), timeout=10).model_spec.version.value == 1

        # Version 2 lands: it becomes AVAILABLE, version 1 is unloaded (END) per the latest-1 policy.
        export_tiny(base, seed=2, model_name=MODEL)
        seen: set[tuple[int, str]] = set()

        def swapped() -> bool:
            states = _states(models)
            seen.update(states.items())
            return states == {2: "AVAILABLE", 1: "END"}

        _wait_for(swapped, f"swap to version 2 (seen {seen})")
        assert predictions.Predict(_predict_request(), timeout=10).model_spec.version.value == 2
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING

        # Queue full: 3 images wait in the queue, 2 more would overflow it -> UNAVAILABLE at once.
        # (A batch of 2 runs first: the batcher runs a lone request at once only right after a
        # batch of one; after real batches a request waits for its batch to fill.)
        assert predictions.Predict(_predict_request(2), timeout=10).model_spec.version.value == 2
        waiting = _in_background(predictions.Predict, _predict_request(3))
        with pytest.raises(grpc.RpcError) as raised:
            predictions.Predict(_predict_request(2), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE and "queue full" in raised.value.details()
        assert waiting.result().model_spec.version.value == 2

        # SIGTERM with a call in flight: health turns NOT_SERVING (an open Watch gets it and is
        # then ended with OK by the server, not cancelled when the 10 s grace runs out), new calls
        # are refused, the in-flight call is answered, the process exits 0.
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        in_flight = _in_background(predictions.Predict, _predict_request(3))
        server.proc.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        time.sleep(0.3)
        with pytest.raises(grpc.RpcError) as raised:
            predictions.Predict(_predict_request(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        response = in_flight.result()
        assert response.model_spec.version.value == 2 and response.outputs["probabilities"].tensor_shape.dim[0].size == 3
        assert list(watch) == [] and watch.code() == grpc.StatusCode.OK
        assert server.proc.wait(30) == 0
