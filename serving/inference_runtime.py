"""Which runtime serves a version: TensorFlow, or LiteRT once it agrees with TensorFlow.

Rules:
- The SavedModel is the reference. A fast form (model_format.fast_form) serves only after it ran
  side by side with the SavedModel's `predict_pixels` on the version's warm-up images and on
  generated images: at fp32, the same top-1 everywhere and no probability more than
  MAX_PROBABILITY_DIFF apart. Otherwise TensorFlow serves, and the choice carries why.
- `auto` falls back to TensorFlow when the fast form cannot serve; `litert` insists: the version
  then fails to load, with the reason, and the versions already serving stay.
- A version without its fast form on disk (exported before the trainer wrote one) is converted at
  load, in memory; the version directory is never written.
- A reduced precision (int8) is opt in, and serves only when the trainer recorded its accuracy on
  the version's test split within MAX_ACCURACY_DROP of fp32; else fp32 serves, with the figures.
- Only the two signatures of the image contract run on LiteRT; any other signature stays on
  TensorFlow, and so does a model without the contract.
- Decoding and resizing stay in TensorFlow, with the trainer's own ops, so the pixels are the
  ones `serving_default` and training see.
"""
from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from model_format import fast_form
from model_format.litert import LiteRTModel
from serving.runtime import available_cpus

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "tensorflow", "litert")
PRECISIONS = fast_form.PRECISIONS
MAX_PROBABILITY_DIFF = 1e-4
MAX_ACCURACY_DROP = 0.005          # 0.5 points of accuracy (accuracies are fractions)
GENERATED_IMAGES = 8

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class RuntimeChoice:
    """What serves a version, and why not what was asked for (`note`, "" when as asked).

    `cause` is a short, bounded word for metric labels: conversion_failed, invalid_form,
    mismatch, precision_refused, no_contract or "" (none)."""
    runtime: str = "tensorflow"
    precision: str = "fp32"
    note: str = ""
    cause: str = ""


