"""Run any SavedModel's signatures the way TF Serving does: one graph, one session, fed by name.

TF Serving loads every SavedModel (TF1 or TF2) into a graph and a session and runs a signature by
feeding its input tensors and fetching its output tensors by name. It does not hold a request to
the static shapes of the SignatureDef: half_plus_two's `x` is [-1, 1] and TF Serving still answers
`{"instances": [1.0, 2.0]}` (shape [2]), because the graph's ops accept it. `tf.saved_model.load`
would refuse that at the concrete function's input signature, so models without our image
contract run here instead (the image-contract signatures keep serving.servable's functions and the
LiteRT choice). A callable made from CallableOptions skips the Python session's static-shape
check, so the graph itself decides, as in TF Serving.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2

Arrays = dict[str, np.ndarray]


class GraphSession:
    """One SavedModel's MetaGraph (tag `serve`) loaded into its own graph and session."""

    def __init__(self, path: Path) -> None:
        v1 = tf.compat.v1
        self.graph = tf.Graph()
        # the worker's thread pools (serving.runtime.configure_tensorflow), not TensorFlow's default
        config = v1.ConfigProto(intra_op_parallelism_threads=tf.config.threading.get_intra_op_parallelism_threads(),
                                inter_op_parallelism_threads=tf.config.threading.get_inter_op_parallelism_threads())
        self.session = v1.Session(graph=self.graph, config=config)
        with self.graph.as_default():
            self.meta_graph: meta_graph_pb2.MetaGraphDef = v1.saved_model.loader.load(
                self.session, ["serve"], str(path))
        self._lock = threading.Lock()

    def function(self, signature: str) -> Callable[[Arrays], Arrays]:
        """numpy inputs by signature key -> numpy outputs by signature key (Signature.function)."""
        definition = self.meta_graph.signature_def[signature]
        output_keys = list(definition.outputs)
        fetch = [definition.outputs[key].name for key in output_keys]
        callables: dict[tuple[str, ...], Callable[..., list[np.ndarray]]] = {}

        def call(inputs: Arrays) -> Arrays:
            keys = tuple(sorted(inputs))
            run = callables.get(keys)
            if run is None:
                with self._lock:      # callables are made once per input set, then run concurrently
                    options = config_pb2.CallableOptions(feed=[definition.inputs[k].name for k in keys], fetch=fetch)
                    run = callables.setdefault(keys, self.session._make_callable_from_options(options))  # noqa: SLF001
            values = run(*[inputs[key] for key in keys])
            return {key: np.asarray(value) for key, value in zip(output_keys, values)}
        return call

    def close(self) -> None:
        self.session.close()
