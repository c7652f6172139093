"""tf.data input streams: read, decode and resize with model_format.imaging, cache, batch, prefetch.

Augmentation (Keras preprocessing layers) is applied to training batches only, after the cache,
so every epoch sees fresh variations of the decoded images.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from trainer.data import Split
from model_format.imaging import decode_and_resize


def augmenter(seed: int) -> keras.Sequential:
    """Random flip, rotation and zoom: cheap label-preserving variation for small datasets."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.05, seed=seed + 1),
        keras.layers.RandomZoom(0.1, seed=seed + 2),
    ], name="augmentation")


def image_dataset(split: Split, image_size: int, batch_size: int, *, training: bool = False,
                  augment: bool = True, seed: int = 0) -> tf.data.Dataset:
    """(pixels float32 [B, S, S, 3] 0..255, label int32 [B]) batches of one split."""
    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return decode_and_resize(tf.io.read_file(path), image_size), label

    dataset = tf.data.Dataset.from_tensor_slices((split.paths, tf.constant(split.labels, tf.int32)))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if training:
        dataset = dataset.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if training and augment:
        layers = augmenter(seed)
        dataset = dataset.map(lambda x, y: (layers(x, training=True), y),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
