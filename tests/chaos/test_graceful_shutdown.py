"""SIGTERM on both protocols at once (tests/serving/test_lifecycle.py covers REST alone).

While slow gRPC and REST requests are in flight: readiness turns false first (/readyz 503 and the
gRPC health service NOT_SERVING), new requests are refused cleanly (REST 503 or a closed socket,
gRPC UNAVAILABLE: never a 500 / INTERNAL), every in-flight request finishes with its answer, and
the process exits 0 within the configured grace period.
"""
from __future__ import annotations

import io
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import requests
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.helpers import export_tiny, image_bytes
from tests.server_process import start_server

GRACE = 12


def _big_smooth_jpeg(seed: int) -> bytes:
    """16 megapixels (under the 25 MP limit) in ~100 kB: slow to decode, cheap to send."""
    ramp = np.linspace(0, 255, 4000, dtype=np.float32)
    pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, ramp[::-1]) / 2,
                       np.full((4000, 4000), seed * 40 % 256, np.float32)], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _predict_request(images: list[bytes]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    return request


def test_sigterm_drains_both_protocols_and_exits_within_grace(tmp_path: Path) -> None:
    export_tiny(tmp_path / "tiny", seed=2)
    slow_batch = [_big_smooth_jpeg(i) for i in range(12)]
    server = start_server("--model-name", "tiny", "--model-base-path", str(tmp_path / "tiny"),
                          "--graceful-timeout", str(GRACE))
    channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    probe = requests.Session()
    try:
        assert probe.get(server.rest_url + "/readyz").status_code == 200        # a kept-alive connection
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        started = time.monotonic()
        stub.Predict(_predict_request(slow_batch), timeout=120)
        slow_seconds = time.monotonic() - started

        results: dict[str, object] = {}
        finished: list[float] = []

        def grpc_call(key: str) -> None:
            try:
                reply = stub.Predict(_predict_request(slow_batch), timeout=120)
                results[key] = len(tf.make_ndarray(reply.outputs["probabilities"]))
            except grpc.RpcError as error:
                results[key] = error.code()
            finished.append(time.monotonic())

        def rest_call(key: str) -> None:
            reply = requests.post(f"{server.rest_url}/v1/models/tiny:classify_image", data=slow_batch[0],
                                  headers={"Content-Type": "image/jpeg"}, timeout=120)
            results[key] = reply.status_code
            finished.append(time.monotonic())

        threads = [threading.Thread(target=grpc_call, args=(f"grpc{i}",)) for i in range(2)]
        threads += [threading.Thread(target=rest_call, args=(f"rest{i}",)) for i in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(min(0.5, slow_seconds / 4))                                     # in flight now
        sigterm = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)

        ready = probe.get(server.rest_url + "/readyz")                            # readiness false first
        assert ready.status_code == 503 and ready.json()["draining"] is True
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status \
            if _health_answers(health) else health_pb2.HealthCheckResponse.NOT_SERVING
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING

        with grpc.insecure_channel(server.grpc_target) as fresh:               # new work is refused
            try:
                prediction_service_pb2_grpc.PredictionServiceStub(fresh).Predict(
                    _predict_request([image_bytes(1)]), timeout=10)
                refused = grpc.StatusCode.OK
            except grpc.RpcError as error:
                refused = error.code()
        assert refused == grpc.StatusCode.UNAVAILABLE, refused
        try:
            late = probe.post(f"{server.rest_url}/v1/models/tiny:classify_image", data=image_bytes(1),
                              headers={"Content-Type": "image/jpeg"}, timeout=10).status_code
        except requests.ConnectionError:
            late = "connection closed"
        assert late in (503, "connection closed"), late

        for thread in threads:
            thread.join(120)
        assert results == {"grpc0": 12, "grpc1": 12, "rest0": 200, "rest1": 200}, results
        assert max(finished) > sigterm, "no request was still in flight at SIGTERM"
        assert server.proc.wait(GRACE + 5) == 0
        assert time.monotonic() - sigterm < GRACE, "exited after the grace period"
    finally:
        channel.close()
        server.stop()


def _health_answers(health: health_pb2_grpc.HealthStub) -> bool:
    """The health service may already be gone (stopped servers refuse all calls): that is NOT_SERVING."""
    try:
        health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        return True
    except grpc.RpcError:
        return False
