"""Checks of a training run's arguments and output place, made before any TensorFlow work.

A bad number would otherwise surface minutes later as a traceback (`--batch-size 0`), or not at
all (`--image-size 0` quietly meant "the backbone's size"); an unwritable model base path used to
fail only at export, after stage 1's work. Each check raises TrainerError naming the flag.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from trainer.errors import TrainerError


def check_numbers(config: Any) -> None:
    """The numeric flags of `trainer train` (a TrainConfig or the parsed arguments)."""
    at_least = {"image_size": 1, "batch_size": 1, "epochs": 1, "ft_epochs": 0, "patience": 0,
                "hidden_units": 0}
    for name, minimum in at_least.items():
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise TrainerError(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")
    for flag, value in (("--lr", config.learning_rate), ("--ft-lr", config.ft_learning_rate)):
        if not value > 0:
            raise TrainerError(f"{flag} must be > 0, got {value}")
    if not 0 <= config.dropout < 1:
        raise TrainerError(f"--dropout must be in [0, 1), got {config.dropout}")
    _check_fractions(config)


def _check_fractions(config: Any) -> None:
    """Each held-out split needs images: a fraction > 0 of --data, or its own folder."""
    for role in ("val", "test"):
        fraction, folder = getattr(config, f"{role}_fraction"), getattr(config, f"{role}_data")
        if not 0 <= fraction < 1:
            raise TrainerError(f"--{role}-fraction must be in [0, 1), got {fraction}")
        if fraction == 0 and not folder:
            raise TrainerError(f"--{role}-fraction 0 leaves no {role} images; give a fraction > 0 "
                               f"or --{role}-data")
    taken = sum(getattr(config, f"{r}_fraction") for r in ("val", "test") if not getattr(config, f"{r}_data"))
    if taken >= 1:
        raise TrainerError(f"--val-fraction + --test-fraction must be < 1 (images must remain for "
                           f"training), got {taken:g}")


def check_base_path(base_path: str | os.PathLike[str]) -> None:
    """The model base path is (or can be made) a directory this process can write versions into."""
    path = Path(base_path)
    if path.exists() and not path.is_dir():
        raise TrainerError(f"--model-base-path {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        raise TrainerError(f"--model-base-path {path} is not writable: {error.strerror}") from None


def check_top_k(top_k: int, limit: int | None) -> None:
    """`trainer predict` numbers: at least one label per image, at least one image."""
    if top_k < 1:
        raise TrainerError(f"--top-k must be >= 1, got {top_k}")
    if limit is not None and limit < 1:
        raise TrainerError(f"--limit must be >= 1, got {limit}")
