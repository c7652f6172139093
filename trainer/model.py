"""The classifier: pixels -> backbone preprocessing -> base -> pooled features -> head -> softmax.

The head is its own small model over pooled features, so `--cache-features` can train exactly the
layers the full model uses on features computed once, and the full model is the same object either
way. The base is called with training=False: its BatchNormalization layers stay in inference mode
even when stage 2 unfreezes the top of the base (their moving statistics, learnt on ImageNet,
would otherwise be wrecked by small batches of new data).
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from trainer.backbones import Backbone


@dataclass
class Classifier:
    """The full model and the parts the training stages need handles on."""

    model: keras.Model      # float32 pixels 0..255 -> class probabilities (what gets exported)
    base: keras.Model       # the backbone without its top
    features: keras.Model   # pixels -> pooled features (shares layers with `model`)
    head: keras.Model       # pooled features -> class probabilities


def build_head(feature_dim: int, num_classes: int, dropout: float, hidden_units: int) -> keras.Model:
    """GlobalAveragePooling's output -> Dropout -> [Dense relu -> Dropout] -> Dense softmax."""
    inputs = keras.Input((feature_dim,), name="pooled_features")
    x = keras.layers.Dropout(dropout, name="head_dropout")(inputs)
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation="relu", name="head_hidden")(x)
        x = keras.layers.Dropout(dropout, name="head_hidden_dropout")(x)
    # float32 output even under mixed precision: softmax in float16 loses small probabilities.
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="head")


def build_classifier(backbone: Backbone, num_classes: int, image_size: int, weights: str, *,
                     dropout: float = 0.2, hidden_units: int = 0,
                     from_scratch: bool = False, bn_momentum: float | None = None) -> Classifier:
    """Stage 1 layout: base frozen. `from_scratch` instead trains everything, BN in training mode."""
    base = backbone.build(image_size, weights)
    if bn_momentum is not None:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
    base.trainable = from_scratch
    pixels = keras.Input((image_size, image_size, 3), dtype="float32", name="images")
    x = backbone.preprocess()(pixels)
    x = base(x, training=None if from_scratch else False)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    head = build_head(int(pooled.shape[-1]), num_classes, dropout, hidden_units)
    model = keras.Model(pixels, head(pooled), name=f"{backbone.name}_classifier")
    features = keras.Model(pixels, pooled, name=f"{backbone.name}_features")
    return Classifier(model, base, features, head)


def unfreeze_top(base: keras.Model, count: int) -> int:
    """Make the top `count` layers of the base (every layer if count < 0, `--unfreeze-top all`)
    trainable, except BatchNormalization; returns how many layers now carry trainable weights."""
    base.trainable = True
    cut = 0 if count < 0 else max(0, len(base.layers) - count)
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= cut and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(1 for layer in base.layers if layer.trainable and layer.weights)


def inference_function(model: keras.Model):
    """model(x, training=False) as a tf.function: eager calls are 5-8x slower on this CPU."""
    @tf.autograph.experimental.do_not_convert
    def forward(pixels: tf.Tensor) -> tf.Tensor:
        return model(pixels, training=False)

    return tf.function(forward)
