"""LiteRT (ex TensorFlow Lite) running a fast form: one flatbuffer, pools of interpreters.

The server serves with it and the trainer measures each form's accuracy with it, so both see
the same arithmetic.

Rules this module keeps:
- An interpreter is not thread-safe, so each call takes one from a pool (a batch thread, the
  warm-up and the verification may call at once); a pool grows to the highest concurrency seen.
- Every row runs as its own batch-1 invoke. Resizing an interpreter's input re-plans the whole
  graph and costs more than the call itself, while a bigger batch buys LiteRT little on a CPU
  (docs/benchmarks.md), so interpreters are never resized.
- A call that overlaps another runs on one thread, like each TensorFlow model call
  (serving.runtime): overlapping calls run side by side, one per core. A lone call runs on
  `threads` threads (the CPUs the process may use), since the other cores would otherwise idle
  while it runs: the same CPU time, a shorter wait (docs/benchmarks.md, "Fast runtime").
"""
from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np


class LiteRTModel:
    """A flatbuffer with one float32 input [-1, ...] and one float32 output [-1, C]."""

    def __init__(self, content: bytes, threads: int = 1) -> None:
        self._content = content
        self._widths = sorted({1, max(1, threads)})
        self._idle: dict[int, queue.LifoQueue[Any]] = {width: queue.LifoQueue() for width in self._widths}
        self._calls = 0                            # calls running now: one alone gets every thread
        self._lock = threading.Lock()
        for width in self._widths:                 # fail at load, not at the first request
            self._idle[width].put(self._interpreter(width))

    def _interpreter(self, width: int) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=self._content, num_threads=width)
        interpreter.allocate_tensors()
        return interpreter

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input's shape with -1 for the batch dimension."""
        interpreter = self._idle[1].get()
        try:
            return tuple(int(d) for d in interpreter.get_input_details()[0]["shape_signature"])
        finally:
            self._idle[1].put(interpreter)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Outputs of a batch [N, ...] as float32 [N, C], one invoke per row."""
        with self._lock:
            self._calls += 1
            width = self._widths[-1] if self._calls == 1 else 1
        try:
            return self._run(width, pixels)
        finally:
            with self._lock:
                self._calls -= 1

    def _run(self, width: int, pixels: np.ndarray) -> np.ndarray:
        pool = self._idle[width]
        try:
            interpreter = pool.get_nowait()
        except queue.Empty:
            interpreter = self._interpreter(width)
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
            pool.put(interpreter)
