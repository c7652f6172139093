"""The limit: the exported signature called in-process, with no server, no network, no JSON.

This is what the hardware does with the model alone, so every server row is read as a ratio to
it. It runs in its own process (`python -m bench.limit ...`, JSON on stdout) so that the load
generator's and servers' state cannot disturb it and it cannot disturb them.

Two figures: latency of one image at batch 1 (the floor of any server's p50 at concurrency 1) and
images/s at the batch size that gives the most (the ceiling of any server's throughput).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable

import numpy as np

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)


def _rss_bytes() -> int:
    """This process's resident memory now (the growth from loading one model is its in-memory size)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return 1024 * int(line.split()[1])
    return 0


def _signature(version_dir: str) -> Callable[[list[bytes]], Any]:
    import tensorflow as tf

    loaded = tf.saved_model.load(version_dir)
    signature = loaded.signatures["serving_default"]

    def call(images: list[bytes]) -> Any:
        return signature(image_bytes=tf.constant(images, dtype=tf.string))["probabilities"].numpy()

    call.loaded = loaded  # keep the trackable alive as long as the function
    return call


def batch1_latency(call: Callable, images: list[bytes], calls: int) -> dict[str, float]:
    """p50/p99 of single-image calls, cycling through the image set."""
    latencies = []
    for i in range(calls):
        start = time.perf_counter()
        call([images[i % len(images)]])
        latencies.append(time.perf_counter() - start)
    ms = np.array(latencies) * 1000
    return {"calls": calls, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "images_per_s": float(1000 / ms.mean())}


def batch_throughput(call: Callable, images: list[bytes], batch: int, seconds: float) -> dict[str, float]:
    """Images/s at one batch size, over at least `seconds` and at least 3 calls."""
    def rows(k: int) -> list[bytes]:  # every call a different slice of the set, like live traffic
        return [images[(k * batch + i) % len(images)] for i in range(batch)]

    call(rows(0))  # the first call at a new batch size may trace or allocate
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        call(rows(calls))
        calls += 1
    elapsed = time.perf_counter() - start
    return {"batch": batch, "calls": calls, "images_per_s": batch * calls / elapsed,
            "ms_per_batch": 1000 * elapsed / calls}


def measure(version_dir: str, images: list[bytes], *, batch1_calls: int, seconds: float,
            batches: tuple[int, ...] = DEFAULT_BATCHES) -> dict[str, Any]:
    """The limit's figures for one version directory."""
    import tensorflow as tf

    tf.constant(0.0) + 1  # start the runtime first, so the growth below is the model's alone
    rss_before = _rss_bytes()
    call = _signature(version_dir)
    for image in images[:8]:
        call([image])
    model_rss = _rss_bytes() - rss_before
    sweep = [batch_throughput(call, images, b, seconds) for b in batches]
    sweep_growth = _rss_bytes() - rss_before - model_rss
    best = max(sweep, key=lambda row: row["images_per_s"])
    return {"batch1": batch1_latency(call, images, batch1_calls), "sweep": sweep, "best": best,
            "model_rss_bytes": model_rss, "sweep_rss_growth_bytes": sweep_growth}


def main(argv: list[str] | None = None) -> int:
    from bench.workload import fixed_jpegs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version-dir", required=True)
    parser.add_argument("--image-count", type=int, default=32)
    parser.add_argument("--batch1-calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0, help="per batch size in the sweep")
    parser.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)))
    args = parser.parse_args(argv)
    result = measure(args.version_dir, fixed_jpegs(args.image_count), batch1_calls=args.batch1_calls,
                     seconds=args.seconds, batches=tuple(int(b) for b in args.batches.split(",")))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
