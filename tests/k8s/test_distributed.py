"""trainer.distributed: TF_CONFIG from the environment, and a real two-worker run on loopback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.processes import free_port
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


def test_two_workers_train_in_sync_on_loopback(tmp_path: Path) -> None:
    """Two processes, as two pods of the Indexed Job would be: same weights after training on
    different data means the gradients really were all-reduced across workers."""
    hosts = f"localhost:{free_port()},localhost:{free_port()}"
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


def _named_variables(loaded) -> dict[str, np.ndarray]:
    """Variable name -> value of a loaded SavedModel (by name: the checkpoint's order is not stable)."""
    variables = loaded.variables
    named = {v.name: v.numpy() for v in variables}
    assert len(named) == len(variables) > 0
    return named


def test_trainer_cli_trains_across_two_workers(tmp_path: Path) -> None:
    """The real `python -m trainer train`, twice, as worker 0 and worker 1 of one TF_CONFIG
    cluster on loopback: both finish, the chief alone publishes a servable version, and the
    non-chief's throwaway export holds the very same trained variables."""
    from tests.trainer.conftest import make_dataset, tinted_image, tiny_args

    data, base = make_dataset(tmp_path / "data", corrupt=False), tmp_path / "models"
    workers = [f"localhost:{free_port()}", f"localhost:{free_port()}"]
    procs, logs = [], []
    for index in (0, 1):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir()
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(scratch), "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        env.pop("TRAINER_WORKER_HOSTS", None)
        logs.append((tmp_path / f"out{index}.txt", tmp_path / f"err{index}.txt"))
        with open(logs[-1][0], "wb") as out, open(logs[-1][1], "wb") as err:
            procs.append(subprocess.Popen([sys.executable, "-m", "trainer", *tiny_args(data, base)],
                                          cwd=REPO, env=env, stdout=out, stderr=err))
    try:
        codes = [p.wait(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert codes == [0, 0], [err.read_text()[-3000:] for _, err in logs]
    chief_dir, other_dir = (Path(out.read_text().split()[-1]) for out, _ in logs)
    assert chief_dir == base / "1" and sorted(p.name for p in base.iterdir()) == ["1"]
    assert other_dir.parent.parent == tmp_path / "tmp1"   # the non-chief's throwaway export

    import tensorflow as tf

    from model_format.contract import read_metadata

    assert read_metadata(chief_dir)["devices"]["replicas"] == 2
    loaded = tf.saved_model.load(str(chief_dir))
    served = loaded.signatures["serving_default"](image_bytes=tf.constant([tinted_image(7, 0)]))
    assert served["probabilities"].shape == (1, 3)

    chief, other = _named_variables(loaded), _named_variables(tf.saved_model.load(str(other_dir)))
    assert chief.keys() == other.keys()
    for key in chief:
        np.testing.assert_allclose(chief[key], other[key], rtol=1e-6, atol=1e-7, err_msg=key)
    # The classifier's bias starts at zero: non-zero means the shared weights really trained.
    assert np.abs(chief["probabilities/bias:0"]).max() > 1e-4


@pytest.mark.parametrize("option", ["cache_features", "resume"])
def test_multi_worker_refuses_single_machine_options(option: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before the strategy is made (which would wait for the other workers)."""
    from trainer.config import TrainConfig
    from trainer.errors import TrainerError
    from trainer.train import run

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]},
                                                "task": {"type": "worker", "index": 0}}))
    config = TrainConfig(data=str(tmp_path), model_name="m", model_base_path=str(tmp_path), **{option: True})
    with pytest.raises(TrainerError, match="not supported in multi-worker"):
        run(config)
