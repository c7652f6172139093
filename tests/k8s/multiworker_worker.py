"""One worker of the two-worker test: MultiWorkerMirroredStrategy from the Indexed Job variables.

Run as `python -m tests.k8s.multiworker_worker OUT_JSON` with JOB_COMPLETION_INDEX and
TRAINER_WORKER_HOSTS set, exactly as k8s/multiworker/job.yaml sets them in a pod.
"""
from __future__ import annotations

import json
import sys

from trainer.distributed import cluster_from_environment, multi_worker_strategy


def main(out: str) -> None:
    spec = cluster_from_environment()
    assert spec is not None, "no cluster in the environment"
    strategy = multi_worker_strategy(spec)
    import keras
    import numpy as np
    import tensorflow as tf

    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    # Keras 3's model.fit cannot drive MultiWorkerMirroredStrategy (keras-team/keras#20585), so
    # the step is a custom one: strategy.run per replica, gradients all-reduced by the optimizer.
    # Each worker feeds different data; identical weights afterwards prove the all-reduce.
    rng = np.random.default_rng(spec.index)
    x, y = rng.normal(size=(24, 4)).astype("float32"), rng.integers(0, 2, 24)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="sum")

    @tf.function
    def step(xb: tf.Tensor, yb: tf.Tensor) -> None:
        def replica_step(xr: tf.Tensor, yr: tf.Tensor) -> None:
            with tf.GradientTape() as tape:
                loss = loss_fn(yr, model(xr, training=True)) / 16.0  # global batch 2 x 8
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        strategy.run(replica_step, args=(xb, yb))

    for i in range(3):
        step(tf.constant(x[i * 8:(i + 1) * 8]), tf.constant(y[i * 8:(i + 1) * 8]))
    weights = [w.tolist() for w in model.get_weights()]
    with open(out, "w") as f:
        json.dump({"index": spec.index, "chief": spec.is_chief, "replicas": strategy.num_replicas_in_sync,
                   "weights": weights}, f)


if __name__ == "__main__":
    main(sys.argv[1])
