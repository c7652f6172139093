"""The loader warms a version up at the batch sizes it will see before it becomes AVAILABLE."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_format.contract import WARMUP_PATH
from serving import loader, warmup
from serving.servable import Signature
from serving.config import BatchingOptions, ModelConfig, RuntimeOptions
from serving.manager import ServableManager
from tests.helpers import export_tiny, image_bytes


@pytest.mark.parametrize("runtime,warmup,image_sizes", [
    ("tensorflow", "all", {1, 2, 3, 4, 5, 6}), ("tensorflow", "max", {1, 6}),
    ("litert", "all", {1, 6}),              # batch-1 invokes: the full size makes each interpreter
])
def test_warmup_batch_sizes_run_while_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str,
                                              warmup: str, image_sizes: set[int]) -> None:
    """On TensorFlow the image signature at every size the batcher can form (or the largest,
    `max`), the pixel signature at the largest; all before AVAILABLE. Size 1 is the record."""
    base = tmp_path / "tiny"
    export_tiny(base, seed=1)
    batching = BatchingOptions(max_batch_size=6, warmup_batch_sizes=warmup)
    manager = ServableManager((ModelConfig("tiny", base, batching=batching, runtime=RuntimeOptions(runtime)),))
    calls: list[tuple[str, int, str, dict]] = []
    real_run = Signature.run

    def recording_run(self: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = real_run(self, inputs)
        state = {s.version: s.state for s in manager.status("tiny")}.get(1, "START")
        calls.append((self.name, len(next(iter(inputs.values()))), state, outputs))
        return outputs

    monkeypatch.setattr(Signature, "run", recording_run)
    manager.poll()
    try:
        sizes = {(name, size) for name, size, _, _ in calls}
        # on LiteRT, the SavedModel's predict_pixels first checks the fast form: 1 record + 8 generated images
        check = {("predict_pixels", 9)} if runtime == "litert" else set()
        assert sizes == {("serving_default", size) for size in image_sizes} | {("predict_pixels", 6)} | check
        assert {state for *_, state, _ in calls} == {"LOADING"}     # all before AVAILABLE
        assert manager.status("tiny")[0].state == "AVAILABLE"
        # the pixel batch is the warm-up image itself, decoded: both signatures agree on it
        by_name = {name: out for name, size, _, out in calls if size == 6}
        np.testing.assert_allclose(by_name["predict_pixels"]["probabilities"],
                                   by_name["serving_default"]["probabilities"], atol=1e-5)
    finally:
        manager.stop()


def test_a_version_without_warmup_records_still_loads(tmp_path: Path) -> None:
    version_dir = export_tiny(tmp_path / "tiny", seed=1)
    (version_dir / WARMUP_PATH).unlink()
    result = loader.load_version("tiny", 1, version_dir, BatchingOptions(max_batch_size=6))
    assert result.error is None and result.servable is not None


def test_allowed_batch_sizes_pad_each_call_and_warm_every_size(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    version_dir = export_tiny(tmp_path / "tiny", seed=1)
    seen: list[int] = []
    real = Signature.__init__

    def recording_init(self: Signature, *args, **kwargs) -> None:
        real(self, *args, **kwargs)
        function = self.function
        def shape_recording(inputs):
            seen.append(len(next(iter(inputs.values()))))
            return function(inputs)
        self.function = shape_recording

    monkeypatch.setattr(Signature, "__init__", recording_init)
    batching = BatchingOptions(max_batch_size=8, allowed_batch_sizes=(2, 4, 8), num_batch_threads=2)
    servable = loader.load_version("tiny", 1, version_dir, batching, RuntimeOptions("tensorflow")).servable
    assert servable is not None
    # warm-up: every allowed size on each signature, from each of the 2 batch threads
    assert sorted(set(seen)) == [2, 4, 8] and seen.count(8) == 2 * 2 and seen.count(4) == 2 * 2
    seen.clear()
    images = np.array([image_bytes(seed) for seed in range(5)], dtype=object)
    padded = servable.signatures["serving_default"].run({"image_bytes": images})
    assert seen == [8]                                   # 5 rows ran as a batch of 8 ...
    assert padded["probabilities"].shape == (5, 3)       # ... and came back as 5
    alone = [servable.signatures["serving_default"].run({"image_bytes": images[i:i + 1]}) for i in range(5)]
    np.testing.assert_allclose(padded["probabilities"],
                               np.concatenate([a["probabilities"] for a in alone]), atol=1e-5)
    assert seen[1:] == [2] * 5                           # a single row pads to the smallest size


@pytest.mark.parametrize("sizes", [(2, 4), (4, 2, 8), (0, 8)])
def test_allowed_batch_sizes_must_rise_to_max_batch_size(sizes: tuple[int, ...]) -> None:
    from serving.config import ConfigError
    with pytest.raises(ConfigError, match="allowed_batch_sizes"):
        BatchingOptions(max_batch_size=8, allowed_batch_sizes=sizes)


def test_allowed_batch_sizes_from_flag_and_yaml(tmp_path: Path) -> None:
    from serving.config import parse_args
    flag = parse_args(["--model-name", "m", "--model-base-path", str(tmp_path), "--max-batch-size", "8",
                       "--allowed-batch-sizes", "2,4,8"], {})
    config = tmp_path / "models.yaml"
    config.write_text("models:\n  - name: m\n    base_path: .\n"
                      "    batching: {max_batch_size: 8, allowed_batch_sizes: [2, 4, 8]}\n")
    yaml = parse_args(["--model-config-file", str(config)], {})
    assert flag.models[0].batching.allowed_batch_sizes == yaml.models[0].batching.allowed_batch_sizes == (2, 4, 8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (what a 450 KB 12000x12000 PNG declares); the
    check reads only the header, so no pixels are needed to test it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_over_limit_warmup_image_is_skipped_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 16 item 1: a warm-up record over --max-image-pixels is skipped (logged), not decoded."""
    import time

    from serving.config import RuntimeOptions
    from trainer.export import write_warmup_requests

    version_dir = export_tiny(tmp_path / "tiny", seed=1)
    write_warmup_requests(version_dir / WARMUP_PATH, "tiny",
                          [_png_header_only(12000, 12000), image_bytes(3)])
    started = time.monotonic()
    with caplog.at_level("WARNING", logger=warmup.__name__):
        result = loader.load_version("tiny", 1, version_dir, BatchingOptions(max_batch_size=2),
                                     RuntimeOptions(runtime="tensorflow", max_image_pixels=25_000_000))
    assert result.error is None and result.servable is not None
    assert time.monotonic() - started < 30
    assert "skipping warm-up record 0 is 12000x12000 = 144000000 pixels, over the limit of 25000000" \
        in caplog.text
    assert warmup.recorded_images(warmup.read_warmup_records(version_dir, 25_000_000)) == [image_bytes(3)]


