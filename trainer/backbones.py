"""Registry of pretrained backbones: constructor, input preprocessing, default input size.

The exported model takes raw float32 pixels 0..255, so each backbone's preprocessing lives inside
the model as `BackbonePreprocess`, a small registered layer (not a Lambda, which would not reload
safely). Serving then needs to know nothing about the backbone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
from keras import ops

from trainer.errors import TrainerError

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="trainer")
class BackbonePreprocess(keras.layers.Layer):
    """Pixels 0..255 RGB -> what the backbone was trained on.

    mode "tf": scale to -1..1 (MobileNetV2, InceptionV3); "caffe": RGB->BGR minus the ImageNet
    mean (ResNet50, VGG16); "none": the backbone normalises by itself (EfficientNet).
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("tf", "caffe", "none"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, inputs):
        if self.mode == "tf":
            return inputs / 127.5 - 1.0
        if self.mode == "caffe":
            mean = ops.cast(ops.convert_to_tensor(_CAFFE_MEAN_BGR), inputs.dtype)
            return ops.flip(inputs, axis=-1) - mean
        return inputs

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@dataclass(frozen=True)
class Backbone:
    """How to build one family of base networks without its classifier top."""

    name: str
    constructor: Callable[..., keras.Model]
    preprocess_mode: str
    default_size: int
    min_size: int = 32

    def build(self, image_size: int, weights: str) -> keras.Model:
        """The no-top base for `weights`: "imagenet" (Keras download), "none", or a file path."""
        if image_size < self.min_size:
            raise TrainerError(f"--image-size {image_size} is below {self.name}'s minimum {self.min_size}")
        shape = (image_size, image_size, 3)
        if weights == "imagenet":
            try:
                return self.constructor(weights="imagenet", include_top=False, input_shape=shape)
            except Exception as error:  # noqa: BLE001 - network failures come as many types
                raise TrainerError(
                    f"could not get ImageNet weights for {self.name} ({_short(error)}); offline, "
                    f"pass a local file with --weights PATH (or --weights none)") from error
        base = self.constructor(weights=None, include_top=False, input_shape=shape)
        if weights != "none":
            _load_weights_file(base, Path(weights), self.name)
        return base

    def preprocess(self) -> BackbonePreprocess:
        return BackbonePreprocess(self.preprocess_mode, name="preprocess")


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:160] if str(error) else type(error).__name__


def _load_weights_file(base: keras.Model, path: Path, name: str) -> None:
    if not path.is_file():
        raise TrainerError(f"--weights file not found: {path} (give a weights file, 'imagenet' or 'none')")
    try:
        base.load_weights(str(path))
    except Exception as error:  # noqa: BLE001 - a wrong file can fail in many ways
        raise TrainerError(f"--weights {path} does not fit the {name} base: {_short(error)}") from error


BACKBONES: dict[str, Backbone] = {
    b.name: b for b in (
        Backbone("mobilenet_v2", keras.applications.MobileNetV2, "tf", 224),
        Backbone("resnet50", keras.applications.ResNet50, "caffe", 224),
        Backbone("efficientnet_b0", keras.applications.EfficientNetB0, "none", 224),
        Backbone("vgg16", keras.applications.VGG16, "caffe", 224),
        Backbone("inception_v3", keras.applications.InceptionV3, "tf", 299, min_size=75),
    )
}


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise TrainerError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}") from None
