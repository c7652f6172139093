"""SIGTERM as a clean stop: the run unwinds, the exporter removes its staging directory, no version.

The signal handler raises `Terminated` at once, but Python may deliver it inside a `__del__`
(TensorFlow frees functions there), where any exception is printed and ignored. So the handler
also sets a flag, and `check()` (called by a Keras callback after every batch of every stage,
see trainer.stages, and before export) raises from ordinary code: the stop can be delayed by one
batch, never lost. No TensorFlow import here: the CLI installs the handler before importing it.
"""
from __future__ import annotations

import signal
import sys
import threading

from trainer.errors import Terminated

_requested = threading.Event()


def _on_sigterm(signum, frame) -> None:
    _requested.set()
    raise Terminated()


def _quiet_unraisable(unraisable) -> None:
    """A Terminated swallowed in a __del__ is expected (the flag carries it): no traceback."""
    if not isinstance(unraisable.exc_value, Terminated):
        sys.__unraisablehook__(unraisable)


def install() -> object:
    """Handle SIGTERM (main thread only); returns the previous handler for restore()."""
    _requested.clear()
    sys.unraisablehook = _quiet_unraisable
    return signal.signal(signal.SIGTERM, _on_sigterm)


def restore(previous: object) -> None:
    signal.signal(signal.SIGTERM, previous)


def check() -> None:
    """Raise Terminated if SIGTERM arrived, even if its first raise was swallowed."""
    if _requested.is_set():
        raise Terminated()
