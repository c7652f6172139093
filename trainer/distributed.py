"""Training on several machines: MultiWorkerMirroredStrategy from the environment.

TensorFlow reads the cluster from TF_CONFIG. On Kubernetes an Indexed Job gives every pod
JOB_COMPLETION_INDEX, and k8s/multiworker/job.yaml lists the workers' stable DNS names in
TRAINER_WORKER_HOSTS (through a headless Service), so TF_CONFIG is built here from those two
instead of being written per pod by hand. Worker 0 is the chief: only it publishes the exported
version into the model base path; the others export to a scratch directory, because every worker
must take part in the save (it runs collective ops) but only one may publish.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

HOSTS_ENV = "TRAINER_WORKER_HOSTS"
INDEX_ENV = "JOB_COMPLETION_INDEX"


@dataclass(frozen=True)
class ClusterSpec:
    """The workers of one run and which one this process is."""

    workers: tuple[str, ...]
    index: int

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def tf_config(self) -> dict:
        return {"cluster": {"worker": list(self.workers)}, "task": {"type": "worker", "index": self.index}}


def cluster_from_environment(env: Mapping[str, str] | None = None) -> ClusterSpec | None:
    """The cluster from TF_CONFIG, else from JOB_COMPLETION_INDEX + TRAINER_WORKER_HOSTS.

    None means single-machine training (nothing set, or a cluster of one worker). A malformed
    setting raises ValueError naming the variable, so a mistyped manifest fails loudly.
    """
    env = os.environ if env is None else env
    if env.get("TF_CONFIG"):
        try:
            config = json.loads(env["TF_CONFIG"])
            workers = tuple(config["cluster"]["worker"])
            task = config["task"]
            if task["type"] != "worker":
                raise ValueError(f"task type {task['type']!r}: only 'worker' tasks are used")
            spec = ClusterSpec(workers, int(task["index"]))
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"TF_CONFIG is not a worker cluster spec: {error}") from None
    elif env.get(HOSTS_ENV):
        workers = tuple(h.strip() for h in env[HOSTS_ENV].split(",") if h.strip())
        if INDEX_ENV not in env:
            raise ValueError(f"{HOSTS_ENV} is set but {INDEX_ENV} is not (run as an Indexed Job)")
        spec = ClusterSpec(workers, int(env[INDEX_ENV]))
    else:
        return None
    if not 0 <= spec.index < len(spec.workers):
        raise ValueError(f"worker index {spec.index} is outside the {len(spec.workers)} listed workers")
    return spec if len(spec.workers) > 1 else None


def multi_worker_strategy(spec: ClusterSpec):  # -> tf.distribute.MultiWorkerMirroredStrategy
    """The strategy for `spec`. Sets TF_CONFIG (TensorFlow's resolver reads it) first.

    Must be called before any other TensorFlow op in the process, as TensorFlow requires for
    multi-worker collectives. Blocks until all workers have started their servers.
    """
    os.environ["TF_CONFIG"] = json.dumps(spec.tf_config())
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def export_base_path(base_path: Path, spec: ClusterSpec | None) -> Path:
    """Where this worker exports: the real base path on the chief, a scratch dir elsewhere."""
    if spec is None or spec.is_chief:
        return Path(base_path)
    return Path(tempfile.mkdtemp(prefix=f"worker-{spec.index}-export-"))
