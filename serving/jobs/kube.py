"""The `kubernetes` retrain backend: one batch/v1 Job per retrain, built from the trainer template.

The cluster is the store: a Job carries the model and job id as labels and the options and
baseline version as annotations, so after a server restart GET /v1/jobs reads everything back from
the API server. A final state comes from the Job's conditions (Complete / Failed), as `kubectl wait`
does. Before that, the Job's pods tell PENDING from RUNNING: a Job counts a pod as `active` from
the moment it is created, long before it is scheduled and its image pulled.

The backend also remembers the records it has seen, for one case the cluster cannot answer: a Job
deleted while active (by hand, or by anything but this API) simply vanishes, and would leave a
client polling a job that no longer exists. It is reported FAILED with the reason instead.
"""
from __future__ import annotations

import copy
import json
import os
import re
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from serving.errors import ServingError
from serving.jobs.options import trainer_arguments
from serving.jobs.record import FAILED, PENDING, RUNNING, SUCCEEDED, JobRecord, utc_timestamp
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
# Pod phases that mean the trainer has started (Succeeded: the Job controller has not yet marked
# the Job Complete). A Failed pod with no other one is a retry waiting for its backoff: PENDING.
_STARTED_PHASES = frozenset({"Running", "Succeeded"})
CANCELLED_REASON = "cancelled: the Job was deleted"
VANISHED_REASON = ("JobDeleted: the Job was deleted while it was active, but not through the "
                   "retrain API (kubectl delete, or another controller)")


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
        self.core = client.CoreV1Api(self.api_client)
        self._lock = threading.Lock()
        # job id -> (monotonic time its list call started, the record read then)
        self._seen: dict[str, tuple[float, JobRecord]] = {}
        self._cancelled: set[str] = set()

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
        with self._lock:   # so that a Job deleted before anyone reads it is still reported
            self._seen[record.id] = (time.monotonic(), record)

    def cancel(self, record: JobRecord) -> JobRecord:
        """Delete the Job and its pods (background propagation: the garbage collector removes the
        pods once the Job is gone). The cluster then has no record left; this process keeps
        reporting the job as FAILED (cancelled) until it restarts."""
        try:
            self.batch.delete_namespaced_job(record.details["job_name"], self.namespace,
                                             propagation_policy="Background", _request_timeout=_TIMEOUT)
        except Exception as exc:
            raise _api_error(exc, "delete Job") from exc
        with self._lock:
            self._cancelled.add(record.id)
        record.state, record.exit_reason = FAILED, CANCELLED_REASON
        return record

    def _list(self, selector: str) -> list[dict[str, Any]]:
        try:
            jobs = self.batch.list_namespaced_job(self.namespace, label_selector=selector,
                                                  _request_timeout=_TIMEOUT)
        except Exception as exc:
            raise _api_error(exc, "list Jobs") from exc
        return [self.api_client.sanitize_for_serialization(j) for j in jobs.items]

    def _pod_phases(self, selector: str) -> dict[str, list[str]]:
        """Job id -> phases of its pods (one list call; the pods carry the Job's labels)."""
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector,
                                                 _request_timeout=_TIMEOUT)
        except Exception as exc:
            raise _api_error(exc, "list Pods") from exc
        phases: dict[str, list[str]] = defaultdict(list)
        for pod in pods.items:
            job_id = (pod.metadata.labels or {}).get(LABEL_JOB_ID)
            if job_id and pod.status is not None and pod.metadata.deletion_timestamp is None:
                phases[job_id].append(pod.status.phase or "Pending")
        return phases

    def _records(self, selector: str) -> list[JobRecord]:
        jobs = self._list(selector)
        phases = self._pod_phases(selector) if any(not _finished(j) for j in jobs) else {}
        return [record_from_job(j, phases.get(j["metadata"]["labels"][LABEL_JOB_ID], [])) for j in jobs]

    def _read(self, selector: str, wanted: str | None) -> list[JobRecord]:
        listed_at = time.monotonic()
        return self._remember(self._records(selector), wanted, listed_at)

    def _remember(self, found: list[JobRecord], wanted: str | None, listed_at: float) -> list[JobRecord]:
        """found plus the records seen before whose Job is gone (wanted: one id, or None for all).

        A Job that vanished while active was deleted: by cancel() here, or behind our back. Only
        records seen before this list call started are judged: a Job submitted while the list
        was on its way is simply not in it yet.
        """
        with self._lock:
            for record in found:
                if self._seen.get(record.id, (listed_at, None))[0] <= listed_at:   # not older data
                    self._seen[record.id] = (listed_at, record)
            present = {r.id for r in found}
            gone = [r for job_id, (seen_at, r) in self._seen.items()
                    if job_id not in present and wanted in (None, job_id) and seen_at < listed_at]
            for record in gone:
                if record.active:
                    record.state, record.finished_at = FAILED, utc_timestamp()
                    record.exit_reason = CANCELLED_REASON if record.id in self._cancelled else VANISHED_REASON
        return found + gone

    def list_jobs(self) -> list[JobRecord]:
        records = self._read(f"{LABEL_MANAGED_BY}={MANAGER}", None)
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def get_job(self, job_id: str) -> JobRecord | None:
        if not job_id.isalnum():
            return None
        found = self._read(f"{LABEL_MANAGED_BY}={MANAGER},{LABEL_JOB_ID}={job_id}", job_id)
        return found[0] if found else None


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind and c.get("status") == "True"), None)


def _time(value: Any) -> str | None:
    """The client renders times as isoformat (+00:00); records use RFC 3339 `Z` like kubectl."""
    return None if value is None else str(value).replace("+00:00", "Z")


def _finished(job: dict[str, Any]) -> bool:
    status = job.get("status") or {}
    return bool(_condition(status, "Complete") or _condition(status, "Failed"))


def record_from_job(job: dict[str, Any], pod_phases: list[str] | tuple[str, ...] = ()) -> JobRecord:
    """A JobRecord from a Job as the API server returns it (camelCase dict) and its pods' phases."""
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
        record.state = RUNNING if _STARTED_PHASES.intersection(pod_phases) else PENDING
    if status.get("failed"):
        record.details["failed_pods"] = status["failed"]
    return record
