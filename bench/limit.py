"""The limit: the exported signature called in-process, with no server, no network, no JSON.

This is what the hardware does with the model alone, so every server row is read as a ratio to
it. It runs in its own process (`python -m bench.limit ...`, JSON on stdout) so that the load
generator's and servers' state cannot disturb it and it cannot disturb them.

Two figures: latency of one image at batch 1 (the floor of any server's p50 at concurrency 1) and
images/s at the batch size that gives the most (the ceiling of any server's throughput).

Each run measures one *layout* of the bare model: TensorFlow's intra-op thread count and how many
callers run batches at once. TensorFlow's defaults (all cores inside each op, one caller) are one
layout; one intra-op thread with one caller per CPU (what our server does, serving/runtime.py) is
another, and on small machines a much faster one. bench/serve.py measures both and holds every
server to the best figure of any layout, so a server tuned better than TensorFlow's defaults is
not flattered by comparing it with a needlessly slow limit. The version's LiteRT forms are
measured the same way (`--runtime litert --precision fp32|int8`), from image bytes as the server
runs them; the limit is the fastest fp32 runtime.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
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


def _fast_form(version_dir: str, precision: str) -> Callable[[list[bytes]], Any]:
    """The version's LiteRT form from image bytes, exactly as the server runs it
    (serving.inference_runtime: TensorFlow's decode and resize, batch-1 invokes)."""
    from model_format.fast_form import form_path
    from model_format.litert import LiteRTModel
    from serving.inference_runtime import fast_functions, pixel_decoder

    metadata = json.loads((Path(version_dir) / "assets.extra" / "metadata.json").read_text())
    model = LiteRTModel(form_path(Path(version_dir), precision).read_bytes())
    function = fast_functions(model, pixel_decoder(metadata["image_size"]), metadata["class_names"],
                              precision)["serving_default"]

    def call(images: list[bytes]) -> Any:
        return function({"image_bytes": np.array(images, dtype=object)})["probabilities"]

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


def batch_throughput(call: Callable, images: list[bytes], batch: int, seconds: float,
                     callers: int = 1) -> dict[str, float]:
    """Images/s at one batch size from `callers` threads calling at once, over at least `seconds`
    and at least 3 calls per caller."""
    def rows(k: int) -> list[bytes]:  # every call a different slice of the set, like live traffic
        return [images[(k * batch + i) % len(images)] for i in range(batch)]

    call(rows(0))  # the first call at a new batch size may trace or allocate
    counts = [0] * callers
    start, cpu_start = time.perf_counter(), time.process_time()

    def caller(index: int) -> None:
        while counts[index] < 3 or time.perf_counter() - start < seconds:
            call(rows(counts[index] * callers + index))
            counts[index] += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu, calls = time.perf_counter() - start, time.process_time() - cpu_start, sum(counts)
    # CPU time of every thread of this process (TensorFlow's included) per image: what the model
    # alone costs, whether or not the callers kept every core busy
    return {"batch": batch, "calls": calls, "images_per_s": batch * calls / elapsed,
            "ms_per_batch": 1000 * elapsed * callers / calls, "cpu_ms_per_image": 1000 * cpu / (batch * calls)}


def layout_name(intra_op: int, callers: int, runtime: str = "tensorflow", precision: str = "fp32") -> str:
    threads = "TensorFlow's default intra-op threads" if intra_op == 0 else f"intra-op {intra_op}"
    if runtime == "litert":
        threads = f"LiteRT {precision}, 1 thread per interpreter"
    return f"{threads}, {callers} caller{'s' if callers > 1 else ''}"


def measure(version_dir: str, images: list[bytes], *, batch1_calls: int, seconds: float,
            batches: tuple[int, ...] = DEFAULT_BATCHES, intra_op: int = 0, callers: int = 1,
            runtime: str = "tensorflow", precision: str = "fp32") -> dict[str, Any]:
    """The limit's figures for one version directory in one layout of one runtime."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.constant(0.0) + 1  # start the runtime first, so the growth below is the model's alone
    rss_before = _rss_bytes()
    call = _signature(version_dir) if runtime == "tensorflow" else _fast_form(version_dir, precision)
    for image in images[:8]:
        call([image])
    model_rss = _rss_bytes() - rss_before
    layout = layout_name(intra_op, callers, runtime, precision)
    sweep = [{**batch_throughput(call, images, b, seconds, callers), "layout": layout} for b in batches]
    sweep_growth = _rss_bytes() - rss_before - model_rss
    best = max(sweep, key=lambda row: row["images_per_s"])
    batch1 = {**batch1_latency(call, images, batch1_calls), "layout": layout}
    return {"layout": layout, "runtime": runtime, "precision": precision, "batch1": batch1, "sweep": sweep, "best": best,
            "model_rss_bytes": model_rss, "sweep_rss_growth_bytes": sweep_growth}


def main(argv: list[str] | None = None) -> int:
    from bench.workload import fixed_jpegs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version-dir", required=True)
    parser.add_argument("--image-count", type=int, default=32)
    parser.add_argument("--batch1-calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0, help="per batch size in the sweep")
    parser.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)))
    parser.add_argument("--intra-op", type=int, default=0, help="TensorFlow intra-op threads (0: its default)")
    parser.add_argument("--callers", type=int, default=1, help="threads calling the signature at once")
    parser.add_argument("--runtime", choices=("tensorflow", "litert"), default="tensorflow")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32", help="LiteRT form")
    args = parser.parse_args(argv)
    result = measure(args.version_dir, fixed_jpegs(args.image_count), batch1_calls=args.batch1_calls,
                     seconds=args.seconds, batches=tuple(int(b) for b in args.batches.split(",")),
                     intra_op=args.intra_op, callers=args.callers, runtime=args.runtime, precision=args.precision)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
