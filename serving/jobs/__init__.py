"""Retraining from the service: job records, option checks, the manager and its two backends.

`local` runs the trainer beside the server (serving.jobs.local); `kubernetes` creates a batch/v1
Job from the trainer template in k8s/ (serving.jobs.kube). serving.retrain_api is the REST face.
"""
from __future__ import annotations

from pathlib import Path

from serving.jobs.manager import Backend, JobManager
from serving.jobs.record import JobRecord

__all__ = ["Backend", "JobManager", "JobRecord", "make_backend"]


def make_backend(kind: str, *, jobs_dir: Path | None = None, namespace: str | None = None,
                 template_file: Path | None = None) -> Backend:
    """The backend the --retrain-backend flag names, with its own settings checked up front."""
    if kind == "local":
        if jobs_dir is None:
            raise ValueError("--retrain-backend local needs --jobs-dir")
        from serving.jobs.local import LocalBackend
        return LocalBackend(Path(jobs_dir))
    if kind == "kubernetes":
        if not namespace or template_file is None:
            raise ValueError("--retrain-backend kubernetes needs --k8s-namespace and --trainer-job-template")
        from serving.jobs.kube import KubernetesBackend, load_job_template
        return KubernetesBackend(namespace, load_job_template(Path(template_file)))
    raise ValueError(f"unknown retrain backend {kind!r} (local | kubernetes)")
