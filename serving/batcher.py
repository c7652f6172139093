"""Dynamic batching: concurrent requests for one servable run as one model call.

Modelled on TF Serving's BasicBatchScheduler. Each queue belongs to one (version, signature).
A batch thread takes the oldest request, waits up to `batch_timeout_micros` for more (or until
`max_batch_size` items are queued), concatenates the inputs along the batch dimension, runs the
model once and hands every request its own slice of the outputs. The queue is bounded
(`max_enqueued_batches` batches' worth of items): when it is full a request is refused at once
with UNAVAILABLE instead of waiting behind an ever-growing backlog.

One departure from TF Serving: a lone request that follows a batch of one is run at once instead
of waiting out `batch_timeout_micros`. When the previous batch had a single item nobody else was
sending, so the wait would only add latency (at concurrency 1 it added the whole timeout to every
request). As soon as requests overlap, the queue holds more than one or the last batch was larger,
and the timeout applies again (measured in bench/serve.py: docs/benchmarks.md).

Batch threads that are idle at the same time share the queued requests out equally: each batch
runs on one core (one intra-op thread per call, serving/runtime.py), so four queued requests and
two idle threads make two batches of two on two cores rather than one batch of four on one.

A request that makes the model fail must not fail its neighbours: inputs are validated before
they are queued, and if a batch still fails as a whole, each request of it is re-run alone so only
the culprit gets the error.
"""
from __future__ import annotations

import collections
import logging
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import tensorflow as tf

from serving.config import BatchingOptions
from serving.errors import ServingError, invalid, unavailable
from serving.metrics import BATCH_SIZE, QUEUE_WAIT
from serving.servable import Servable

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


@dataclass
class _Task:
    inputs: Arrays
    size: int
    enqueued: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    outputs: Arrays | None = None
    error: ServingError | None = None


def _batch_size(inputs: Arrays) -> int:
    sizes = {len(value) for value in inputs.values()}
    if len(sizes) != 1:
        raise invalid(f"inputs disagree on the batch size (first dimension): {sorted(sizes)}")
    return sizes.pop()


def _reason(error: Exception) -> str:
    """The line of a (TensorFlow) error that says what went wrong, without graph noise."""
    lines = [re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line.strip())    # a tf.function's prefix
             for line in str(getattr(error, "message", error)).splitlines()]
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "{{")
    useful = [re.sub(r"\s*\[\[.*|\s*\[Op:.*", "", line) for line in lines
              if line and not line.startswith(noise)]
    return "; ".join(item for item in useful if item) or type(error).__name__


def as_serving_error(error: Exception) -> ServingError:
    if isinstance(error, ServingError):
        return error
    if isinstance(error, (tf.errors.InvalidArgumentError, ValueError, TypeError)):
        return invalid(f"the model rejected the input: {_reason(error)}")
    return ServingError("INTERNAL", f"model call failed: {_reason(error)}")


