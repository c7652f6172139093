"""REST face of retraining: POST /v1/models/{name}:retrain, GET /v1/jobs/{id}, GET /v1/jobs,
DELETE /v1/jobs/{id} (cancel).

Every route needs `Authorization: Bearer <token>`, the token being the content of
--admin-token-file (a mounted Secret in Kubernetes). The file is re-read when it changes, so a
rotated Secret takes effect without a restart; the comparison is constant-time and the token is
never logged or echoed.
"""
from __future__ import annotations

import argparse
import hmac
import os
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request

from serving import metrics
from serving.errors import ServingError
from serving.jobs import JobManager, make_backend


@dataclass(frozen=True)
class RetrainSettings:
    """The retrain flags, typed; they arrive in ServerOptions.extra. An empty value counts as
    unset, so each field's default (the flag's default too) applies."""
    admin_token_file: str | None = None      # unset: the API is disabled (every route 401)
    data_root: str | None = None
    retrain_backend: str = "local"
    jobs_dir: str | None = None
    k8s_namespace: str | None = None
    trainer_job_template: str | None = None
    retrain_poll_interval: float = 2.0

    @classmethod
    def of(cls, options: Any) -> RetrainSettings:
        return cls(**{f.name: options.extra[f.name] for f in fields(cls) if options.extra.get(f.name)})

    def problem(self) -> str | None:
        """Why an enabled API cannot run with these settings, or None."""
        if not self.data_root:
            return "--admin-token-file enables the retrain API, which needs --data-root (training data must lie under it)"
        if self.retrain_backend == "local" and not self.jobs_dir:
            return "--retrain-backend local needs --jobs-dir (where job records and logs are kept)"
        if self.retrain_backend == "kubernetes" and not (self.k8s_namespace and self.trainer_job_template):
            return "--retrain-backend kubernetes needs --k8s-namespace and --trainer-job-template"
        return None


DEFAULTS = RetrainSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The retrain flags (also settable as SERVING_* environment variables)."""
    group = parser.add_argument_group("retrain API (POST /v1/models/{name}:retrain)")
    group.add_argument("--retrain-backend", default=DEFAULTS.retrain_backend, choices=["local", "kubernetes"],
                       help="local: trainer subprocess on this host; kubernetes: a batch/v1 Job per retrain")
    group.add_argument("--admin-token-file",
                       help="file holding the bearer token of the retrain API; without it the API answers 401")
    group.add_argument("--jobs-dir", help="local backend: where job records and logs are kept")
    group.add_argument("--data-root", help="retrain data paths must lie under this directory")
    group.add_argument("--k8s-namespace", help="kubernetes backend: namespace of the trainer Jobs")
    group.add_argument("--trainer-job-template", help="kubernetes backend: the trainer Job manifest")
    group.add_argument("--retrain-poll-interval", type=float, default=DEFAULTS.retrain_poll_interval,
                       help="seconds between refreshes of running jobs (metrics)")


def check_options(options: Any) -> None:
    """The extension hook serving.server.check_startup calls before any model loads: the flag
    combinations blueprint() would refuse, refused first, so a misconfigured server exits at once
    with one line instead of after loading its models, as a gunicorn "Worker failed to boot"."""
    from serving.config import ConfigError

    settings = RetrainSettings.of(options)
    if not settings.admin_token_file:
        return   # the API is disabled; its other flags are unused
    problem = settings.problem()
    if problem:
        raise ConfigError(problem)


def blueprint(core: Any, options: Any) -> Blueprint:
    """The extension hook of serving.config: routes bound to the configured backend.

    Without --admin-token-file every route answers 401 and no backend is built, so a server that
    was not set up for retraining cannot be made to run one.
    """
    settings = RetrainSettings.of(options)
    if not settings.admin_token_file:
        return disabled_blueprint()
    if not settings.data_root:
        raise ValueError("the retrain API needs --data-root (training data must lie under it)")
    backend = make_backend(settings.retrain_backend, jobs_dir=settings.jobs_dir,
                           namespace=settings.k8s_namespace, template_file=settings.trainer_job_template)
    base_paths = {m.name: Path(m.base_path) for m in options.models}
    manager = JobManager(backend, data_root=Path(settings.data_root), base_path_for=base_paths.get,
                         poll_interval=float(settings.retrain_poll_interval))
    bp = retrain_blueprint(manager, AdminToken(Path(settings.admin_token_file)))
    manager.start()
    return bp


class AdminToken:
    """The bearer token from a file, reloaded when the file's mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._token = b""
        self._load()

    def _load(self) -> bytes:
        mtime = os.stat(self.path).st_mtime
        with self._lock:
            if mtime != self._mtime:
                token = self.path.read_bytes().strip()
                if not token:
                    raise ValueError(f"admin token file {self.path} is empty")
                self._token, self._mtime = token, mtime
            return self._token

    def check(self, authorization: str | None) -> None:
        """UNAUTHENTICATED unless the header is `Bearer <the token>`."""
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ServingError("UNAUTHENTICATED", "retrain API: missing bearer token")
        try:
            expected = self._load()
        except (OSError, ValueError) as exc:
            raise ServingError("UNAVAILABLE", f"retrain API: the admin token file is unusable: {exc}") from None
        if not hmac.compare_digest(given.strip().encode(), expected):
            raise ServingError("UNAUTHENTICATED", "retrain API: wrong bearer token")


