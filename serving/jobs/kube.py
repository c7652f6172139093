"""The `kubernetes` retrain backend: one batch/v1 Job per retrain, built from the trainer template.

The cluster is the store: a Job carries the model and job id as labels and the options and
baseline version as annotations, so after a server restart GET /v1/jobs reads everything back from
the API server. State comes from the Job's conditions (Complete / Failed), as `kubectl wait` does.
"""
from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from serving.errors import ServingError
from serving.jobs.options import trainer_arguments
from serving.jobs.record import FAILED, PENDING, RUNNING, SUCCEEDED, JobRecord
from serving.jobs.versions import export_summary, version_after

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "transfer-serving-retrain"
LABEL_MODEL = "transfer-serving/model"
LABEL_JOB_ID = "transfer-serving/job-id"
ANNOTATION_OPTIONS = "transfer-serving/options"
ANNOTATION_BASELINE = "transfer-serving/baseline-version"
ANNOTATION_BASE_PATH = "transfer-serving/model-base-path"
TRAINER_CONTAINER = "trainer"
DEFAULT_TTL_SECONDS = 86400
DEFAULT_BACKOFF_LIMIT = 1
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_TIMEOUT = 15


def load_job_template(path: Path) -> dict[str, Any]:
    """The trainer Job manifest from k8s/ (mounted from a ConfigMap in the cluster)."""
    template = yaml.safe_load(Path(path).read_text())
    if not isinstance(template, dict) or template.get("kind") != "Job":
        raise ValueError(f"{path}: not a batch/v1 Job manifest")
    containers = template["spec"]["template"]["spec"]["containers"]
    if not any(c.get("name") == TRAINER_CONTAINER for c in containers):
        raise ValueError(f"{path}: the Job template has no container named {TRAINER_CONTAINER!r}")
    return template


