"""LiteRT (ex TensorFlow Lite) running a fast form: one flatbuffer, a pool of interpreters.

The server serves with it and the trainer measures each form's accuracy with it, so both see
the same arithmetic.

Rules this module keeps:
- An interpreter is not thread-safe, so each call takes one from a pool (a batch thread, the
  warm-up and the verification may call at once); the pool grows to the highest concurrency seen.
- Every row runs as its own batch-1 invoke. Resizing an interpreter's input re-plans the whole
  graph and costs more than the call itself, while a bigger batch buys LiteRT little on a CPU
  (docs/benchmarks.md), so interpreters are never resized.
- Each interpreter uses one thread, like each TensorFlow model call (serving.runtime): batches run
  side by side, one per core.
"""
from __future__ import annotations

import queue
from typing import Any

import numpy as np


class LiteRTModel:
    """A flatbuffer with one float32 input [-1, ...] and one float32 output [-1, C]."""

    def __init__(self, content: bytes) -> None:
        self._content = content
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._idle.put(self._interpreter())        # fail at load, not at the first request

    def _interpreter(self) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=self._content, num_threads=1)
        interpreter.allocate_tensors()
        return interpreter

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input's shape with -1 for the batch dimension."""
        interpreter = self._idle.get()
        try:
            return tuple(int(d) for d in interpreter.get_input_details()[0]["shape_signature"])
        finally:
            self._idle.put(interpreter)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Outputs of a batch [N, ...] as float32 [N, C], one invoke per row."""
        try:
            interpreter = self._idle.get_nowait()
        except queue.Empty:
            interpreter = self._interpreter()
        try:
            source = interpreter.get_input_details()[0]["index"]
            target = interpreter.get_output_details()[0]["index"]
            rows = []
            for row in np.ascontiguousarray(pixels, dtype=np.float32):
                interpreter.set_tensor(source, row[None])
                interpreter.invoke()
                rows.append(interpreter.get_tensor(target)[0].copy())
            return np.stack(rows)
        finally:
            self._idle.put(interpreter)
