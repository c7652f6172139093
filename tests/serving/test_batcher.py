"""serving.batcher: batching, splitting back, limits, and its departures from TF Serving.

- A lone request after a batch of one runs at once. Found by the serving benchmark
  (docs/benchmarks.md): at concurrency 1 every request waited the whole batch_timeout_micros for
  partners that never came. Overlapping requests must still batch.
- Idle batch threads share the queued requests, since each batch runs on one core.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from serving.batcher import BatchQueue
from serving.config import BatchingOptions
from serving.errors import ServingError


class Model:
    def __init__(self, delay: float) -> None:
        self.calls: list[int] = []
        self.delay = delay

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append(len(inputs["x"]))
        time.sleep(self.delay)
        return {"y": inputs["x"] * 2}


def test_sequential_requests_do_not_wait_out_the_timeout() -> None:
    model = Model(delay=0.0)
    queue = BatchQueue(model, BatchingOptions(num_batch_threads=1, max_batch_size=8, batch_timeout_micros=300_000), "m", 1)
    queue.submit({"x": np.ones((1, 1))})          # the first may wait: nothing is known yet
    started = time.perf_counter()
    for i in range(5):
        np.testing.assert_array_equal(queue.submit({"x": np.full((1, 1), i)})["y"], [[2 * i]])
    elapsed = time.perf_counter() - started
    queue.close()
    assert elapsed < 0.3, f"5 sequential requests took {elapsed:.2f} s: each waited the 0.3 s timeout"
    assert model.calls == [1] * 6


def test_overlapping_requests_after_lone_ones_are_still_batched() -> None:
    model = Model(delay=0.05)
    queue = BatchQueue(model, BatchingOptions(num_batch_threads=1, max_batch_size=8, batch_timeout_micros=20_000), "m", 1)
    for _ in range(3):
        queue.submit({"x": np.ones((1, 1))})
    threads = [threading.Thread(target=queue.submit, args=({"x": np.ones((1, 1))},)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.close()
    assert sum(model.calls) == 9 and max(model.calls[3:]) > 1, model.calls


def test_a_batch_thread_whose_tasks_were_taken_waits_again(caplog) -> None:
    """Two batch threads waiting out the timeout for the same request: the one that wakes second
    finds the queue emptied by the other and must wait for new work, not run an empty batch (it
    used to: an IndexError logged per occurrence and a batch size of 0 observed). The second
    batch thread here is the test's own, so both always wait on the same deadline."""
    model = Model(delay=0.0)
    queue = BatchQueue(model, BatchingOptions(num_batch_threads=1, max_batch_size=8, batch_timeout_micros=300_000), "m", 1)
    answers: list[np.ndarray] = []
    batches: list[object] = []

    def second_batch_thread() -> None:
        batch = queue._next_batch()
        batches.append(batch)
        if batch:
            queue._run_batch(batch)

    client = threading.Thread(target=lambda: answers.append(queue.submit({"x": np.ones((1, 1))})["y"]))
    client.start()
    time.sleep(0.1)                                   # the real batch thread waits for partners
    other = threading.Thread(target=second_batch_thread)
    other.start()                                     # ... and so does this one, same deadline
    client.join(timeout=5)
    time.sleep(0.1)
    queue.close()                                     # releases whichever thread still waits
    other.join(timeout=5)
    assert [a.tolist() for a in answers] == [[[2.0]]] and model.calls == [1]
    assert batches and batches[0] != [], "a batch thread returned an empty batch"
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