def _routes_with_errors(bp: Blueprint) -> None:
    """Errors of these routes as the server's JSON errors, plus the header a 401 should carry."""

    @bp.errorhandler(ServingError)
    def _error(exc: ServingError) -> Response:
        response = jsonify(error=exc.message)
        response.status_code = exc.http_status
        if exc.code == "UNAUTHENTICATED":
            response.headers["WWW-Authenticate"] = 'Bearer realm="retrain"'
        return response


def disabled_blueprint() -> Blueprint:
    bp = Blueprint("retrain", __name__)
    _routes_with_errors(bp)

    @bp.route("/v1/models/<name>:retrain", methods=["POST"])
    @bp.route("/v1/jobs", methods=["GET"])
    @bp.route("/v1/jobs/<job_id>", methods=["GET", "DELETE"])
    def disabled(name: str = "", job_id: str = "") -> Response:
        with metrics.track_request(name, "retrain", "rest"):
            raise ServingError("UNAUTHENTICATED", "the retrain API is disabled: the server was started "
                                                  "without --admin-token-file")

    return bp


def retrain_blueprint(manager: JobManager, token: AdminToken) -> Blueprint:
    """The retrain routes, bound to one JobManager and one admin token.

    Each is counted in serving_requests_total{api="retrain"}, failed authentications included.
    """
    bp = Blueprint("retrain", __name__)
    bp.job_manager = manager  # type: ignore[attr-defined]  (so an owner can stop its refresher)
    _routes_with_errors(bp)

    def authenticate() -> None:
        token.check(request.headers.get("Authorization"))

    @bp.post("/v1/models/<name>:retrain")
    def submit(name: str) -> tuple[Response, int]:
        with metrics.track_request(name, "retrain", "rest"):
            authenticate()
            body = request.get_json(silent=True) if request.content_length else {}
            if body is None:
                raise ServingError("INVALID_ARGUMENT", "the request body must be JSON")
            record = manager.submit(name, body)
        response = jsonify(job_id=record.id, job=record.view())
        response.headers["Location"] = f"/v1/jobs/{record.id}"
        return response, 202

    @bp.get("/v1/jobs/<job_id>")
    def get_job(job_id: str) -> Response:
        with metrics.track_request("", "retrain", "rest"):
            authenticate()
            return jsonify(manager.get(job_id).view())

    @bp.delete("/v1/jobs/<job_id>")
    def cancel_job(job_id: str) -> tuple[Response, int]:
        with metrics.track_request("", "retrain", "rest"):
            authenticate()
            return jsonify(manager.cancel(job_id).view()), 202

    @bp.get("/v1/jobs")
    def list_jobs() -> Response:
        with metrics.track_request("", "retrain", "rest"):
            authenticate()
            return jsonify(jobs=[r.view() for r in manager.list(request.args.get("model"))])

    return bp