def test_a_version_without_warmup_records_is_warmed_with_generated_images(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 16 item 5: no records -> generated images at the model's size, every batch size."""
    from serving.config import RuntimeOptions

    version_dir = export_tiny(tmp_path / "tiny", seed=1)
    (version_dir / WARMUP_PATH).unlink()
    calls: list[tuple[str, int]] = []
    real_run = Signature.run

    def recording_run(self: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append((self.name, len(next(iter(inputs.values())))))
        return real_run(self, inputs)

    monkeypatch.setattr(Signature, "run", recording_run)
    result = loader.load_version("tiny", 1, version_dir, BatchingOptions(max_batch_size=3),
                                 RuntimeOptions(runtime="tensorflow"))
    assert result.error is None
    assert {("serving_default", n) for n in (1, 2, 3)} | {("predict_pixels", 3)} <= set(calls)


def test_without_records_the_fast_form_is_checked_on_each_generated_image_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated images are both the warm-up and the check's extra images: no image twice."""
    from serving import inference_runtime
    from serving.config import RuntimeOptions

    version_dir = export_tiny(tmp_path / "tiny", seed=1)
    (version_dir / WARMUP_PATH).unlink()
    checked: list[int] = []
    real_verify = inference_runtime.verify

    def counting_verify(reference, candidate, pixels, precision):   # noqa: ANN001 - the real signature
        checked.append(len(pixels))
        return real_verify(reference, candidate, pixels, precision)

    monkeypatch.setattr(inference_runtime, "verify", counting_verify)
    result = loader.load_version("tiny", 1, version_dir, BatchingOptions(max_batch_size=3),
                                 RuntimeOptions(runtime="litert"))
    assert result.error is None and result.servable.runtime.runtime == "litert"
    assert checked == [inference_runtime.GENERATED_IMAGES]