class BatchQueue:
    """One bounded queue and its batch threads; `submit` blocks until the request's slice is ready."""

    def __init__(self, run: Callable[[Arrays], Arrays], options: BatchingOptions,
                 model: str, version: int, name: str = "") -> None:
        self._run = run
        self._options = options
        self._capacity = options.max_batch_size * options.max_enqueued_batches
        self._tasks: collections.deque[_Task] = collections.deque()
        self._queued_items = 0
        self._last_batch_items = 0   # items in the previous batch: 1 means traffic is not overlapping
        self._idle_threads = 0       # batch threads waiting for work (not running a batch)
        self._closed = False
        self._cond = threading.Condition()
        self._batch_metric = BATCH_SIZE.labels(model, str(version))
        self._wait_metric = QUEUE_WAIT.labels(model, str(version))
        self._threads = [threading.Thread(target=self._loop, name=f"batch-{model}-{version}-{name}-{i}",
                                          daemon=True) for i in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, inputs: Arrays) -> Arrays:
        """Queue one request (a batch of >= 1 rows) and wait for its outputs."""
        task = _Task(inputs, _batch_size(inputs))
        if task.size == 0:
            raise invalid("the request holds no instances")
        with self._cond:
            if self._closed:
                raise unavailable("this model version is being unloaded; retry")
            if self._queued_items and self._queued_items + task.size > self._capacity:
                raise unavailable(f"batch queue full ({self._queued_items} items waiting); retry later")
            self._tasks.append(task)
            self._queued_items += task.size
            self._cond.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        assert task.outputs is not None
        return task.outputs

    def close(self) -> None:
        """Stop taking requests; queued ones are still run, then the threads end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=30)

    def _next_batch(self) -> list[_Task] | None:
        """Wait for a first task, then up to the timeout for a full batch; None when closed."""
        with self._cond:
            self._idle_threads += 1
            try:
                while True:
                    self._cond.wait_for(lambda: self._tasks or self._closed)
                    if not self._tasks:
                        return None
                    self._wait_for_partners()
                    if self._tasks:         # else another batch thread took them meanwhile
                        break
                return self._take_share()
            finally:
                self._idle_threads -= 1

    def _take_share(self) -> list[_Task]:
        """The oldest tasks, up to max_batch_size and to an equal share among the idle batch
        threads (lock held). Why share: each batch runs on one core (serving.runtime), so four
        queued requests make two batches of two on two cores, not one batch of four on one."""
        share = -(-self._queued_items // self._idle_threads)
        limit = min(self._options.max_batch_size, share)
        batch, total = [], 0
        while self._tasks and (not batch or total + self._tasks[0].size <= limit):
            task = self._tasks.popleft()
            batch.append(task)
            total += task.size
        self._queued_items -= total
        self._last_batch_items = total
        if self._tasks:
            self._cond.notify()             # the rest is another idle thread's share
        return batch

    def _wait_for_partners(self) -> None:
        """Up to the timeout after the oldest request, until a full batch is queued (lock held)."""
        lone = len(self._tasks) == 1 and self._last_batch_items == 1
        deadline = self._tasks[0].enqueued + (0 if lone else self._options.batch_timeout_micros / 1e6)
        while self._tasks and self._queued_items < self._options.max_batch_size and not self._closed:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._cond.wait(remaining)

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            started = time.perf_counter()
            for task in batch:
                self._wait_metric.observe(started - task.enqueued)
            self._batch_metric.observe(sum(task.size for task in batch))
            try:
                self._run_batch(batch)
            except BaseException as error:  # noqa: BLE001 - never leave a waiter hanging
                log.exception("batch failed unexpectedly")
                for task in batch:
                    if not task.done.is_set():
                        task.error = as_serving_error(error if isinstance(error, Exception) else RuntimeError())
                        task.done.set()

    def _run_batch(self, batch: list[_Task]) -> None:
        if len(batch) == 1:
            return self._run_alone(batch[0])
        names = batch[0].inputs.keys()
        try:
            merged = {name: np.concatenate([task.inputs[name] for task in batch]) for name in names}
            outputs = self._run(merged)
        except Exception:  # noqa: BLE001 - isolate the bad request(s) by running each alone
            log.info("batch of %d requests failed; re-running them one by one", len(batch))
            for task in batch:
                self._run_alone(task)
            return
        offset = 0
        for task in batch:
            task.outputs = {name: value[offset:offset + task.size] for name, value in outputs.items()}
            offset += task.size
            task.done.set()

    def _run_alone(self, task: _Task) -> None:
        try:
            task.outputs = self._run(task.inputs)
        except Exception as error:  # noqa: BLE001 - becomes this request's error
            task.error = as_serving_error(error)
        task.done.set()


class BatchQueues:
    """The batch queues of every available version, one per signature: opened when the version
    becomes available, closed (after their queued requests ran) when it is unloaded. The core
    owns this registry; a servable knows nothing of how its requests are batched."""

    def __init__(self) -> None:
        self._by_version: dict[int, dict[str, BatchQueue]] = {}   # id(servable) -> queues
        self._lock = threading.Lock()

    def open(self, servable: Servable, options: BatchingOptions) -> None:
        """One queue per signature. A signature whose rows run one by one (no `batch_gain`) gets
        nothing from a bigger batch, so its queue never waits for partners: a batch thread takes
        what is queued at once, and no core idles out the batch timeout."""
        queues = {name: BatchQueue(signature.run,
                                   options if signature.batch_gain else replace(options, batch_timeout_micros=0),
                                   servable.model, servable.version, name)
                  for name, signature in servable.signatures.items()}
        with self._lock:
            self._by_version[id(servable)] = queues

    def close(self, servable: Servable) -> None:
        """Stop taking requests; the queues drop their references to the signature functions."""
        with self._lock:
            queues = self._by_version.pop(id(servable), {})
        for queue in queues.values():
            queue.close()

    def get(self, servable: Servable, signature: str) -> BatchQueue | None:
        """The signature's queue while the version is available, else None."""
        return self._by_version.get(id(servable), {}).get(signature)
