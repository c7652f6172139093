"""Warm-up of a version before it serves (TF Serving's saved_model_warmup).

The version's recorded requests (assets.extra/tf_serving_warmup_requests, TF Serving's format) are
replayed, then full batches of images run at the batch sizes the batcher will form, from as many
threads as it has, so no live request pays for a first call. A failure fails the load.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from model_format.contract import DEFAULT_SIGNATURE, IMAGE_INPUT, PIXELS_INPUT, PIXELS_SIGNATURE, WARMUP_PATH
from serving.config import BatchingOptions
from serving.errors import ServingError
from serving.images import check_image
from serving.inference_runtime import generated_images
from serving.servable import Arrays, Servable, Signature, image_size

log = logging.getLogger(__name__)

MAX_WARMUP_RECORDS = 100

WarmupRecord = tuple[str, Arrays]    # (signature name, inputs) of one recorded predict request


def read_warmup_records(path: Path, max_image_pixels: int) -> list[WarmupRecord]:
    """The predict requests of assets.extra/tf_serving_warmup_requests (TF Serving's format), at
    most MAX_WARMUP_RECORDS. A record whose image a request could not send (serving.images: not an
    image, over --max-image-pixels) is skipped with a warning: warm-up obeys the request limits."""
    from tensorflow_serving.apis import prediction_log_pb2

    file = path / WARMUP_PATH
    if not file.exists():
        return []
    records: list[WarmupRecord] = []
    for index, record in enumerate(tf.data.TFRecordDataset(str(file)).take(MAX_WARMUP_RECORDS)):
        entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if not entry.HasField("predict_log"):
            continue
        request = entry.predict_log.request
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        try:
            for item in inputs[IMAGE_INPUT].reshape(-1) if IMAGE_INPUT in inputs else ():
                check_image(item, max_image_pixels, f"warm-up record {index}")
        except ServingError as error:
            log.warning("%s: skipping %s", file, error.message)
            continue
        records.append((request.model_spec.signature_name or DEFAULT_SIGNATURE, inputs))
    return records


def recorded_images(records: list[WarmupRecord]) -> list[bytes]:
    """The encoded images the warm-up records send to the image signature."""
    return [item for name, inputs in records if name == DEFAULT_SIGNATURE and IMAGE_INPUT in inputs
            for item in inputs[IMAGE_INPUT].reshape(-1).tolist()]



def warmup_images(servable: Servable, records: list[WarmupRecord]) -> list[bytes]:
    """The images full batches are made of: the recorded ones, else generated ones at the
    model's input size (an image-contract version without records), else none."""
    size = image_size(servable) if servable.image_contract else None
    return recorded_images(records) or (generated_images(size) if size else [])


def warm_up(servable: Servable, batching: BatchingOptions, records: list[WarmupRecord],
             images: list[bytes]) -> int:
    """Replay the warm-up records, then run full batches of `images` (the recorded images, or
    generated ones at the model's size when the version has none); returns the calls made.

    On TensorFlow the image signature runs at every batch size the batcher can form
    (`warmup_batch_sizes: all`, the default) and every signature at the full sizes
    (max_batch_size, or each allowed size above 1; with `max` the image signature gets only
    these too), each from `num_batch_threads` threads at once. The first call at a batch size
    allocates its activations and builds oneDNN primitives for that shape, and TensorFlow keeps
    them: done here, before the version is AVAILABLE, no batch of live traffic pays for a new
    shape and the RSS at readiness is the RSS under load. The primitives are cached per op shape
    and shared between signatures, so the others need the full sizes only.
    On LiteRT every call is a batch-1 invoke (serving.litert), so the full sizes alone suffice:
    they create one interpreter per batch thread.
    """
    for name, inputs in records:
        if name in servable.signatures:
            servable.signatures[name].run(inputs)
    calls = len(records)
    full = [size for size in batching.allowed_batch_sizes or (batching.max_batch_size,) if size > 1]
    every = list(batching.allowed_batch_sizes) or list(range(1, batching.max_batch_size + 1))
    on_tensorflow = servable.runtime.runtime == "tensorflow"
    image_sizes = every if batching.warmup_batch_sizes == "all" and on_tensorflow else full
    for size in sorted(set(image_sizes) | set(full), reverse=True) if images else ():
        names = {DEFAULT_SIGNATURE} if size in image_sizes else set()
        names |= set(servable.signatures) if size in full else set()
        for name, inputs in _full_batches(servable, images, size, names).items():
            calls += _run_side_by_side(servable.signatures[name], inputs, batching.num_batch_threads)
    return calls


def _run_side_by_side(signature: Signature, inputs: dict[str, np.ndarray], copies: int) -> int:
    """Run one batch from `copies` threads at once, as the batch threads will; errors propagate."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            signature.run(inputs)
        except BaseException as error:  # noqa: BLE001 - re-raised in the loading thread below
            errors.append(error)

    threads = [threading.Thread(target=run, name=f"warmup-{i}") for i in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return copies


def _full_batches(servable: Servable, images: list[bytes], batch_size: int,
                  names: set[str]) -> dict[str, dict[str, np.ndarray]]:
    """One `batch_size` batch for each contract signature in `names`, from the warm-up images
    replicated: the image signature gets the encoded bytes, predict_pixels the same images
    decoded and resized with the trainer's own ops (the pixel input a client of that signature
    would send)."""
    from model_format.imaging import decode_batch

    encoded = np.array([images[i % len(images)] for i in range(batch_size)], dtype=object)
    batches = {DEFAULT_SIGNATURE: {IMAGE_INPUT: encoded}} if DEFAULT_SIGNATURE in names else {}
    size = image_size(servable) if PIXELS_SIGNATURE in names else None
    if size:
        batches[PIXELS_SIGNATURE] = {PIXELS_INPUT: decode_batch(tf.constant(encoded), size).numpy()}
    return batches