class FastFormRefused(Exception):
    """A fast form cannot serve this version; the message says why (with figures)."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


def generated_images(size: int, count: int = GENERATED_IMAGES, seed: int = 0) -> list[bytes]:
    """Deterministic PNGs of `size` x `size`: gradients under noise, each image different."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    images = []
    for _ in range(count):
        colours = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        picture = ramp[:, None, None] * colours[0] + ramp[None, :, None] * (255 - colours[1]) * 0.5
        picture = picture + rng.normal(0, 30, (size, size, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(buffer, "PNG")
        images.append(buffer.getvalue())
    return images


def pixel_decoder(image_size: int) -> Callable[[bytes], np.ndarray]:
    """Encoded image -> float32 [S, S, 3]: the trainer's decode and bilinear resize, as a graph."""
    import tensorflow as tf

    from model_format.imaging import decode_and_resize

    function = tf.function(lambda data: decode_and_resize(data, image_size),
                           input_signature=[tf.TensorSpec([], tf.string)]).get_concrete_function()
    return lambda data: function(tf.constant(data)).numpy()


def _outputs(probabilities: np.ndarray, labels: np.ndarray) -> Arrays:
    classes = probabilities.argmax(axis=-1).astype(np.int64)
    return {"probabilities": probabilities, "classes": classes, "labels": labels[classes]}


def fast_functions(model: LiteRTModel, decode: Callable[[bytes], np.ndarray], class_names: Sequence[str],
                   precision: str = "fp32") -> dict[str, Callable[[Arrays], Arrays]]:
    """The contract's two signatures on LiteRT, with the SavedModel's output names and dtypes.
    A reduced precision's softmax comes out in steps of 1/256, so its rows are renormalized to
    sum to 1 as probabilities must."""
    labels = np.array([name.encode() for name in class_names], dtype=object)

    def probabilities(pixels: np.ndarray) -> np.ndarray:
        rows = model(pixels)
        return rows if precision == "fp32" else rows / np.maximum(rows.sum(axis=-1, keepdims=True), 1e-12)

    def from_bytes(inputs: Arrays) -> Arrays:
        pixels = np.stack([decode(item) for item in inputs["image_bytes"].reshape(-1)])
        return _outputs(probabilities(pixels), labels)

    def from_pixels(inputs: Arrays) -> Arrays:
        return _outputs(probabilities(inputs["images"]), labels)

    return {"serving_default": from_bytes, "predict_pixels": from_pixels}


def _form_content(path: Path, precision: str, saved_model: Any) -> bytes:
    """The version's flatbuffer of `precision`; fp32 is converted in memory when missing."""
    file = fast_form.form_path(path, precision)
    if file.exists():
        return file.read_bytes()
    if precision != "fp32":
        raise FastFormRefused("precision_refused", f"no {file.name} in the version (the trainer writes it "
                                                   f"with --fast-forms {precision})")
    started = time.perf_counter()
    try:
        content = fast_form.convert(fast_form.saved_model_pixels_function(saved_model), saved_model)
    except Exception as error:  # noqa: BLE001 - any converter failure means: serve TensorFlow
        raise FastFormRefused("conversion_failed", f"LiteRT conversion failed: {type(error).__name__}: "
                                                   f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}")
    log.info("%s: no %s on disk, converted at load in %.1fs", path, file.name, time.perf_counter() - started)
    return content


def check_precision(metadata: dict[str, Any], precision: str) -> None:
    """Refuse a reduced precision whose recorded test accuracy falls short of fp32's."""
    if precision == "fp32":
        return
    forms = metadata.get(fast_form.METADATA_KEY) or {}
    reduced, full = (forms.get(precision) or {}).get("accuracy"), (forms.get("fp32") or {}).get("accuracy")
    if not isinstance(reduced, (int, float)) or not isinstance(full, (int, float)):
        raise FastFormRefused("precision_refused", f"metadata.json records no test accuracy of {precision} "
                                                   f"and fp32 ({fast_form.METADATA_KEY})")
    if full - reduced > MAX_ACCURACY_DROP:
        raise FastFormRefused("precision_refused", f"{precision} test accuracy {reduced:.2%} is "
                                                   f"{(full - reduced) * 100:.2f} points below fp32's {full:.2%} "
                                                   f"(limit {MAX_ACCURACY_DROP * 100:.1f})")


def verify(reference: Callable[[Arrays], Arrays], candidate: Callable[[Arrays], Arrays],
           pixels: np.ndarray, precision: str) -> None:
    """At fp32, raise FastFormRefused unless `candidate` gives the reference's top-1 on every
    image and probabilities within MAX_PROBABILITY_DIFF. A reduced precision is judged by the
    accuracy the trainer recorded (check_precision): on generated, low-confidence images its top-1
    may differ by design, so here its agreement is only measured and logged."""
    expected = reference({"images": pixels})["probabilities"]
    got = candidate({"images": pixels})["probabilities"]
    disagree = int((expected.argmax(-1) != got.argmax(-1)).sum())
    diff = float(np.abs(expected - got).max())
    if precision == "fp32" and (disagree or diff > MAX_PROBABILITY_DIFF):
        raise FastFormRefused("mismatch", f"LiteRT {precision} disagrees with the SavedModel on {len(pixels)} "
                                          f"images: {disagree} top-1 differ, max probability difference "
                                          f"{diff:.2e} (limit {MAX_PROBABILITY_DIFF:.0e})")
    log.info("LiteRT %s against the SavedModel on %d images: %d top-1 differ, max probability "
             "difference %.2e", precision, len(pixels), disagree, diff)


def load_fast(path: Path, saved_model: Any, reference: Callable[[Arrays], Arrays], precision: str,
              metadata: dict[str, Any], class_names: Sequence[str], image_size: int,
              images: Sequence[bytes]) -> dict[str, Callable[[Arrays], Arrays]]:
    """The contract signatures on LiteRT at `precision`, verified on `images`; raises
    FastFormRefused (with the reason) when the fast form cannot serve."""
    check_precision(metadata, precision)
    content = _form_content(path, precision, saved_model)
    try:
        model = LiteRTModel(content, threads=available_cpus())   # a lone call uses every CPU
    except (ValueError, RuntimeError) as error:
        raise FastFormRefused("invalid_form", f"LiteRT cannot load {fast_form.FILES[precision]}: "
                                              f"{str(error).strip().splitlines()[0] if str(error).strip() else error!r}")
    if model.input_shape[1:3] != (image_size, image_size):
        raise FastFormRefused("mismatch", f"{fast_form.FILES[precision]} takes {list(model.input_shape)}, "
                                          f"the SavedModel {image_size} px images")
    decode = pixel_decoder(image_size)
    functions = fast_functions(model, decode, class_names, precision)
    verify(reference, functions["predict_pixels"], np.stack([decode(item) for item in images]), precision)
    return functions


def choose(path: Path, saved_model: Any, reference: Callable[[Arrays], Arrays] | None, wanted: str,
           precision: str, metadata: dict[str, Any], class_names: Sequence[str], image_size: int | None,
           images: Sequence[bytes]) -> tuple[RuntimeChoice, dict[str, Callable[[Arrays], Arrays]]]:
    """The runtime for one version and, for LiteRT, the functions that replace the contract
    signatures. With `auto`, a fast form that cannot serve means TensorFlow (or fp32) serves;
    with `litert`, FastFormRefused is raised once neither precision can serve."""
    if wanted == "tensorflow":
        return RuntimeChoice(), {}
    if reference is None or image_size is None:
        if wanted == "litert":
            raise FastFormRefused("no_contract", "--runtime litert serves image-contract models only")
        return RuntimeChoice(note="not an image-contract model: TensorFlow serves it", cause="no_contract"), {}
    samples = list(dict.fromkeys([*images, *generated_images(image_size)]))   # the warm-up may be the generated ones
    notes: list[str] = []
    for attempt in dict.fromkeys((precision, "fp32")):
        try:
            functions = load_fast(path, saved_model, reference, attempt, metadata, class_names, image_size, samples)
            note = "; ".join(notes)
            return RuntimeChoice("litert", attempt, note, "precision_refused" if note else ""), functions
        except FastFormRefused as refusal:
            log.warning("%s: LiteRT %s refused: %s", path, attempt, refusal)
            notes.append(f"{attempt}: {refusal}")
            cause = refusal.cause
    if wanted == "litert":
        raise FastFormRefused(cause, "--runtime litert, but " + "; ".join(notes))
    return RuntimeChoice(note="TensorFlow serves; " + "; ".join(notes), cause=cause), {}
