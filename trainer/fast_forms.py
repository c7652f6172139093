"""The fast forms of a version (model_format.fast_form), made and measured at export.

Rules:
- fp32 is the SavedModel's arithmetic in LiteRT's flatbuffer; int8 is full-integer post-training
  quantization calibrated on training images (never the test split, which measures it).
- Every form is evaluated on the version's own test split with the runtime that will serve it
  (model_format.litert), and its figures go to metadata.json under `fast_forms`: the server
  serves a reduced precision only when its accuracy there holds against fp32.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Sequence

import numpy as np

from model_format.fast_form import FILES, convert, keras_pixels_function
from model_format.litert import LiteRTModel
from trainer.evaluate import evaluate_forward

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 100


def build(model: Any, image_size: int, precisions: Sequence[str], calibration: Any, test: Any,
          class_names: Sequence[str]) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """The flatbuffers of `precisions` by file name, and their figures by precision.

    `calibration` and `test` are (pixels, label) datasets; the first CALIBRATION_IMAGES images
    of `calibration` calibrate int8."""
    function = keras_pixels_function(model, image_size)
    files: dict[str, bytes] = {}
    figures: dict[str, dict[str, Any]] = {}
    for precision in precisions:
        started = time.perf_counter()
        content = convert(function, model, _calibration(calibration) if precision == "int8" else None)
        seconds = time.perf_counter() - started
        report = evaluate_forward(LiteRTModel(content), test, class_names)
        files[FILES[precision]] = content
        figures[precision] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                              "bytes": len(content), "convert_seconds": round(seconds, 1)}
        log.info("fast form %s: %s, %.1f%% test accuracy, %d kB, converted in %.1fs", precision,
                 FILES[precision], 100 * report["accuracy"], len(content) // 1024, seconds)
    return files, figures


def _calibration(dataset: Any) -> Any:
    """A callable yielding single-image pixel batches, as the converter's representative data."""
    def images() -> Iterable[np.ndarray]:
        count = 0
        for pixels, _labels in dataset:
            for row in np.asarray(pixels):
                if count == CALIBRATION_IMAGES:
                    return
                count += 1
                yield row[None]
    return images
