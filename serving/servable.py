"""A loaded version and its signatures, as the server holds them (TF Serving's servable and
servable handle): numpy in and out, batches padded to the allowed sizes, and a refcount so a
version is released only after the requests that use it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2

from model_format.contract import PIXELS_INPUT, PIXELS_SIGNATURE
from serving.inference_runtime import RuntimeChoice

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    """dtype and shape (None = any size) of one signature input or output."""
    dtype: np.dtype
    shape: tuple[int | None, ...] | None   # None: unknown rank

    def describe(self) -> str:
        dims = "?" if self.shape is None else "[" + ", ".join("-1" if d is None else str(d) for d in self.shape) + "]"
        return f"{tf.as_dtype(self.dtype).name if self.dtype != object else 'string'} {dims}"


@dataclass
class Signature:
    """One callable signature of a loaded version, with its input/output specs."""
    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    function: Callable[[Arrays], Arrays]        # numpy inputs by name -> numpy outputs by name
    allowed_batch_sizes: tuple[int, ...] = ()   # pad batches up to one of these (empty: any size)
    batch_gain: bool = True      # a bigger batch costs less per row; False: rows run one by one (LiteRT)

    @property
    def batchable(self) -> bool:
        """Whether requests can be concatenated into one call: every input and output has a
        leading batch dimension of any size. A scalar output (a sum over the request) or a fixed
        first dimension cannot be split back per request, so such signatures run unbatched."""
        return all(spec.shape and spec.shape[0] is None
                   for spec in (*self.inputs.values(), *self.outputs.values()))

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the concrete function on a batch; outputs as numpy arrays.

        With allowed batch sizes the batch is padded (its last row repeated) up to the next allowed
        size and the outputs cut back, so the model sees a few shapes only (config.BatchingOptions).
        A signature that is not `batchable` is called as it is."""
        if not self.batchable or not inputs:
            return self.function(inputs)
        rows = len(next(iter(inputs.values())))
        padded = next((size for size in self.allowed_batch_sizes if size >= rows), rows)
        if padded > rows:
            inputs = {name: np.concatenate([value, np.repeat(value[-1:], padded - rows, axis=0)])
                      for name, value in inputs.items()}
        return {name: value[:rows] for name, value in self.function(inputs).items()}


def tensorflow_function(function: Callable[..., dict[str, tf.Tensor]],
                        specs: dict[str, TensorSpec]) -> Callable[[Arrays], Arrays]:
    """A SavedModel signature function with numpy in and out (Signature.function's contract)."""
    def call(inputs: Arrays) -> Arrays:
        tensors = {name: tf.convert_to_tensor(value, dtype=tf.string if specs[name].dtype == object
                                              else tf.as_dtype(specs[name].dtype))
                   for name, value in inputs.items()}
        return {name: value.numpy() for name, value in function(**tensors).items()}
    return call


@dataclass
class Servable:
    """A loaded version. Requests hold a reference (refcount) while they use it, so the manager
    can wait for in-flight requests before releasing the model."""
    model: str
    version: int
    path: Path
    signatures: dict[str, Signature]
    signature_defs: get_model_metadata_pb2.SignatureDefMap
    class_names: list[str]
    metadata: dict[str, Any]
    saved_model: Any = field(repr=False, default=None)
    runtime: RuntimeChoice = RuntimeChoice()
    image_contract: bool = True        # labels + image signatures: classify_image, feedback, LiteRT
    closer: Callable[[], None] | None = field(default=None, repr=False)   # frees a session runner
    _refs: int = field(default=0, repr=False)
    _closed: bool = field(default=False, repr=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def retain(self) -> bool:
        """Count one more user; False once the servable is released (caller re-resolves)."""
        with self._lock:
            if self._closed:
                return False
            self._refs += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            self._lock.notify_all()

    @property
    def in_flight(self) -> int:
        return self._refs

    def close_when_idle(self, timeout: float | None = None) -> bool:
        """Wait until no request uses this version, then refuse new users and drop the model.
        Returns False if requests were still running after `timeout` (released anyway)."""
        with self._lock:
            idle = self._lock.wait_for(lambda: self._refs == 0, timeout)
            self._closed = True
        self.signatures = {}
        self.saved_model = None
        if self.closer is not None:
            self.closer()
            self.closer = None
        return idle


def image_size(servable: Servable) -> int | None:
    """The side of the square pixel input of predict_pixels, if the version has one."""
    pixels = servable.signatures.get(PIXELS_SIGNATURE)
    spec = pixels.inputs.get(PIXELS_INPUT) if pixels else None
    if spec is not None and spec.shape is not None and len(spec.shape) == 4 and spec.shape[1]:
        return int(spec.shape[1])
    return None
