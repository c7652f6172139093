"""Small, fast models and images for tests: real exports through trainer.export, no backbone."""
from __future__ import annotations

import io
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from trainer.export import export_version

TINY_SIZE = 32
TINY_LABELS = ["cat", "dog", "pizza"]


def tiny_model(seed: int, num_classes: int = len(TINY_LABELS), image_size: int = TINY_SIZE) -> keras.Model:
    """A small conv net (pixels 0..255 in, softmax out); different seeds give different outputs."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def export_tiny(base_path: Path, seed: int = 1, model_name: str = "tiny",
                labels: list[str] | None = None) -> Path:
    """Export a tiny model as the next version under base_path; returns the version directory."""
    labels = labels or TINY_LABELS
    model = tiny_model(seed, num_classes=len(labels))
    return export_version(model, base_path, model_name=model_name, labels=labels,
                          image_size=TINY_SIZE, metadata={"backbone": "tiny-test", "seed": seed,
                                                          "evaluation": {"stage2": {"accuracy": 0.5}}},
                          warmup_images=[image_bytes(0)])


def image_bytes(seed: int, fmt: str = "JPEG", size: tuple[int, int] = (48, 40)) -> bytes:
    """An encoded random RGB image, deterministic per seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()
