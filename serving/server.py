"""The serving process: gunicorn (one worker, threads) running the Flask app, gRPC beside it.

One worker means one copy of each model in memory; concurrency comes from gthread threads and
from the batcher, which turns concurrent requests into one model call. The core, the app and the
gRPC server are built inside the worker (after gunicorn forks), never in the arbiter, because
TensorFlow must not be initialised before a fork.

Shutdown (SIGTERM, e.g. from Kubernetes): the worker first reports not ready (`/readyz` 503,
gRPC health NOT_SERVING: `core.begin_drain()`), stops accepting new connections (gunicorn) and new
RPCs (the gRPC server's graceful stop answers UNAVAILABLE), lets in-flight requests finish within
--graceful-timeout (a request arriving on a kept-alive connection meanwhile is still answered,
with `Connection: close`), then releases the models and exits.

gRPC hook: if --grpc-port != 0 the worker imports `serving.grpc_server` and calls
`start_grpc_server(core, options) -> grpc.Server` (bound and started); at exit it calls
`server.stop(grace)` and waits for it.

Ports: `--rest-port any` / `--grpc-port any` bind ports the kernel picks. The arbiter binds REST
before the fork, the worker binds gRPC; so the worker, once both are bound and its SIGTERM handler
is in place, logs them and writes --port-file (temp file + rename: a reader sees all of it or
nothing). The file is removed at start, so one left by an earlier run is never read as this one's;
a worker that gunicorn replaces writes it again. Readiness stays /readyz's: bound is not ready.
"""
from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication

from serving.config import ANY_PORT, ConfigError, ServerOptions, bind_port, extension_modules, parse_args

log = logging.getLogger("serving")


class _Worker:
    """What lives in the worker process: the core, the gRPC server and its stop event."""
    core: Any = None
    grpc_server: Any = None
    grpc_stopped: threading.Event | None = None


def _build_app(options: ServerOptions) -> Any:
    from model_format.tensorflow_logs import import_tensorflow

    import_tensorflow(options.verbose)   # in the worker, after the fork; start-up noise hidden
    from serving.core import ServingCore
    from serving.rest import create_app
    from serving.runtime import configure_tensorflow

    configure_tensorflow(options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism)
    _Worker.core = ServingCore(options)
    _Worker.core.start()
    if options.grpc_port:
        grpc_server = importlib.import_module("serving.grpc_server")
        _Worker.grpc_server = grpc_server.start_grpc_server(_Worker.core, options)
        log.info("gRPC listening on %s:%d", options.host, _Worker.grpc_server.port)
    return create_app(_Worker.core, extension_modules())


def _begin_shutdown(options: ServerOptions, cause: str = "SIGTERM") -> None:
    """First step on SIGTERM (or any worker exit): not ready, refuse new work, start draining gRPC.
    `cause` is logged as it is: a worker that exits for another reason must not claim a SIGTERM."""
    if _Worker.core is not None and not _Worker.core.draining:
        log.info("%s: draining (readiness false, no new connections/RPCs, in-flight requests finish)", cause)
        _Worker.core.begin_drain()
        if _Worker.grpc_server is not None:
            _Worker.grpc_stopped = _Worker.grpc_server.stop(options.graceful_timeout)


def _json_write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own answers to requests it refuses before the app sees them (a URL over its
    request-line limit: 414, oversized headers: 431, a malformed request line: 400), in the API's
    error shape, {"error": ...}, instead of gunicorn's HTML page."""
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    gunicorn_util.write_nonblock(sock, head.encode("latin1") + body)


def _post_worker_init(options: ServerOptions, worker: Any) -> None:
    gunicorn_util.write_error = _json_write_error   # the worker calls util.write_error by name
    gunicorn_handler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        _begin_shutdown(options)
        if callable(gunicorn_handler):
            gunicorn_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    _announce_ports(options, worker)


