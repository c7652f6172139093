"""A closed-loop load generator for HTTP and gRPC that measures its own CPU cost.

Closed loop: `concurrency` workers each send one request, wait for the answer, and send the next,
so the offered load adapts to the server and the figures are the server's, not a queue's in the
client. Request bodies are built once before the run; the loop only sends and reads, so on two
shared cores the generator takes a small, reported share of the CPU (`loadgen_cpu_pct`: CPU time
of this process over wall time, in percent of one core).

Throughput counts requests completed inside the measurement window (after a warm-up); latency is
per request, from send to the last byte of the answer.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Awaitable, Callable

import numpy as np

Send = Callable[[int], Awaitable[None]]


class RequestFailed(Exception):
    """A non-OK answer (HTTP status or gRPC code) from the system under test."""


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    requests: int
    errors: int
    images_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    loadgen_cpu_pct: float
    load_avg_1m: float
    first_error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


async def closed_loop(send: Send, items: int, concurrency: int, seconds: float, warmup: float) -> LoadResult:
    """Drive `send(i)` (i cycles through `items` request bodies) from `concurrency` workers."""
    start = time.perf_counter()
    window_start, window_end = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    errors: list[str] = []

    async def worker(offset: int) -> None:
        i = offset
        while (sent := time.perf_counter()) < window_end:
            try:
                await send(i % items)
                failed = None
            except Exception as error:  # any failure is a failed request, counted and reported
                failed = f"{type(error).__name__}: {error}"[:300]
            done = time.perf_counter()
            if window_start <= done <= window_end:
                if failed:
                    errors.append(failed)
                else:
                    latencies.append(done - sent)
            i += concurrency

    cpu_start, wall_start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    cpu = 100 * (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    ms = np.array(latencies or [float("nan")]) * 1000
    return LoadResult(
        concurrency=concurrency, seconds=seconds, requests=len(latencies), errors=len(errors),
        images_per_s=len(latencies) / seconds, p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)), p99_ms=float(np.percentile(ms, 99)), mean_ms=float(ms.mean()),
        loadgen_cpu_pct=cpu, load_avg_1m=os.getloadavg()[0], first_error=errors[0] if errors else "")


def predict_bodies(images: list[bytes]) -> list[bytes]:
    """TF Serving REST `:predict` bodies, one image each as `{"b64": ...}` (row format)."""
    return [json.dumps({"instances": [{"b64": base64.b64encode(image).decode()}]}).encode() for image in images]


async def run_http(url: str, bodies: list[bytes], content_type: str, concurrency: int,
                   seconds: float, warmup: float) -> LoadResult:
    """POST `bodies` to `url` in a closed loop over one keep-alive connection per worker."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"Content-Type": content_type}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def send(i: int) -> None:
            async with session.post(url, data=bodies[i], headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    raise RequestFailed(f"HTTP {response.status}: {body[:200]!r}")

        return await closed_loop(send, len(bodies), concurrency, seconds, warmup)


def grpc_predict_requests(model_name: str, images: list[bytes]) -> list:
    """tensorflow.serving PredictRequests on `serving_default`, one image each."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import model_pb2, predict_pb2

    requests = []
    for image in images:
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, string_val=[image],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]))
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
        request.inputs["image_bytes"].CopyFrom(tensor)
        requests.append(request)
    return requests


async def run_grpc(target: str, requests: list, concurrency: int, seconds: float, warmup: float) -> LoadResult:
    """PredictionService.Predict in a closed loop over one HTTP/2 channel (as stub users do)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        async def send(i: int) -> None:
            try:
                await stub.Predict(requests[i], timeout=60)
            except grpc.aio.AioRpcError as error:
                raise RequestFailed(f"{error.code().name}: {error.details()}") from None

        return await closed_loop(send, len(requests), concurrency, seconds, warmup)
