"""Device placement: MirroredStrategy + mixed precision on GPUs, the default strategy on a CPU.

`mode="mirrored"` forces MirroredStrategy over whatever logical devices exist (GPUs, else CPUs),
which is how the test exercises the multi-replica code path on a CPU split in two. A cluster
(trainer.distributed) overrides the mode: MultiWorkerMirroredStrategy, float32.
"""
from __future__ import annotations

import logging

import keras
import tensorflow as tf

from trainer.distributed import ClusterSpec, multi_worker_strategy

log = logging.getLogger(__name__)


def select_strategy(mode: str = "auto", cluster: ClusterSpec | None = None) -> tf.distribute.Strategy:
    """The distribution strategy for `mode` (or `cluster`); sets the Keras dtype policy as a side
    effect. With a cluster this must run before any other TensorFlow op of the process."""
    if cluster is not None:
        # float32: the multi-worker loop (trainer.distributed_loop) does no loss scaling.
        keras.mixed_precision.set_global_policy("float32")
        strategy = multi_worker_strategy(cluster)
        log.info("devices: MultiWorkerMirroredStrategy, worker %d of %d, %d replicas in sync",
                 cluster.index, len(cluster.workers), strategy.num_replicas_in_sync)
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if mode == "cpu" or (mode == "auto" and not gpus):
        keras.mixed_precision.set_global_policy("float32")
        log.info("devices: default strategy on CPU")
        return tf.distribute.get_strategy()
    if gpus:
        # Tensor cores run float16 matmuls several times faster; the head's softmax stays float32.
        keras.mixed_precision.set_global_policy("mixed_float16")
        devices = [d.name for d in gpus]
    else:
        keras.mixed_precision.set_global_policy("float32")
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    log.info("devices: MirroredStrategy over %s", devices)
    return strategy


def describe(strategy: tf.distribute.Strategy) -> dict:
    return {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
            "dtype_policy": keras.mixed_precision.global_policy().name}
