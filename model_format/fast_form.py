"""A version's fast form: the LiteRT flatbuffers that map pixels to probabilities.

The SavedModel stays the reference and the source of truth; these files are derived from it and
live beside `saved_model.pb`, as TF Serving's `--prefer_tflite_model` expects `model.tflite`:

    MODELS/<name>/<version>/model.tflite         fp32, the same arithmetic as the SavedModel
    MODELS/<name>/<version>/model_int8.tflite    full-integer post-training quantization (opt in)

Only the pixels -> probabilities part converts: decoding, resizing, `classes` and `labels` (string
ops) stay outside. Each flatbuffer has one float32 input [-1, H, W, 3] (pixels 0..255) and one
float32 output [-1, C].

The accuracy of each precision on the version's own test split is recorded in metadata.json under
`fast_forms.<precision>.accuracy`; a server may refuse a reduced precision by these figures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

PRECISIONS = ("fp32", "int8")
FILES = {"fp32": "model.tflite", "int8": "model_int8.tflite"}
PIXELS_SIGNATURE = "predict_pixels"
PROBABILITIES = "probabilities"
METADATA_KEY = "fast_forms"


def form_path(version_dir: Path, precision: str) -> Path:
    """Where a version keeps the flatbuffer of `precision`."""
    return Path(version_dir) / FILES[precision]


def convert(pixels_to_probabilities: Any, trackable: Any = None,
            calibration: Callable[[], Iterable[np.ndarray]] | None = None) -> bytes:
    """A LiteRT flatbuffer of a concrete function (float32 pixels [N, H, W, 3] -> probabilities).

    With `calibration` (a callable yielding single-image pixel batches [1, H, W, 3]) the result is
    full-integer int8 (weights and activations; float32 in and out), else fp32 unchanged.
    """
    import tensorflow as tf

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # Weights frozen into constants: the int8 calibrator cannot read a model's resource variables.
    frozen = convert_variables_to_constants_v2(pixels_to_probabilities)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], trackable)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([batch.astype(np.float32)] for batch in calibration())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def keras_pixels_function(model: Any, image_size: int) -> Any:
    """The concrete function pixels -> probabilities of a Keras model (pixels 0..255 in)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")])
    def probabilities(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {PROBABILITIES: model(images, training=False)}

    return probabilities.get_concrete_function()


def saved_model_pixels_function(saved_model: Any) -> Any:
    """The concrete function pixels -> probabilities of a loaded contract SavedModel (its
    `predict_pixels` signature cut down to the one float output, so no string op is converted)."""
    import tensorflow as tf

    signature = saved_model.signatures[PIXELS_SIGNATURE]
    spec = signature.structured_input_signature[1]["images"]

    @tf.function(input_signature=[tf.TensorSpec([None, *spec.shape[1:]], tf.float32, name="images")])
    def probabilities(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {PROBABILITIES: signature(images=images)[PROBABILITIES]}

    return probabilities.get_concrete_function()
