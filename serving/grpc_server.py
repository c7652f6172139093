"""The gRPC server of the serving process: TF Serving's services, ours, health and reflection.

Runs inside the gunicorn worker beside the REST app and shares its ServingCore, so both protocols
use one copy of each model, one batcher and one set of metrics. serving/server.py calls
`start_grpc_server(core, options)` at worker start and `.stop(grace)` on SIGTERM.

Health (grpc.health.v1.Health) answers for service "" (the whole server: every model has an
available version), for each served model's name, and for each service's full name; all are
NOT_SERVING until ready and again from the moment shutdown begins, so Kubernetes gRPC probes
and load balancers see what /readyz says. Reflection lets grpcurl-style tools list and call the
services without .proto files.
"""
from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Any, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
# The *_pb2 service modules are imported for their descriptors: TF Serving's *_pb2_grpc modules
# import only the request/response messages, and reflection can describe only what is registered.
from tensorflow_serving.apis import (model_service_pb2, model_service_pb2_grpc, prediction_service_pb2,
                                     prediction_service_pb2_grpc)

from serving.config import bind_port
from serving.core import ServingCore
from serving.grpc_image import ImageClassifier
from serving.grpc_tfs import ModelService, PredictionService
from serving.protos import image_classifier_pb2, image_classifier_pb2_grpc

log = logging.getLogger(__name__)

HEALTH_REFRESH_SECONDS = 0.5
SERVICE_NAMES = (
    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    image_classifier_pb2.DESCRIPTOR.services_by_name["ImageClassifier"].full_name,
)
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def max_message_bytes(options: Any) -> int:
    """--grpc-max-message-bytes, or the REST body limit (--max-request-bytes) when not given."""
    return getattr(options, "grpc_max_message_bytes", 0) or options.max_request_bytes


class ModelHealth(health.HealthServicer):
    """grpc.health.v1.Health following the core's readiness.

    Check reads the core at the moment of the call (so it never lags /readyz); Watch streams are
    fed by a refresh every HEALTH_REFRESH_SECONDS, since readiness has no event to hook.
    """

    def __init__(self, core: ServingCore) -> None:
        super().__init__(experimental_non_blocking=True)
        self._core = core
        self._published: dict[str, int] = {}
        self._publish_lock = threading.Lock()   # not `_lock`: the base class uses that name
        self._watchers: set[Callable[[Any], None]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="grpc-health", daemon=True)

    def start(self) -> None:
        self.refresh()
        self._thread.start()

    def refresh(self) -> None:
        """Publish statuses that changed (Watch streams get a message per change, not per poll)."""
        draining = self._core.draining
        statuses = {model: _SERVING if not draining and self._core.manager.available_versions(model)
                    else _NOT_SERVING for model in self._core.model_names()}
        overall = _SERVING if self._core.ready() else _NOT_SERVING
        statuses.update(dict.fromkeys(("", *SERVICE_NAMES), overall))
        with self._publish_lock:
            for service, status in statuses.items():
                if self._published.get(service) != status:
                    self._published[service] = status
                    self.set(service, status)

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> Any:
        self.refresh()
        return super().Check(request, context)

    def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext,
              send_response_callback: Callable[[Any], None] | None = None) -> Any:
        """As the base class, but remembered so that shutdown can end the stream: an open Watch
        (gRPC client-side health checking keeps one) would otherwise hold the server's graceful
        stop for the whole grace period."""
        if send_response_callback is None:
            return super().Watch(request, context)
        send = _once_ended(send_response_callback)
        with self._publish_lock:
            self._watchers.add(send)
        context.add_callback(lambda: self._forget(send))
        return super().Watch(request, context, send)

    def _forget(self, send: Callable[[Any], None]) -> None:
        with self._publish_lock:
            self._watchers.discard(send)

    def _loop(self) -> None:
        while not self._stop.wait(HEALTH_REFRESH_SECONDS):
            try:
                self.refresh()
            except Exception:   # never let a status glitch kill the refresher
                log.exception("gRPC health refresh failed")

    def shut_down(self) -> None:
        """NOT_SERVING for every service from now on (later refreshes are ignored); open Watch
        streams get that status and then end with OK."""
        self._stop.set()
        self.enter_graceful_shutdown()
        with self._publish_lock:
            watchers, self._watchers = list(self._watchers), set()
        for send in watchers:
            send(None)


def _once_ended(send: Callable[[Any], None]) -> Callable[[Any], None]:
    """A Watch stream's send callback that ignores everything after the end (None) was sent, so
    ending it at shutdown and the base class's end-on-close cannot send two final statuses."""
    ended = threading.Event()

    def guarded(response: Any) -> None:
        if ended.is_set():
            return
        if response is None:
            ended.set()
        send(response)

    return guarded


class GrpcServer:
    """A started grpc.Server with its health servicer; `stop(grace)` is the graceful shutdown."""

    def __init__(self, server: grpc.Server, port: int, health_servicer: ModelHealth) -> None:
        self.server, self.port, self.health = server, port, health_servicer

    def stop(self, grace: float | None) -> threading.Event:
        """Report NOT_SERVING, refuse new calls at once, give in-flight calls `grace` seconds.

        Returns an event that is set when the server has stopped (grpc.Server.stop semantics).
        """
        self.health.shut_down()
        return self.server.stop(grace)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)


def start_grpc_server(core: ServingCore, options: Any) -> GrpcServer:
    """Build, bind (options.host:options.grpc_port) and start the gRPC server. The port it bound
    (the kernel's pick for `any`) is the returned server's `port`."""
    limit = max_message_bytes(options)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.threads, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", limit),
                 ("grpc.so_reuseport", 0)])   # a taken port must fail, not be silently shared
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(core, limit), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
    image_classifier_pb2_grpc.add_ImageClassifierServicer_to_server(ImageClassifier(core), server)
    health_servicer = ModelHealth(core)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    host = f"[{options.host}]" if ":" in options.host else options.host
    port = server.add_insecure_port(f"{host}:{bind_port(options.grpc_port)}")
    health_servicer.start()
    server.start()
    log.info("gRPC on %s:%d (max message %d bytes): %s", host, port, limit, ", ".join(SERVICE_NAMES))
    return GrpcServer(server, port, health_servicer)
