"""The retrain job record: what a client sees at GET /v1/jobs/{id}, whatever backend ran the job.

A record is plain data so the local backend can keep it as a small JSON file (surviving a server
restart) and the kubernetes backend can rebuild it from a Job's labels, annotations and conditions.
"""
from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
ACTIVE_STATES = frozenset({PENDING, RUNNING})
FINAL_STATES = frozenset({SUCCEEDED, FAILED})


def utc_timestamp(epoch: float | None = None) -> str:
    """RFC 3339 UTC with second precision, the format Kubernetes uses in Job status."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if epoch is None else epoch))


def new_job_id() -> str:
    """Short, random, DNS-label safe (lowercase hex), so it can be part of a Kubernetes Job name."""
    return secrets.token_hex(5)


@dataclass
class JobRecord:
    """One retrain of one model."""

    id: str
    model: str
    backend: str
    options: dict[str, Any]
    state: str = PENDING
    created_at: str = field(default_factory=utc_timestamp)
    started_at: str | None = None
    finished_at: str | None = None
    exit_reason: str | None = None
    produced_version: int | None = None
    # The trainer's stage choice for the produced version (versions.export_summary): exported_stage,
    # export_reason, test accuracy per stage. So a client sees whether fine-tuning was kept.
    training: dict[str, Any] | None = None
    # The highest version present when the job started: a version above it is the job's product.
    baseline_version: int = 0
    # Backend-specific bookkeeping (pid, log file, Kubernetes Job name); shown to admins as is.
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def view(self) -> dict[str, Any]:
        """The public JSON shape (no baseline bookkeeping)."""
        data = self.to_dict()
        data.pop("baseline_version")
        return data
