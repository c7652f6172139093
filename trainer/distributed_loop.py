"""A fit-like training loop for MultiWorkerMirroredStrategy.

Keras 3's `model.fit` cannot drive MultiWorkerMirroredStrategy (keras-team/keras#20585), so on a
multi-worker cluster the stages call `train()` here instead. It is deliberately only the part of
fit the stages use: the model's compiled optimizer and loss, a training pass and a validation pass
per epoch, and the same Keras callbacks (EarlyStopping with best-weights restore, the SIGTERM
check) driven through a CallbackList, returning a History. So the stages keep one definition of
their rules (learning rate, epochs, unfreezing, BatchNorm frozen) for both paths.

Every worker reads the same batched dataset; `experimental_distribute_dataset` with DATA
auto-sharding gives each replica its slice of every global batch (the input order is seeded, so
identical on all workers). A partial last batch can leave a replica with few or no examples, so
each replica's summed loss is divided by the all-reduced number of examples in the global batch:
the all-reduced gradient is then exactly the gradient of the global batch's mean loss.
"""
from __future__ import annotations

import logging
from typing import Sequence

import keras
import tensorflow as tf

log = logging.getLogger(__name__)
SUM = tf.distribute.ReduceOp.SUM


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def distribute(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """`dataset` (batched at the global batch size) split across every replica of the cluster."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _steps(model: keras.Model, strategy: tf.distribute.Strategy):
    """(train_step, val_step) tf.functions over one distributed batch."""
    per_example_loss = keras.losses.get(model.loss)  # the compiled loss, unreduced

    def train_replica(pixels: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        global_count = tf.distribute.get_replica_context().all_reduce(SUM, count)
        with tf.GradientTape() as tape:
            loss = tf.math.divide_no_nan(tf.reduce_sum(per_example_loss(labels, model(pixels, training=True))),
                                         global_count)
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    def val_replica(pixels: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        probabilities = model(pixels, training=False)
        hits = tf.equal(tf.argmax(probabilities, axis=-1, output_type=labels.dtype), labels)
        return tf.stack([tf.reduce_sum(per_example_loss(labels, probabilities)),
                         tf.reduce_sum(tf.cast(hits, tf.float32)), tf.cast(tf.shape(labels)[0], tf.float32)])

    @tf.function
    def train_step(batch) -> tf.Tensor:
        return strategy.reduce(SUM, strategy.run(train_replica, args=batch), axis=None)

    @tf.function
    def val_step(batch) -> tf.Tensor:
        return strategy.reduce(SUM, strategy.run(val_replica, args=batch), axis=None)

    return train_step, val_step


def train(model: keras.Model, strategy: tf.distribute.Strategy, train_ds: tf.data.Dataset,
          val_ds: tf.data.Dataset, *, epochs: int, callbacks: Sequence[keras.callbacks.Callback] = (),
          verbose: int = 2) -> keras.callbacks.History:
    """`model.fit(train_ds, validation_data=val_ds, epochs=..., callbacks=...)` on `strategy`.

    `model` must be compiled in `strategy.scope()`. Logs per epoch: loss, val_loss, val_accuracy,
    the same on every worker (all of them are all-reduced), so early stopping stops them together.
    """
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)  # slots as mirrored variables, up front
    train_step, val_step = _steps(model, strategy)
    train_batches, val_batches = distribute(strategy, train_ds), distribute(strategy, val_ds)
    history = keras.callbacks.History()
    hooks = keras.callbacks.CallbackList([*callbacks, history], model=model, epochs=epochs)
    model.stop_training = False
    hooks.on_train_begin()
    for epoch in range(epochs):
        hooks.on_epoch_begin(epoch)
        losses = []
        for step, batch in enumerate(train_batches):
            losses.append(float(train_step(batch)))
            hooks.on_train_batch_end(step)
        totals = tf.zeros(3)
        for step, batch in enumerate(val_batches):
            totals += val_step(batch)
            hooks.on_test_batch_end(step)
        loss_sum, hits, count = (float(v) for v in totals)
        logs = {"loss": sum(losses) / max(len(losses), 1), "val_loss": loss_sum / max(count, 1.0),
                "val_accuracy": hits / max(count, 1.0)}
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs} - " + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()),
                  flush=True)
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end()
    return history