def test_queued_requests_are_shared_among_idle_batch_threads() -> None:
    """Each batch runs on one core: four requests queued while two batch threads are idle make
    two batches of two that run side by side, not one batch of four on one core."""
    release = threading.Event()

    class Blocking(Model):
        def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.calls.append(len(inputs["x"]))
            release.wait(5)
            return {"y": inputs["x"] * 2}

    model = Blocking(delay=0.0)
    queue = BatchQueue(model, BatchingOptions(num_batch_threads=2, max_batch_size=8, batch_timeout_micros=100_000), "m", 1)
    time.sleep(0.05)
    threads = [threading.Thread(target=queue.submit, args=({"x": np.ones((1, 1))},)) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while len(model.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    calls = list(model.calls)                         # both batches are running at once
    release.set()
    for thread in threads:
        thread.join()
    queue.close()
    assert sorted(calls) == [2, 2], calls


class RecordingModel:
    """Doubles its input; remembers the batch sizes it was called with; fails on negative rows."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay = delay

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.calls.append(len(x))
        time.sleep(self.delay)
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x * 2, "sum": x.sum(axis=1)}


def _concurrently(queue: BatchQueue, requests: list[np.ndarray]) -> list[object]:
    results: list[object] = [None] * len(requests)
    def call(index: int) -> None:
        try:
            results[index] = queue.submit({"x": requests[index]})
        except ServingError as error:
            results[index] = error
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_batcher_groups_requests_of_different_sizes_and_splits_them_back() -> None:
    model = RecordingModel(delay=0.05)
    queue = BatchQueue(model, BatchingOptions(num_batch_threads=1, max_batch_size=32, batch_timeout_micros=50_000), "m", 1)
    requests = [np.full((size, 2), float(i)) for i, size in enumerate([1, 3, 2, 5, 1, 4])]
    results = _concurrently(queue, requests)
    queue.close()
    for request, result in zip(requests, results):
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["y"], request * 2)
        np.testing.assert_array_equal(result["sum"], request.sum(axis=1))
    assert sum(model.calls) == 16 and len(model.calls) < len(requests)   # grouped


def test_batcher_respects_max_batch_size() -> None:
    model = RecordingModel(delay=0.02)
    queue = BatchQueue(model, BatchingOptions(num_batch_threads=1, max_batch_size=4, batch_timeout_micros=20_000), "m", 1)
    results = _concurrently(queue, [np.ones((1, 2)) * i for i in range(12)])
    queue.close()
    assert all(isinstance(r, dict) for r in results)
    assert max(model.calls) <= 4 and sum(model.calls) == 12


def test_one_bad_request_does_not_fail_its_batch() -> None:
    model = RecordingModel(delay=0.02)
    queue = BatchQueue(model, BatchingOptions(num_batch_threads=1, max_batch_size=32, batch_timeout_micros=50_000), "m", 1)
    requests = [np.ones((2, 2)), -np.ones((1, 2)), np.ones((3, 2)) * 3]
    results = _concurrently(queue, requests)
    queue.close()
    assert isinstance(results[1], ServingError) and results[1].code == "INVALID_ARGUMENT"
    assert "negative input" in results[1].message
    np.testing.assert_array_equal(results[0]["y"], requests[0] * 2)
    np.testing.assert_array_equal(results[2]["y"], requests[2] * 2)


def test_full_queue_answers_unavailable_at_once() -> None:
    release = threading.Event()
    def blocked(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        release.wait(10)
        return {"y": inputs["x"]}
    queue = BatchQueue(blocked, BatchingOptions(num_batch_threads=1, max_batch_size=2, batch_timeout_micros=0,
                                                max_enqueued_batches=1), "m", 1)
    waiting = [threading.Thread(target=queue.submit, args=({"x": np.ones((1, 1))},)) for _ in range(3)]
    for thread in waiting:        # one runs (blocked), two fill the queue
        thread.start()
        time.sleep(0.05)
    started = time.perf_counter()
    with pytest.raises(ServingError) as refused:
        queue.submit({"x": np.ones((1, 1))})
    assert refused.value.code == "UNAVAILABLE" and "queue full" in refused.value.message
    assert time.perf_counter() - started < 0.5
    release.set()
    for thread in waiting:
        thread.join()
    queue.close()


def test_a_signature_that_runs_rows_one_by_one_never_waits_for_partners() -> None:
    """BatchQueues opens the queue of a signature without `batch_gain` (LiteRT) with no batch
    timeout: a bigger batch would save it nothing, so waiting would only idle a core."""
    from pathlib import Path

    from serving.batcher import BatchQueues
    from serving.servable import Servable, Signature, TensorSpec

    spec = {"x": TensorSpec(np.dtype(np.float64), (None, 1))}
    signatures = {name: Signature(name, spec, {"y": spec["x"]}, Model(delay=0.0), batch_gain=gain)
                  for name, gain in (("batched", True), ("rows", False))}
    servable = Servable("m", 1, Path("."), signatures, None, [], {})
    queues = BatchQueues()
    queues.open(servable, BatchingOptions(num_batch_threads=1, max_batch_size=8, batch_timeout_micros=300_000))
    waited = {}
    for name in signatures:
        started = time.perf_counter()
        queues.get(servable, name).submit({"x": np.ones((1, 1))})   # a first request: nothing known yet
        waited[name] = time.perf_counter() - started
    queues.close(servable)
    assert waited["batched"] >= 0.25 and waited["rows"] < 0.1, waited
    assert queues.get(servable, "rows") is None
