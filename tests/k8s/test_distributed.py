"""trainer.distributed: TF_CONFIG from the environment, and a real two-worker run on loopback."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from trainer.distributed import ClusterSpec, cluster_from_environment, export_base_path


def test_cluster_from_indexed_job_variables() -> None:
    env = {"TRAINER_WORKER_HOSTS": "w-0.svc:12345, w-1.svc:12345", "JOB_COMPLETION_INDEX": "1"}
    spec = cluster_from_environment(env)
    assert spec == ClusterSpec(("w-0.svc:12345", "w-1.svc:12345"), 1) and not spec.is_chief
    assert spec.tf_config() == {"cluster": {"worker": ["w-0.svc:12345", "w-1.svc:12345"]},
                                "task": {"type": "worker", "index": 1}}


def test_tf_config_wins_and_single_worker_is_none(tmp_path: Path) -> None:
    config = {"cluster": {"worker": ["a:1", "b:2", "c:3"]}, "task": {"type": "worker", "index": 0}}
    spec = cluster_from_environment({"TF_CONFIG": json.dumps(config), "TRAINER_WORKER_HOSTS": "x:1,y:2",
                                     "JOB_COMPLETION_INDEX": "1"})
    assert spec.workers == ("a:1", "b:2", "c:3") and spec.is_chief
    assert export_base_path(tmp_path, spec) == tmp_path
    assert export_base_path(tmp_path, ClusterSpec(("a", "b"), 1)) != tmp_path
    assert cluster_from_environment({}) is None
    assert cluster_from_environment({"TRAINER_WORKER_HOSTS": "only:1", "JOB_COMPLETION_INDEX": "0"}) is None


@pytest.mark.parametrize("env, needle", [
    ({"TRAINER_WORKER_HOSTS": "a:1,b:2"}, "JOB_COMPLETION_INDEX"),
    ({"TRAINER_WORKER_HOSTS": "a:1,b:2", "JOB_COMPLETION_INDEX": "2"}, "outside"),
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG"),
    ({"TF_CONFIG": json.dumps({"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}})}, "TF_CONFIG"),
])
def test_malformed_cluster_settings_fail_loudly(env: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        cluster_from_environment(env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_train_in_sync_on_loopback(tmp_path: Path) -> None:
    """Two processes, as two pods of the Indexed Job would be: same weights after training on
    different data means the gradients really were all-reduced across workers."""
    hosts = f"localhost:{_free_port()},localhost:{_free_port()}"
    procs = []
    for index in (0, 1):
        env = {**os.environ, "TRAINER_WORKER_HOSTS": hosts, "JOB_COMPLETION_INDEX": str(index),
               "CUDA_VISIBLE_DEVICES": ""}
        env.pop("TF_CONFIG", None)
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.k8s.multiworker_worker",
                                       str(tmp_path / f"w{index}.json")], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outputs
    results = [json.loads((tmp_path / f"w{i}.json").read_text()) for i in (0, 1)]
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    for a, b in zip(results[0]["weights"], results[1]["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert np.abs(results[0]["weights"][1]).max() > 1e-4   # the bias started at 0: it trained
