"""Best of both stages: stage 2 is exported only when it beats stage 1 on validation loss, and a
collapsed fine-tuning run ends with stage 1's weights exported and the choice recorded."""
from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import tensorflow as tf

from serving.jobs.versions import export_summary
from trainer.config import TrainConfig
from trainer.stages import StageRun, WarmUp, fine_tuning_rate
from trainer.train import choose_stage


def _stage(final_val_loss: float | None) -> StageRun:
    return StageRun(epochs=1, seconds=1.0, images_per_second=1.0, val_loss=final_val_loss,
                    val_accuracy=0.5, final_val_loss=final_val_loss)


def test_stage2_is_exported_only_when_its_validation_loss_is_lower():
    assert choose_stage({"stage1": _stage(0.5), "stage2": _stage(0.4)}).stage == "stage2"
    kept = choose_stage({"stage1": _stage(0.5), "stage2": _stage(0.5)})
    assert kept.stage == "stage1" and "did not beat" in kept.reason
    assert choose_stage({"stage1": _stage(0.5), "stage2": _stage(math.nan)}).stage == "stage1"
    assert choose_stage({"stage1": _stage(0.5)}).reason == "no stage 2 was run"


def test_warm_up_ramps_linearly_to_the_peak_then_hands_over_to_the_cosine():
    batches = tf.data.Dataset.from_tensor_slices(np.zeros((12, 2), np.float32)).batch(4)  # 3/epoch
    schedule = fine_tuning_rate(3e-4, "cosine", 3, batches, warmup_epochs=1)
    assert isinstance(schedule, WarmUp)
    rates = [float(schedule(step)) for step in range(10)]
    assert rates[:3] == pytest.approx([1e-4, 2e-4, 3e-4], rel=1e-5)
    assert rates[3] == pytest.approx(3e-4, rel=1e-5)          # the cosine starts at the peak
    assert rates[9] == pytest.approx(0.0, abs=1e-12)          # and ends at 0 on the planned last step
    assert all(a >= b for a, b in zip(rates[3:], rates[4:]))
    assert fine_tuning_rate(1e-4, "constant", 1, batches, warmup_epochs=1) == 1e-4  # no epoch to spare


def test_a_collapsed_stage2_is_not_exported(tiny_data, tmp_path, caplog):
    """An absurd stage 2 rate wrecks the network within one epoch, deterministically."""
    from trainer.train import run

    base = tmp_path / "tiny"
    config = TrainConfig(data=str(tiny_data), model_name="tiny", model_base_path=str(base),
                         weights="none", image_size=32, epochs=2, ft_epochs=1, batch_size=8,
                         ft_learning_rate=1e4, verbose=0)
    with caplog.at_level(logging.INFO, logger="trainer.train"):
        result = run(config)
    metadata = json.loads((result.version_dir / "assets.extra" / "metadata.json").read_text())
    assert metadata["exported_stage"] == result.exported_stage == "stage1"
    assert "did not beat" in metadata["export_reason"]
    assert set(metadata["evaluation"]) == {"stage1", "stage2"}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("exported ")]
    assert len(lines) == 1 and lines[0].startswith("exported stage1: ")
    summary = export_summary(base, int(result.version_dir.name))
    assert summary["exported_stage"] == "stage1"
    assert summary["test_accuracy"]["stage1"] == metadata["evaluation"]["stage1"]["accuracy"]
    from trainer.evaluate import evaluate
    from trainer.pipeline import image_dataset
    from trainer.train import load_splits

    splits = load_splits(config)  # the model in memory (the one exported) scores stage 1's figure
    again = evaluate(result.classifier.model, image_dataset(splits.test, 32, 8), splits.class_names)
    assert again["accuracy"] == metadata["evaluation"]["stage1"]["accuracy"]
