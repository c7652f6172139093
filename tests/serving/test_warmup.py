"""The loader warms a version up at the batcher's max_batch_size before it becomes AVAILABLE."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving import loader
from serving.config import BatchingOptions, ModelConfig
from serving.manager import ServableManager
from tests.helpers import export_tiny


def test_every_signature_runs_at_max_batch_size_while_loading(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "tiny"
    export_tiny(base, seed=1)
    manager = ServableManager((ModelConfig("tiny", base, batching=BatchingOptions(max_batch_size=6)),))
    calls: list[tuple[str, int, str, dict]] = []
    real_run = loader.Signature.run

    def recording_run(self: loader.Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = real_run(self, inputs)
        state = {s.version: s.state for s in manager.status("tiny")}.get(1, "START")
        calls.append((self.name, len(next(iter(inputs.values()))), state, outputs))
        return outputs

    monkeypatch.setattr(loader.Signature, "run", recording_run)
    manager.poll()
    try:
        sizes = {(name, size) for name, size, _, _ in calls}
        assert sizes == {("serving_default", 1), ("serving_default", 6), ("predict_pixels", 6)}
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
    (version_dir / "assets.extra" / loader.WARMUP_FILE).unlink()
    result = loader.load_version("tiny", 1, version_dir, warmup_batch_size=6)
    assert result.error is None and result.servable is not None
