"""Stage 2's learning rate: constant, or cosine decay over exactly the planned steps."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.cli import build_parser
from trainer.config import DEFAULTS
from trainer.stages import fine_tuning_rate


def _batches(images: int, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(np.zeros((images, 2), np.float32)).batch(batch_size)


def test_constant_rate_is_the_rate_itself():
    assert fine_tuning_rate(1e-4, "constant", 5, _batches(10, 4)) == 1e-4


def test_cosine_decays_from_the_rate_to_zero_over_epochs_times_batches():
    schedule = fine_tuning_rate(3e-4, "cosine", 5, _batches(10, 4))  # 3 batches/epoch -> 15 steps
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    rates = [float(schedule(step)) for step in range(16)]
    assert rates[0] == pytest.approx(3e-4)
    assert rates[15] == pytest.approx(0.0, abs=1e-12)
    assert rates[7] == pytest.approx(3e-4 * (1 + np.cos(np.pi * 7 / 15)) / 2, rel=1e-5)
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_unknown_schedule_or_endless_dataset_is_refused():
    with pytest.raises(ValueError, match="unknown stage 2 learning rate schedule 'linear'"):
        fine_tuning_rate(1e-4, "linear", 5, _batches(10, 4))
    with pytest.raises(ValueError, match="known length"):
        fine_tuning_rate(1e-4, "cosine", 5, _batches(10, 4).repeat())


def test_cli_schedule_flag_defaults_to_the_config_and_accepts_only_known_names(capsys):
    base = ["train", "--data", "d", "--model-name", "m", "--model-base-path", "b"]
    assert build_parser().parse_args(base).ft_schedule == DEFAULTS.ft_schedule
    assert build_parser().parse_args([*base, "--ft-schedule", "constant"]).ft_schedule == "constant"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--ft-schedule", "linear"])
    assert "invalid choice: 'linear'" in capsys.readouterr().err


def test_unfreeze_top_all_is_the_default_and_frees_every_non_batchnorm_layer(capsys):
    from trainer.config import ALL_LAYERS
    from trainer.model import unfreeze_top

    base_args = ["train", "--data", "d", "--model-name", "m", "--model-base-path", "b"]
    assert build_parser().parse_args(base_args).unfreeze_top == DEFAULTS.unfreeze_top == ALL_LAYERS
    assert build_parser().parse_args([*base_args, "--unfreeze-top", "ALL"]).unfreeze_top == ALL_LAYERS
    assert build_parser().parse_args([*base_args, "--unfreeze-top", "3"]).unfreeze_top == 3
    for bad in ("-2", "most"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*base_args, "--unfreeze-top", bad])
    assert "--unfreeze-top: invalid layer_count value" in capsys.readouterr().err

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(4, 3, name="c2")(x)
    base = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="c3")(x))
    base.trainable = False
    assert unfreeze_top(base, ALL_LAYERS) == 3          # c1, c2, c3; BatchNorm stays frozen
    assert not base.get_layer("bn").trainable
    assert unfreeze_top(base, 1) == 1 and base.get_layer("c3").trainable and not base.get_layer("c1").trainable
