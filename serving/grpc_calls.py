"""Where one gRPC call meets the serving core: metrics and status codes, the same for every RPC.

Each RPC body runs inside `rpc(context, model, api)`: it is counted and timed with
protocol="grpc" through the metrics helper REST uses, and a `ServingError` raised by the core
becomes the gRPC status of the one shared code table (serving/errors.py). Anything else is a bug:
logged with its traceback and answered INTERNAL without leaking details to the client.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import grpc

from serving import metrics
from serving.errors import ServingError

log = logging.getLogger(__name__)
PROTOCOL = "grpc"


@contextmanager
def rpc(context: grpc.ServicerContext, model: str, api: str) -> Iterator[metrics.RequestTrack]:
    """Run one RPC body; set `track.version` once the core has resolved it."""
    try:
        with metrics.track_request(model, api, PROTOCOL) as track:
            yield track
    except ServingError as error:
        context.abort(error.grpc_status, error.message)
    except Exception:
        log.exception("gRPC %s for model %r failed", api, model)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error in {api}; see the server log")
