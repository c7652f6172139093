"""Image decoding and resizing: part of the contract, shared by the trainer and the server.

One function for every side is the point: the training input pipeline, the exported serving
signature and the server (its warm-up batches, the pixels it checks a fast form with) decode
encoded bytes with the same ops, so training and serving cannot drift apart.
This module imports TensorFlow (the ops themselves); the rest of model_format does not.
"""
from __future__ import annotations

import tensorflow as tf


def decode_image(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decode one encoded JPEG/PNG/GIF/BMP to uint8 RGB [H, W, 3] (first frame of a GIF)."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_pixels(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize an RGB image to [S, S, 3] float32 in 0..255 (bilinear, aspect ratio not kept)."""
    resized = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), method="bilinear")
    return tf.clip_by_value(resized, 0.0, 255.0)


def decode_and_resize(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded bytes -> float32 [S, S, 3] in 0..255: the model's pixel input."""
    return resize_pixels(decode_image(image_bytes), image_size)


def decode_batch(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """A [N] string tensor of encoded images -> float32 [N, S, S, 3]."""
    return tf.map_fn(
        lambda b: decode_and_resize(b, image_size),
        image_bytes,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )
