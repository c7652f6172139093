"""The worker's share of the machine: how many CPUs it may use, and TensorFlow's thread pools.

The rule: one intra-op thread per model call and one batch thread per CPU, so model calls run side
by side, one per core, instead of every op spreading over all cores and waiting at a barrier for
its slowest thread (which any other work on the box stalls). TF Serving exposes the same two knobs
(`--tensorflow_intra_op_parallelism`, `--tensorflow_inter_op_parallelism`) and its batching guide
advises `num_batch_threads` = CPU cores on CPU-only machines. The measurements behind the rule:
docs/benchmarks.md, "Settings chosen and why"; docs/serving.md, "Threads and CPUs".
"""
from __future__ import annotations

import ctypes
import gc
import logging
import math
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup v2 CPU quota.

    `os.cpu_count()` reports the node's cores; in a Kubernetes pod with `limits.cpu: 2` on a 32-core
    node that would start 32 batch threads fighting over two CPUs' worth of quota.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass   # no cgroup v2 quota visible: the affinity mask is all we know
    return max(1, cpus)


def configure_tensorflow(intra_op: int, inter_op: int) -> None:
    """Size TensorFlow's thread pools; must run before the worker's first TensorFlow op.

    0 leaves the choice to TensorFlow (all cores), as in TF Serving.
    """
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    log.info("TensorFlow threads: intra-op %s, inter-op %s", intra_op or "auto", inter_op or "auto")


_COMPACTING = threading.Lock()


def compact_heap() -> None:
    """After a version loads or unloads: collect every reference cycle, hand freed memory back to
    the OS, then freeze what is left out of the garbage collector's way.

    Why freeze: a loaded model is hundreds of thousands of Python objects, and every full
    collection walks them all while holding the GIL, so no request thread runs meanwhile (the
    figures: docs/serving.md, "Threads and CPUs"). Frozen objects are skipped, so live traffic
    only ever collects its own young objects. Unfreezing first lets the collection below free an unloaded version's cycles.
    Why trim: glibc keeps freed heap pages in its arenas; after a hot swap the old version's
    tensors are free but still counted in the worker's RSS (and against the pod's memory limit).
    """
    with _COMPACTING:
        gc.unfreeze()
        gc.collect()
        _malloc_trim()
        gc.freeze()


def _malloc_trim() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return                              # not glibc (musl, macOS): nothing to trim
    libc.malloc_trim(0)
