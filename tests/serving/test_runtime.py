"""The worker's CPU share and TensorFlow threads: cgroup quota, flags, concurrent batch threads."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from serving.batcher import BatchQueue
from serving.config import BatchingOptions, ConfigError, parse_args
from serving.runtime import available_cpus

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("cpu_max, expected", [
    ("max 100000\n", AFFINITY),                      # no quota: the affinity mask
    ("50000 100000\n", 1),                           # half a CPU still gets one thread
    ("150000 100000\n", min(AFFINITY, 2)),           # 1.5 CPUs round up
    ("100000000 100000\n", AFFINITY),                # a quota above the mask changes nothing
    ("garbage", AFFINITY),
])
def test_available_cpus_honours_a_cgroup_quota(tmp_path: Path, cpu_max: str, expected: int) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert available_cpus(tmp_path / "cpu.max") == expected
    assert available_cpus(tmp_path / "missing") == AFFINITY


def test_batch_threads_default_to_the_available_cpus_and_thread_flags_parse(tmp_path: Path) -> None:
    options = parse_args(["--model-name", "m", "--model-base-path", str(tmp_path)], {})
    assert options.models[0].batching.num_batch_threads == available_cpus()
    assert (options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism) == (1, 0)
    options = parse_args(["--model-name", "m", "--model-base-path", str(tmp_path)],
                         {"SERVING_TENSORFLOW_INTRA_OP_PARALLELISM": "0",
                          "SERVING_TENSORFLOW_INTER_OP_PARALLELISM": "3", "SERVING_NUM_BATCH_THREADS": "5"})
    assert (options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism) == (0, 3)
    assert options.models[0].batching.num_batch_threads == 5
    with pytest.raises(ConfigError, match="--tensorflow-intra-op-parallelism must be >= 0"):
        parse_args(["--model-name", "m", "--model-base-path", str(tmp_path),
                    "--tensorflow-intra-op-parallelism", "-1"], {})


def test_batch_threads_run_model_calls_side_by_side() -> None:
    """Two batch threads: a second batch starts while the first is still inside the model."""
    inside, both_inside = [], threading.Event()
    lock = threading.Lock()

    def model(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with lock:
            inside.append(1)
            if len(inside) == 2:
                both_inside.set()
        both_inside.wait(5)
        return {"y": inputs["x"] * 2}

    queue = BatchQueue(model, BatchingOptions(num_batch_threads=2, max_batch_size=1, batch_timeout_micros=0),
                       "m", 1)
    results: list = [None, None]

    def send(index: int) -> None:
        results[index] = queue.submit({"x": np.full((1, 1), index + 1.0)})

    senders = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(10)
    queue.close()
    assert both_inside.is_set(), "the second batch waited for the first"
    assert [r["y"].item() for r in results] == [2.0, 4.0]


class _Node:
    """A reference cycle stands for a TensorFlow object graph (they sit in cycles)."""

    def __init__(self) -> None:
        self.me = self


def test_compact_heap_frees_an_unloaded_versions_cycles_and_freezes_the_rest() -> None:
    import gc
    import weakref

    from serving.runtime import compact_heap

    try:
        loaded = _Node()                          # a version that stays loaded
        garbage = weakref.ref(_Node())            # cyclic garbage, e.g. of a failed load
        compact_heap()                            # after a load
        assert garbage() is None
        assert loaded is not None and gc.get_freeze_count() > 0    # survivors skipped by the collector
        unloaded = weakref.ref(loaded)
        del loaded                                # the version is unloaded ...
        gc.collect()
        assert unloaded() is not None             # ... a plain collection cannot see frozen cycles,
        compact_heap()                            # compacting after the unload does
        assert unloaded() is None
    finally:
        gc.unfreeze()