def _announce_ports(options: ServerOptions, worker: Any) -> None:
    """Log the bound ports and write --port-file: last in the worker's start, so a caller that
    reads the file may SIGTERM at once and get the graceful shutdown. gRPC 0: no gRPC server."""
    ports = {"rest_port": worker.sockets[0].getsockname()[1],
             "grpc_port": _Worker.grpc_server.port if _Worker.grpc_server is not None else 0}
    log.info("REST listening on %s:%d; models %s", options.host, ports["rest_port"],
             ", ".join(f"{m.name} <- {m.base_path}" for m in options.models))
    if options.port_file is not None:
        _write_atomically(options.port_file, json.dumps(ports) + "\n")


def _write_atomically(path: Path, text: str) -> None:
    """Write a temp file in path's directory, then rename it over path (atomic on one file system)."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as temp:
        temp.write(text)
    os.replace(temp.name, path)


def _worker_exit(options: ServerOptions, server: Any, worker: Any) -> None:
    _begin_shutdown(options, "worker exiting")
    if _Worker.grpc_stopped is not None:
        _Worker.grpc_stopped.wait(options.graceful_timeout)
    if _Worker.core is not None:
        _Worker.core.stop()
    log.info("worker stopped")


class ServingApplication(BaseApplication):
    """gunicorn configured from ServerOptions (no gunicorn config file, no command line)."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        o = self.options
        host = f"[{o.host}]" if ":" in o.host else o.host
        settings = {
            "bind": [f"{host}:{bind_port(o.rest_port)}"],
            "workers": 1,
            "worker_class": "gthread",
            "threads": o.threads,
            "worker_connections": max(1000, o.threads * 4),
            "graceful_timeout": int(o.graceful_timeout),
            "timeout": 120,
            "keepalive": 5,
            "loglevel": o.log_level,
            "errorlog": "-",
            "accesslog": None,
            "proc_name": "serving",
            # gunicorn >= 25 opens an unauthenticated control socket (worker count, reload, shutdown)
            # at one fixed path per user; this server needs no such admin door (least privilege).
            "control_socket_disable": True,
            "post_worker_init": lambda worker: _post_worker_init(o, worker),
            "worker_exit": lambda server, worker: _worker_exit(o, server, worker),
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return _build_app(self.options)


def _port_problem(host: str, port: int) -> str | None:
    """Why `port` cannot be listened on at `host` (None: it can). Bound without SO_REUSEPORT, as
    the gRPC server binds, so a port another process listens on is reported."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        return f"cannot resolve --host {host}: {error.strerror}"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as gunicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            reason = "already in use" if error.errno == errno.EADDRINUSE else error.strerror
            return f"{host}:{port} {reason}"
    return None


def check_startup(options: ServerOptions) -> None:
    """Refuse, before any model loads, what would otherwise fail only after loading: flag
    combinations of the extensions and ports that cannot be listened on. Raises ConfigError."""
    for module in extension_modules():
        if hasattr(module, "check_options"):
            module.check_options(options)
    if options.grpc_port not in (0, ANY_PORT) and options.grpc_port == options.rest_port:
        raise ConfigError(f"--grpc-port and --rest-port are both {options.rest_port}")
    for flag, port in (("--rest-port", options.rest_port), ("--grpc-port", options.grpc_port)):
        problem = _port_problem(options.host, port) if port > 0 else None   # not 0 (off), not `any`
        if problem:
            raise ConfigError(f"{flag} {port}: {problem}")
    if options.port_file is not None and not options.port_file.parent.is_dir():
        raise ConfigError(f"--port-file {options.port_file}: {options.port_file.parent} is not a directory")


def _remove_port_file(options: ServerOptions) -> None:
    """Remove an earlier run's --port-file before binding, so that the file, once there, holds this
    run's ports. Raises ConfigError when it cannot be removed (it could not be written either)."""
    if options.port_file is None:
        return
    try:
        options.port_file.unlink(missing_ok=True)
    except OSError as error:
        raise ConfigError(f"--port-file {options.port_file}: {error.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse_args(argv)
        check_startup(options)
        _remove_port_file(options)
    except ConfigError as error:
        print(f"serving: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=options.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ServingApplication(options).run()
    return 0