def default_api_client() -> Any:
    """In-cluster service-account auth when running in a pod, else the user's kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # KUBECONFIG read now, not when the client library was imported.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return client.ApiClient()


def _api_error(exc: Exception, action: str) -> ServingError:
    status = getattr(exc, "status", None)
    if status == 409:
        return ServingError("ALREADY_EXISTS", f"kubernetes: {action}: the Job already exists")
    if status in (401, 403):
        return ServingError("INTERNAL", f"kubernetes: {action}: the serving account is not allowed "
                                        f"(HTTP {status}); check the Role in k8s/rbac.yaml")
    return ServingError("UNAVAILABLE", f"kubernetes: {action} failed: {getattr(exc, 'reason', exc)}")


class KubernetesBackend:
    """Creates and reads trainer Jobs in one namespace through the official client."""

    name = "kubernetes"
    checks_data_locally = False  # the data volume is mounted in the trainer pod, not here

    def __init__(self, namespace: str, template: dict[str, Any], api_client: Any = None) -> None:
        from kubernetes import client

        self.namespace = namespace
        self.template = template
        self.api_client = api_client or default_api_client()
        self.batch = client.BatchV1Api(self.api_client)

    def job_name(self, record: JobRecord) -> str:
        model = re.sub(r"[^a-z0-9-]+", "-", record.model.lower()).strip("-")[:40] or "model"
        return f"retrain-{model}-{record.id}"

    def build_job(self, record: JobRecord, base_path: Path) -> dict[str, Any]:
        """The template with this job's name, labels, annotations and trainer arguments filled in."""
        if not _LABEL_VALUE.match(record.model):
            raise ServingError("INVALID_ARGUMENT", f"model name {record.model!r} is not a valid Kubernetes label value")
        job = copy.deepcopy(self.template)
        labels = {LABEL_MANAGED_BY: MANAGER, LABEL_MODEL: record.model, LABEL_JOB_ID: record.id}
        meta = job.setdefault("metadata", {})
        meta.pop("generateName", None)
        meta.update(name=self.job_name(record), namespace=self.namespace)
        meta["labels"] = {**meta.get("labels", {}), **labels}
        meta["annotations"] = {**meta.get("annotations", {}),
                               ANNOTATION_OPTIONS: json.dumps(record.options, sort_keys=True),
                               ANNOTATION_BASELINE: str(record.baseline_version),
                               ANNOTATION_BASE_PATH: str(base_path)}
        spec = job["spec"]
        spec.setdefault("ttlSecondsAfterFinished", DEFAULT_TTL_SECONDS)
        spec.setdefault("backoffLimit", DEFAULT_BACKOFF_LIMIT)
        pod_meta = spec["template"].setdefault("metadata", {})
        pod_meta["labels"] = {**pod_meta.get("labels", {}), **labels}
        container = next(c for c in spec["template"]["spec"]["containers"] if c["name"] == TRAINER_CONTAINER)
        for resources in (container.get("resources") or {}).values():
            # Quantities are int-or-string in the API; the client's typed models accept only
            # strings, so `nvidia.com/gpu: 1` from YAML is sent as "1" (same quantity).
            for key, value in resources.items():
                resources[key] = str(value)
        container["args"] = [*trainer_arguments(record.options), "--model-name", record.model,
                             "--model-base-path", str(base_path), *container.get("args", [])]
        return job

    def submit(self, record: JobRecord, base_path: Path) -> None:
        body = self.build_job(record, base_path)
        try:
            self.batch.create_namespaced_job(self.namespace, body, _request_timeout=_TIMEOUT)
        except Exception as exc:  # ApiException or a connection error from urllib3
            raise _api_error(exc, "create Job") from exc
        record.state = PENDING
        record.details = {"job_name": body["metadata"]["name"], "namespace": self.namespace}

    def cancel(self, record: JobRecord) -> JobRecord:
        """Delete the Job and its pods (background propagation). It then leaves GET /v1/jobs: the
        cluster is the store, and a deleted Job has no record left."""
        try:
            self.batch.delete_namespaced_job(record.details["job_name"], self.namespace,
                                             propagation_policy="Background", _request_timeout=_TIMEOUT)
        except Exception as exc:
            raise _api_error(exc, "delete Job") from exc
        record.state, record.exit_reason = FAILED, "cancelled: the Job was deleted"
        return record

    def _list(self, selector: str) -> list[dict[str, Any]]:
        try:
            jobs = self.batch.list_namespaced_job(self.namespace, label_selector=selector,
                                                  _request_timeout=_TIMEOUT)
        except Exception as exc:
            raise _api_error(exc, "list Jobs") from exc
        return [self.api_client.sanitize_for_serialization(j) for j in jobs.items]

    def list_jobs(self) -> list[JobRecord]:
        records = [record_from_job(j) for j in self._list(f"{LABEL_MANAGED_BY}={MANAGER}")]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def get_job(self, job_id: str) -> JobRecord | None:
        if not job_id.isalnum():
            return None
        jobs = self._list(f"{LABEL_MANAGED_BY}={MANAGER},{LABEL_JOB_ID}={job_id}")
        return record_from_job(jobs[0]) if jobs else None


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind and c.get("status") == "True"), None)


def _time(value: Any) -> str | None:
    """The client renders times as isoformat (+00:00); records use RFC 3339 `Z` like kubectl."""
    return None if value is None else str(value).replace("+00:00", "Z")


def record_from_job(job: dict[str, Any]) -> JobRecord:
    """A JobRecord from a Job as the API server returns it (camelCase dict)."""
    meta, status = job["metadata"], job.get("status") or {}
    labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
    record = JobRecord(id=labels[LABEL_JOB_ID], model=labels[LABEL_MODEL], backend=KubernetesBackend.name,
                       options=json.loads(notes.get(ANNOTATION_OPTIONS, "{}")),
                       created_at=_time(meta.get("creationTimestamp")) or "", started_at=_time(status.get("startTime")),
                       baseline_version=int(notes.get(ANNOTATION_BASELINE, "0")),
                       details={"job_name": meta["name"], "namespace": meta.get("namespace")})
    complete, failed = _condition(status, "Complete"), _condition(status, "Failed")
    if complete:
        record.state = SUCCEEDED
        record.finished_at = _time(status.get("completionTime") or complete.get("lastTransitionTime"))
        base_path = notes.get(ANNOTATION_BASE_PATH)
        record.produced_version = version_after(Path(base_path), record.baseline_version) if base_path else None
        record.training = export_summary(Path(base_path), record.produced_version) if base_path else None
    elif failed:
        record.state, record.finished_at = FAILED, _time(failed.get("lastTransitionTime"))
        record.exit_reason = f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".strip(": ")
    else:
        record.state = RUNNING if status.get("active") else PENDING
    return record
