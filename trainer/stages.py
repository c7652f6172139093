"""The two training stages: feature extraction (frozen base) and fine-tuning (top of base unfrozen).

Each returns a `StageRun` with its wall time and throughput; evaluation is the caller's business.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from trainer import distributed_loop
from trainer.config import describe_layers
from trainer.model import Classifier, inference_function, unfreeze_top
from trainer.termination import check as check_termination

log = logging.getLogger(__name__)
LOSS = "sparse_categorical_crossentropy"


class TerminationCheck(keras.callbacks.Callback):
    """Stops fit() within one batch of a SIGTERM (see trainer.termination)."""

    def on_train_batch_end(self, batch, logs=None) -> None:
        check_termination()

    def on_test_batch_end(self, batch, logs=None) -> None:
        check_termination()


@dataclass
class StageRun:
    """What one stage did: epochs run, wall seconds, training images per second, last val figures."""

    epochs: int
    seconds: float
    images_per_second: float
    val_loss: float | None
    val_accuracy: float | None
    feature_seconds: float = 0.0  # --cache-features: time spent computing the features once
    # Validation loss of the weights the stage leaves in the model (stage 1: its last epoch;
    # stage 2: its best epoch, restored by early stopping). The stage choice compares these.
    final_val_loss: float | None = None

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _finish(history: keras.callbacks.History, started: float, images: int,
            restored_best: bool = False) -> StageRun:
    """The stage's figures; `restored_best`: the model holds the best epoch's weights, else the last's."""
    seconds = time.perf_counter() - started
    epochs = len(history.epoch)
    val_loss = history.history.get("val_loss", [None])
    val_acc = history.history.get("val_accuracy", [None])
    best = int(np.argmin(val_loss)) if val_loss[0] is not None else -1
    final = val_loss[best] if restored_best else val_loss[-1]
    return StageRun(epochs, seconds, images * epochs / seconds if seconds else 0.0,
                    val_loss[best], val_acc[best], final_val_loss=final)


def _fit(model: keras.Model, strategy: tf.distribute.Strategy, train: tf.data.Dataset,
         val: tf.data.Dataset, *, epochs: int, callbacks: list, verbose: int) -> keras.callbacks.History:
    """model.fit, or its multi-worker stand-in (fit cannot drive MultiWorkerMirroredStrategy)."""
    if distributed_loop.is_multi_worker(strategy):
        return distributed_loop.train(model, strategy, train, val, epochs=epochs, callbacks=callbacks,
                                      verbose=verbose)
    return model.fit(train, validation_data=val, epochs=epochs, shuffle=False, callbacks=callbacks,
                     verbose=verbose)


def feature_extraction(classifier: Classifier, strategy: tf.distribute.Strategy,
                       train: tf.data.Dataset, val: tf.data.Dataset, *, epochs: int,
                       learning_rate: float, train_images: int, verbose: int = 2) -> StageRun:
    """Stage 1: train the head on the frozen base, streaming augmented images every epoch."""
    with strategy.scope():
        classifier.model.compile(keras.optimizers.Adam(learning_rate), LOSS, metrics=["accuracy"])
    started = time.perf_counter()
    history = _fit(classifier.model, strategy, train, val, epochs=epochs,
                   callbacks=[TerminationCheck()], verbose=verbose)
    return _finish(history, started, train_images)


