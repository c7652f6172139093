"""A STAND-IN for the Kubernetes API server, on loopback, for the kubernetes retrain backend's tests.

It is not Kubernetes: it speaks only the few endpoints the backend calls (batch/v1 Jobs: create,
list with a label selector, get, delete; v1 Pods: list with a label selector), keeps Jobs and Pods
in dicts, and has no controller: tests move a Job through its lifecycle with `set_status` and
`set_pod_phase`, as the Job controller and the kubelet would. What it shows is that
the backend sends the right requests with the official client and reads the answers correctly;
it says nothing about a real cluster's admission, scheduling or GPUs (docs/deploy.md says so too).
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

_JOBS = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[a-z0-9-]+)/jobs(?:/(?P<name>[a-z0-9.-]+))?$")
_PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[a-z0-9-]+)/pods$")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": reason, "message": message, "code": code}


def _matches(labels: dict[str, str], selector: str) -> bool:
    pairs = [term.split("=", 1) for term in selector.split(",") if term]
    return all(labels.get(key) == value for key, value in pairs)


class ApiServerStandIn:
    """Start with `with ApiServerStandIn() as api:`; `api.url` is the server to point clients at."""

    def __init__(self, token: str = "standin-token") -> None:
        self.token = token
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str]] = []   # (method, path, query)
        self.forbidden = False
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "ApiServerStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        with self._lock:
            self.jobs[(namespace, name)]["status"] = status

    def set_pod_phase(self, namespace: str, job_name: str, phase: str) -> None:
        """One pod of the Job (created on first use) in `phase`, labelled like the Job's template."""
        with self._lock:
            labels = self.jobs[(namespace, job_name)]["spec"]["template"]["metadata"]["labels"]
            pod = {"metadata": {"name": f"{job_name}-pod", "namespace": namespace, "labels": labels},
                   "spec": {"containers": [{"name": "trainer", "image": "x"}]}, "status": {"phase": phase}}
            self.pods[(namespace, pod["metadata"]["name"])] = pod

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self) -> tuple[str, str | None] | None:
                url = urlparse(self.path)
                api.requests.append((self.command, url.path, url.query))
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                    return None
                if api.forbidden:
                    self._send(403, _status(403, "Forbidden", "jobs.batch is forbidden"))
                    return None
                match = _JOBS.match(url.path) or _PODS.match(url.path)
                if not match:
                    self._send(404, _status(404, "NotFound", f"no route {url.path}"))
                    return None
                return match["ns"], match.groupdict().get("name")

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                route = self._route()
                if route is None:
                    return
                namespace, _ = route
                job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                name = job["metadata"]["name"]
                with api._lock:
                    if (namespace, name) in api.jobs:
                        return self._send(409, _status(409, "AlreadyExists", f'jobs.batch "{name}" already exists'))
                    job["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()),
                                           creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                    job["status"] = {}
                    api.jobs[(namespace, name)] = job
                self._send(201, job)

            def do_GET(self) -> None:  # noqa: N802
                route = self._route()
                if route is None:
                    return
                namespace, name = route
                if _PODS.match(urlparse(self.path).path):
                    return self._list_pods(namespace)
                with api._lock:
                    if name:
                        job = api.jobs.get((namespace, name))
                        return self._send(200, job) if job else self._send(404, _status(404, "NotFound", name))
                    selector = parse_qs(urlparse(self.path).query).get("labelSelector", [""])[0]
                    items = [j for (ns, _), j in api.jobs.items()
                             if ns == namespace and _matches(j["metadata"].get("labels", {}), selector)]
                self._send(200, {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items})

            def _list_pods(self, namespace: str) -> None:
                selector = parse_qs(urlparse(self.path).query).get("labelSelector", [""])[0]
                with api._lock:
                    items = [p for (ns, _), p in api.pods.items()
                             if ns == namespace and _matches(p["metadata"]["labels"], selector)]
                self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})

            def do_DELETE(self) -> None:  # noqa: N802
                route = self._route()
                if route is None:
                    return
                with api._lock:
                    job = api.jobs.pop(route, None)
                self._send(200, job) if job else self._send(404, _status(404, "NotFound", str(route[1])))

        return Handler
