"""The `local` retrain backend: the trainer as a subprocess of the serving host.

Each job is three small files in the jobs directory: `<id>.json` (the record), `<id>.log` (trainer
output) and `<id>.exit.json` (written by serving.jobs.runner when the trainer ends). The record on
disk is the truth, so a restarted server lists every job, finishes the bookkeeping of jobs that
ended while it was down, and marks as failed a job whose runner process is gone without a status.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from serving.jobs.options import trainer_arguments
from serving.jobs.record import FAILED, RUNNING, SUCCEEDED, JobRecord, utc_timestamp
from serving.jobs.versions import export_summary, version_after


def _process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None if the process is gone.

    Comparing it guards against a recycled pid; a zombie counts as gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return None if fields[0] == "Z" else fields[19]


def _last_line(log: Path, limit: int = 300) -> str:
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-limit:] if lines else ""


class LocalBackend:
    """Runs `python -m trainer train` beside the server, writing into the model's base path."""

    name = "local"
    checks_data_locally = True

    def __init__(self, jobs_dir: Path, *, python: str = sys.executable) -> None:
        self.jobs_dir = Path(jobs_dir)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self._children: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()

    def _path(self, job_id: str, suffix: str) -> Path:
        return self.jobs_dir / f"{job_id}{suffix}"

    def _save(self, record: JobRecord) -> None:
        """Write-then-rename, so a reader never sees half a record."""
        tmp = self._path(record.id, f".json.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(record.to_dict(), indent=1))
        os.replace(tmp, self._path(record.id, ".json"))

    def command(self, record: JobRecord, base_path: Path) -> list[str]:
        """The exact trainer command line (the same one the kubernetes backend puts in a Job)."""
        return [self.python, "-m", "trainer", "train", *trainer_arguments(record.options),
                "--model-name", record.model, "--model-base-path", str(base_path)]

    def submit(self, record: JobRecord, base_path: Path) -> None:
        log = self._path(record.id, ".log")
        exit_file = self._path(record.id, ".exit.json")
        runner = [self.python, "-m", "serving.jobs.runner", "--exit-file", str(exit_file), "--",
                  *self.command(record, Path(base_path).resolve())]
        record.details = {"base_path": str(Path(base_path).resolve()), "log_file": str(log)}
        with log.open("ab") as out:
            child = subprocess.Popen(runner, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.jobs_dir, start_new_session=True)
        record.details.update(pid=child.pid, pid_start=_process_start_time(child.pid))
        record.state, record.started_at = RUNNING, utc_timestamp()
        with self._lock:
            self._children[record.id] = child
        self._save(record)

    def _refresh(self, record: JobRecord) -> JobRecord:
        """Bring a RUNNING record up to date from its exit file or its process; save if it changed.

        Serialized: the manager's refresher and request threads may look at the same job at once.
        """
        if record.state != RUNNING:
            return record
        with self._refresh_lock:
            current = self._load(record.id)
            return self._update(current) if current is not None else record

    def _update(self, record: JobRecord) -> JobRecord:
        if record.state != RUNNING:
            return record
        with self._lock:
            child = self._children.get(record.id)
        if child is not None and child.poll() is not None:  # reap our own child
            with self._lock:
                self._children.pop(record.id, None)
        # Liveness first, then the exit file: the runner writes the file before it exits, so a
        # runner seen dead here has either left its status or died without one.
        alive = self._alive(record)
        exit_file = self._path(record.id, ".exit.json")
        if exit_file.exists():
            status = json.loads(exit_file.read_text())
            self._finish(record, status["exit_code"], status["finished_at"])
        elif not alive:
            record.state, record.finished_at = FAILED, utc_timestamp()
            record.exit_reason = "the trainer's runner process is gone without an exit status " \
                                 "(killed, or the host restarted)"
            if record.details.get("cancel_requested"):
                record.exit_reason = f"cancelled: {record.exit_reason}"
            self._save(record)
        return record

    @staticmethod
    def _alive(record: JobRecord) -> bool:
        started = _process_start_time(record.details.get("pid", -1))
        return started is not None and started == record.details.get("pid_start")

    def _finish(self, record: JobRecord, exit_code: int, finished_at: float) -> None:
        record.finished_at = utc_timestamp(finished_at)
        produced = version_after(Path(record.details["base_path"]), record.baseline_version)
        if exit_code == 0 and produced is not None:
            record.state, record.produced_version = SUCCEEDED, produced
            record.training = export_summary(Path(record.details["base_path"]), produced)
        elif exit_code == 0:
            record.state, record.exit_reason = FAILED, "the trainer exited 0 but no new version appeared"
        else:
            how = f"killed by signal {-exit_code}" if exit_code < 0 else f"exited with code {exit_code}"
            record.state = FAILED
            record.exit_reason = f"trainer {how}: {_last_line(Path(record.details['log_file']))}"
        if record.details.get("cancel_requested") and record.state == FAILED:
            record.exit_reason = f"cancelled: {record.exit_reason}"
        self._save(record)

    def cancel(self, record: JobRecord) -> JobRecord:
        """SIGTERM to the runner, which passes it on: the trainer unwinds (staging cleaned up) and
        the exit status is still recorded. The record says it was cancelled."""
        with self._refresh_lock:
            record = self._load(record.id) or record
            record.details["cancel_requested"] = True
            self._save(record)
        if self._alive(record):
            os.kill(record.details["pid"], signal.SIGTERM)
        return record

    def _load(self, job_id: str) -> JobRecord | None:
        path = self._path(job_id, ".json")
        if not job_id.isalnum() or not path.exists():
            return None
        return JobRecord.from_dict(json.loads(path.read_text()))

    def get_job(self, job_id: str) -> JobRecord | None:
        record = self._load(job_id)
        return None if record is None else self._refresh(record)

    def list_jobs(self) -> list[JobRecord]:
        ids = [p.name[: -len(".json")] for p in self.jobs_dir.glob("*.json") if p.name.count(".") == 1]
        records = [self.get_job(i) for i in ids]
        return sorted((r for r in records if r is not None), key=lambda r: (r.created_at, r.id))
