"""Write one model version per the model-version contract (docs/model-format.md): the two
signatures around the trained model, labels, metadata and warm-up requests, published by
model_format.publish (staging directory, then an atomic rename).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import keras
import tensorflow as tf

from model_format.contract import (
    DEFAULT_SIGNATURE, IMAGE_INPUT, PIXELS_INPUT, PIXELS_SIGNATURE, WARMUP_PATH, write_labels, write_metadata,
)
from model_format.imaging import decode_batch
from model_format.publish import publish_next, staging_dir


def _signature_outputs(probabilities: tf.Tensor, labels: tf.Tensor) -> dict[str, tf.Tensor]:
    classes = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    return {"probabilities": probabilities, "classes": classes, "labels": tf.gather(labels, classes)}


def _archive(model: keras.Model, labels: Sequence[str], image_size: int) -> keras.export.ExportArchive:
    """The two signatures of the contract around one tracked model."""
    label_table = tf.constant(list(labels), dtype=tf.string)
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_INPUT)])
    def serving_default(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = decode_batch(image_bytes, image_size)
        return _signature_outputs(model(pixels, training=False), label_table)

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=PIXELS_INPUT)])
    def predict_pixels(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return _signature_outputs(model(images, training=False), label_table)

    archive.add_endpoint(DEFAULT_SIGNATURE, serving_default)
    archive.add_endpoint(PIXELS_SIGNATURE, predict_pixels)
    return archive


def warmup_image(data: bytes, image_size: int) -> bytes:
    """An image resized to the model's input size, as PNG, for the warm-up file: the server replays
    these records before a version serves, so a 12000x12000 training image must not travel into
    it (the server would decode it whole; it refuses it by --max-image-pixels)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        resized = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    resized.save(buffer, "PNG")
    return buffer.getvalue()


def write_warmup_requests(path: Path, model_name: str, images: Sequence[bytes]) -> None:
    """TF Serving's warm-up format: a TFRecord of PredictionLog, one single-image request each."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        for image in images:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=DEFAULT_SIGNATURE)
            )
            request.inputs[IMAGE_INPUT].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def _write_extras(directory: Path, labels: Sequence[str], metadata: dict[str, Any],
                  model_name: str, warmup_images: Sequence[bytes]) -> None:
    write_labels(directory, list(labels))
    write_metadata(directory, metadata)
    if warmup_images:
        write_warmup_requests(directory / WARMUP_PATH, model_name, warmup_images)


def export_version(
    model: keras.Model,
    base_path: str | os.PathLike[str],
    *,
    model_name: str,
    labels: Sequence[str],
    image_size: int,
    metadata: dict[str, Any],
    warmup_images: Sequence[bytes] = (),
    files: dict[str, bytes] | None = None,
) -> Path:
    """Export `model` (float32 pixels 0..255 in, softmax out) as the next version under base_path.

    Returns the published version directory. `metadata` gains `name`, `version`, `image_size`
    and `class_names`; the caller supplies the rest (backbone, training args, evaluation, ...).
    `files` (name -> content, e.g. the fast forms) are written beside saved_model.pb before the
    version is published, so they appear with it.
    """
    base = Path(base_path)
    base.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(base)
    try:
        _archive(model, labels, image_size).write_out(str(staging), verbose=False)
        for name, content in (files or {}).items():
            (staging / name).write_bytes(content)
        version = _publish(staging, base, model_name, labels, image_size, metadata, warmup_images)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return base / str(version)


def _publish(staging: Path, base: Path, model_name: str, labels: Sequence[str], image_size: int,
             metadata: dict[str, Any], warmup_images: Sequence[bytes]) -> int:
    """Rename staging onto the next version, its metadata naming that version."""
    def finish(directory: Path, version: int) -> None:
        full = {**metadata, "name": model_name, "version": version,
                "image_size": image_size, "class_names": list(labels)}
        _write_extras(directory, labels, full, model_name, warmup_images)

    return publish_next(staging, base, finish)
