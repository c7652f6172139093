"""JobManager: the one entry point of the retrain API, whatever backend runs the trainer.

It validates options, enforces one active retrain per model (ALREADY_EXISTS -> 409), records the
model's highest version as the job's baseline, hands the job to the backend, and keeps the
retrain metrics current from a small background refresher (so a job that ends between requests
is still counted, and a local job's exit is noticed without anyone asking).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Protocol

from serving import metrics
from serving.errors import ServingError
from serving.jobs.options import validate_options
from serving.jobs.record import FINAL_STATES, JobRecord, new_job_id
from serving.jobs.versions import highest_version

log = logging.getLogger(__name__)


class Backend(Protocol):
    """Runs trainer jobs and is the store of their records (disk for local, the cluster for k8s)."""

    name: str
    checks_data_locally: bool

    def submit(self, record: JobRecord, base_path: Path) -> None: ...
    def get_job(self, job_id: str) -> JobRecord | None: ...
    def list_jobs(self) -> list[JobRecord]: ...
    def cancel(self, record: JobRecord) -> JobRecord: ...


class JobManager:
    """Retrain jobs of the models this server serves."""

    def __init__(self, backend: Backend, *, data_root: Path,
                 base_path_for: Callable[[str], Path | None], poll_interval: float = 2.0) -> None:
        """base_path_for(model) gives a served model's base path, None for an unknown model."""
        self.backend = backend
        self.data_root = Path(data_root)
        self.base_path_for = base_path_for
        self.poll_interval = poll_interval
        self._submit_lock = threading.Lock()
        self._metrics_lock = threading.Lock()   # the refresher and requests both update metrics
        self._counted: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, model: str, body: object) -> JobRecord:
        base_path = self.base_path_for(model)
        if base_path is None:
            raise ServingError("NOT_FOUND", f"model {model!r} is not served here, so it cannot be retrained")
        options = validate_options(body, data_root=str(self.data_root),
                                   must_exist=self.backend.checks_data_locally)
        with self._submit_lock:
            running = [r for r in self.backend.list_jobs() if r.model == model and r.active]
            if running:
                raise ServingError("ALREADY_EXISTS", f"model {model!r} already has retrain job "
                                                     f"{running[0].id} ({running[0].state}); one at a time")
            record = JobRecord(id=new_job_id(), model=model, backend=self.backend.name, options=options,
                               baseline_version=highest_version(Path(base_path)))
            self.backend.submit(record, Path(base_path))
        log.info("retrain job %s for model %s submitted (%s backend)", record.id, model, self.backend.name)
        try:
            self.list()   # the running gauge includes the new job at once
        except ServingError as exc:   # the job exists; the refresher will catch up
            log.warning("retrain: metrics refresh after submit failed: %s", exc.message)
        return record

    def get(self, job_id: str) -> JobRecord:
        record = self.backend.get_job(job_id)
        if record is None:
            raise ServingError("NOT_FOUND", f"no retrain job {job_id!r}")
        if record.state in FINAL_STATES and record.id not in self._counted:
            self.list()   # a client that sees a job end also sees it in the metrics
        return record

    def cancel(self, job_id: str) -> JobRecord:
        """Stop an active job; a finished one cannot be cancelled (FAILED_PRECONDITION)."""
        record = self.get(job_id)
        if not record.active:
            raise ServingError("FAILED_PRECONDITION", f"retrain job {job_id} already finished ({record.state})")
        log.info("retrain job %s for model %s: cancel requested", job_id, record.model)
        return self.backend.cancel(record)

    def list(self, model: str | None = None) -> list[JobRecord]:
        records = self.backend.list_jobs()
        self._update_metrics(records)
        return [r for r in records if model is None or r.model == model]

    def _update_metrics(self, records: list[JobRecord]) -> None:
        """Count each job once when it is first seen final; set the running gauge per model."""
        with self._metrics_lock:
            self._count(records)

    def _count(self, records: list[JobRecord]) -> None:
        running: dict[str, int] = {}
        for record in records:
            running.setdefault(record.model, 0)
            if record.active:
                running[record.model] += 1
            elif record.state in FINAL_STATES and record.id not in self._counted:
                self._counted.add(record.id)
                metrics.RETRAIN_JOBS.labels(record.model, record.backend, record.state.lower()).inc()
        for model, count in running.items():
            metrics.RETRAIN_RUNNING.labels(model).set(count)

    def start(self) -> None:
        """Begin background refreshes. Jobs already final now are not counted (counted before)."""
        try:
            self._counted.update(r.id for r in self.backend.list_jobs() if r.state in FINAL_STATES)
        except ServingError as exc:
            log.warning("retrain: cannot list jobs at start: %s", exc.message)
        self._thread = threading.Thread(target=self._refresh_loop, name="retrain-refresher", daemon=True)
        self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.list()
            except ServingError as exc:  # e.g. the API server is briefly unreachable
                log.warning("retrain: refresh failed: %s", exc.message)
            except Exception:  # keep refreshing; never take the server down
                log.exception("retrain: refresh failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