def pooled_features(classifier: Classifier, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Run the frozen base once over a dataset: (features [N, D], labels [N])."""
    forward = inference_function(classifier.features)
    features, labels = [], []
    for pixels, batch_labels in dataset:
        features.append(np.asarray(forward(pixels), dtype=np.float32))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(features), np.concatenate(labels)


def cached_feature_extraction(classifier: Classifier, strategy: tf.distribute.Strategy,
                              train: tf.data.Dataset, val: tf.data.Dataset, *, epochs: int,
                              learning_rate: float, batch_size: int, verbose: int = 2) -> StageRun:
    """Stage 1 with `--cache-features`: the base runs once per image (no augmentation), then the
    head trains on the cached pooled features. The head is the full model's own head, so the
    model to export is assembled already."""
    started = time.perf_counter()
    train_x, train_y = pooled_features(classifier, train)
    val_x, val_y = pooled_features(classifier, val)
    feature_seconds = time.perf_counter() - started
    log.info("cached pooled features: train %s, val %s in %.1fs", train_x.shape, val_x.shape,
             feature_seconds)
    with strategy.scope():
        classifier.head.compile(keras.optimizers.Adam(learning_rate), LOSS, metrics=["accuracy"])
    history = classifier.head.fit(train_x, train_y, batch_size=batch_size, epochs=epochs,
                                  validation_data=(val_x, val_y), shuffle=True,
                                  callbacks=[TerminationCheck()], verbose=verbose)
    run = _finish(history, started, len(train_x))
    run.feature_seconds = feature_seconds
    return run


class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """Linear ramp from ~0 to `peak` over `warmup_steps`, then `after` (counted from the ramp's end).

    Why: Adam's first steps move every unfrozen weight by about the full rate whatever its gradient,
    while its moment estimates are still raw; at a fine-tuning peak rate that shakes pretrained
    features apart before the head and base agree, and a short stage 2 has no epochs left to
    recover. The ramp lets the moments settle at small steps first."""

    def __init__(self, peak: float, warmup_steps: int,
                 after: float | keras.optimizers.schedules.LearningRateSchedule) -> None:
        self.peak, self.warmup_steps, self.after = peak, max(int(warmup_steps), 1), after

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        ramp = self.peak * (step + 1.0) / float(self.warmup_steps)
        rest = step - float(self.warmup_steps)
        later = self.after(rest) if callable(self.after) else tf.constant(self.after, tf.float32)
        return tf.where(step < float(self.warmup_steps), ramp, tf.cast(later, tf.float32))

    def get_config(self) -> dict:
        after = self.after if not callable(self.after) else keras.saving.serialize_keras_object(self.after)
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "after": after}


def fine_tuning_rate(learning_rate: float, schedule: str, epochs: int, train: tf.data.Dataset,
                     warmup_epochs: int = 0) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Stage 2's learning rate: an optional linear warm-up over the first `warmup_epochs`, then
    `constant`, or `cosine` decaying from `learning_rate` to zero over the remaining planned steps,
    so the last epochs take small, careful steps around the best weights instead of bouncing."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown stage 2 learning rate schedule {schedule!r} (constant | cosine)")
    warmup_epochs = min(max(warmup_epochs, 0), max(epochs - 1, 0))  # leave one epoch at the peak
    if schedule == "constant" and not warmup_epochs:
        return learning_rate
    batches = int(train.cardinality())
    if batches <= 0:
        raise ValueError("a stage 2 schedule needs a training dataset of known length")
    after: float | keras.optimizers.schedules.LearningRateSchedule = learning_rate
    if schedule == "cosine":
        after = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=(epochs - warmup_epochs) * batches)
    return WarmUp(learning_rate, warmup_epochs * batches, after) if warmup_epochs else after


def fine_tuning(classifier: Classifier, strategy: tf.distribute.Strategy,
                train: tf.data.Dataset, val: tf.data.Dataset, *, epochs: int, unfreeze: int,
                learning_rate: float, patience: int, train_images: int, schedule: str = "constant",
                warmup_epochs: int = 0, verbose: int = 2) -> StageRun:
    """Stage 2: unfreeze the top of the base (BatchNorm stays frozen), low learning rate (optionally
    warmed up, optionally cosine-decayed), early stopping on validation loss with the best weights
    restored."""
    rate = fine_tuning_rate(learning_rate, schedule, epochs, train, warmup_epochs)
    with strategy.scope():
        weighted = unfreeze_top(classifier.base, unfreeze)
        log.info("stage 2: %d weighted base layers trainable (%s, BatchNorm frozen), lr %g %s, "
                 "warm-up %d epochs", weighted, describe_layers(unfreeze), learning_rate, schedule,
                 warmup_epochs)
        classifier.model.compile(keras.optimizers.Adam(rate), LOSS, metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                         restore_best_weights=True)
    started = time.perf_counter()
    history = _fit(classifier.model, strategy, train, val, epochs=epochs,
                   callbacks=[stop, TerminationCheck()], verbose=verbose)
    return _finish(history, started, train_images, restored_best=True)
