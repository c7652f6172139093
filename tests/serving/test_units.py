"""Unit tests of the serving building blocks: policy, source, config, batcher, store, image checks."""
from __future__ import annotations

import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from serving.aspired_version_policy import VersionPolicy, plan
from serving.batcher import BatchQueue
from serving.config import BatchingOptions, ConfigError, RuntimeOptions, ServerOptions, parse_args
from serving.errors import ServingError
from serving.predictions import PredictionStore
from serving.source import scan


# ---- version policy and availability-preserving plan -------------------------------------------
def test_policy_selects_latest_all_specific() -> None:
    assert VersionPolicy().select([1, 5, 3]) == {5}
    assert VersionPolicy("latest", latest=2).select([1, 5, 3]) == {3, 5}
    assert VersionPolicy("all").select([1, 5, 3]) == {1, 3, 5}
    assert VersionPolicy("specific", versions=(3, 9)).select([1, 5, 3]) == {3}
    with pytest.raises(ValueError):
        VersionPolicy("newest")


def test_plan_loads_new_before_unloading_old() -> None:
    # v2 appears: load it, keep v1 until v2 is available
    assert plan({2}, {1, 2}, {1}, {2}).load == [2]
    assert plan({2}, {1, 2}, {1}, {2}).unload == []
    # v2 available: now v1 goes
    assert plan({2}, {1, 2}, {1, 2}, set()).unload == [1]
    # v2 broken (not loadable, not available): v1 keeps serving
    assert plan({2}, {1, 2}, {1}, set()) .unload == []
    # v1's directory deleted: unloaded even without a replacement
    assert plan(set(), set(), {1}, set()).unload == [1]


# ---- source --------------------------------------------------------------------------------------
def test_source_reports_only_complete_numeric_versions(tmp_path: Path) -> None:
    for name, complete in [("1", True), ("2", False), (".staging-ab12", True), ("3a", True),
                           ("0", True), ("10", True)]:
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / "saved_model.pb").write_bytes(b"x")
    (tmp_path / "7").write_text("a file, not a directory")
    assert sorted(scan(tmp_path)) == [1, 10]
    assert scan(tmp_path / "missing") == {}
    before = scan(tmp_path)[1].fingerprint
    time.sleep(0.01)
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"xy")
    assert scan(tmp_path)[1].fingerprint != before


# ---- config --------------------------------------------------------------------------------------
def test_flags_environment_and_yaml_config(tmp_path: Path) -> None:
    options = parse_args(["--model-name", "m", "--model-base-path", str(tmp_path), "--rest-port", "9001"],
                         {"SERVING_REST_PORT": "9000", "SERVING_GRPC_PORT": "0", "SERVING_MAX_BATCH_SIZE": "8",
                          "SERVING_WARMUP_BATCH_SIZES": "max"})
    assert (options.rest_port, options.grpc_port) == (9001, 0)     # flag beats environment
    assert options.models[0].batching.max_batch_size == 8
    assert options.models[0].batching.warmup_batch_sizes == "max"
    config = tmp_path / "models.yaml"
    config.write_text("""
models:
  - name: a
    base_path: a
    version_policy: {latest: 2}
    version_labels: {stable: 1, canary: 2}
    batching: {max_batch_size: 4, warmup_batch_sizes: max}
  - name: b
    base_path: /srv/b
    version_policy: all
  - name: c
    base_path: c
    version_policy: {specific: [3, 4]}
""")
    models = parse_args([], {"SERVING_MODEL_CONFIG_FILE": str(config)}).models
    assert [m.name for m in models] == ["a", "b", "c"]
    assert models[0].base_path == tmp_path / "a"
    assert models[0].version_policy == VersionPolicy("latest", latest=2)
    assert models[0].version_labels == {"stable": 1, "canary": 2}
    assert models[0].batching == BatchingOptions(max_batch_size=4, warmup_batch_sizes="max")
    assert models[1].batching.warmup_batch_sizes == "all"                # the default
    assert models[1].version_policy.kind == "all" and models[2].version_policy.versions == (3, 4)


def test_flag_defaults_are_the_options_defaults(tmp_path: Path) -> None:
    options = parse_args(["--model-name", "m", "--model-base-path", str(tmp_path)], {})
    assert options == ServerOptions(models=options.models, extra=options.extra)
    assert options.models[0].batching == BatchingOptions()
    assert options.models[0].runtime == RuntimeOptions()


@pytest.mark.parametrize("yaml_text, message", [
    ("models: []", "non-empty"),
    ("models: [{name: a}]", "base_path"),
    ("models: [{name: a, base_path: x, version_policy: {newest: 1}}]", "version_policy"),
    ("models: [{name: a, base_path: x, batching: {max_batch_size: 0}}]", "max_batch_size"),
    ("models: [{name: a, base_path: x, batching: {warmup_batch_sizes: some}}]", "warmup_batch_sizes"),
    ("models: [{name: a, base_path: x, version_labels: {stable: two}}]", "stable"),
    ("models: [{name: a, base_path: x, colour: red}]", "colour"),
])
def test_bad_model_config_names_the_problem(tmp_path: Path, yaml_text: str, message: str) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        parse_args(["--model-config-file", str(config)], {})


# ---- batcher -------------------------------------------------------------------------------------
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


# ---- prediction store ----------------------------------------------------------------------------
def test_prediction_store_feedback_rules_and_eviction() -> None:
    store = PredictionStore(capacity=2)
    first = store.remember("m", 1, "cat", 0.9, ("cat", "dog"))
    second = store.remember("m", 1, "dog", 0.6, ("cat", "dog"))
    with pytest.raises(ServingError) as error:
        store.feedback("m", second, "horse")
    assert error.value.code == "INVALID_ARGUMENT"
    assert store.feedback("m", second, "cat").correct is False
    with pytest.raises(ServingError) as error:
        store.feedback("m", second, "cat")
    assert error.value.code == "ALREADY_EXISTS"
    store.remember("m", 1, "cat", 0.7, ("cat", "dog"))           # evicts `first`
    for pid, model in [(first, "m"), ("nope", "m"), (second, "other")]:
        with pytest.raises(ServingError) as error:
            store.feedback(model, pid, "cat")
        assert error.value.code == "NOT_FOUND"


# ---- image checks --------------------------------------------------------------------------------
def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height: a decompression bomb's header, no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_image_checks_refuse_bombs_and_non_images_from_the_header(tmp_path: Path) -> None:
    from serving.core import ServingCore
    from tests.helpers import image_bytes

    core = ServingCore(parse_args(["--model-name", "m", "--model-base-path", str(tmp_path),
                                   "--max-image-pixels", "1000000"], {}))
    core.check_image(image_bytes(1))
    started = time.perf_counter()
    for data, message in [(_png_header(100_000, 100_000), "pixel limit"), (_png_header(2000, 1000), "over the limit"),
                          (b"", "empty"), (b"GIF89a-not-really", "not a decodable image"),
                          (b"hello world", "not a decodable image")]:
        with pytest.raises(ServingError, match=message) as error:
            core.check_image(data)
        assert error.value.code == "INVALID_ARGUMENT"
    assert time.perf_counter() - started < 1.0
