"""SIGTERM and Ctrl-C as a clean stop: the run unwinds, the exporter removes its staging
directory, no version.

The signal handlers raise `Terminated` (SIGTERM) or KeyboardInterrupt (SIGINT) at once, but Python
may deliver either inside a `__del__` (TensorFlow frees functions there), where any exception is
printed and ignored: the run then went on training. So each handler also sets a flag, and
`check()` (called by a Keras callback after every batch of every stage, see trainer.stages, and
before export) raises from ordinary code: the stop can be delayed by one batch, never lost. No
TensorFlow import here: the CLI installs the handlers before importing it.
"""
from __future__ import annotations

import signal
import sys
import threading

from trainer.errors import Terminated

_requested = threading.Event()
_interrupted = threading.Event()


def _on_sigterm(signum, frame) -> None:
    _requested.set()
    raise Terminated()


def _on_sigint(signum, frame) -> None:
    _interrupted.set()
    raise KeyboardInterrupt()


def _quiet_unraisable(unraisable) -> None:
    """A stop swallowed in a __del__ is expected (the flag carries it): no traceback."""
    if not isinstance(unraisable.exc_value, (Terminated, KeyboardInterrupt)):
        sys.__unraisablehook__(unraisable)


def install() -> tuple[object, object]:
    """Handle SIGTERM and SIGINT (main thread only); returns the previous handlers for restore()."""
    _requested.clear()
    _interrupted.clear()
    sys.unraisablehook = _quiet_unraisable
    return signal.signal(signal.SIGTERM, _on_sigterm), signal.signal(signal.SIGINT, _on_sigint)


def restore(previous: tuple[object, object]) -> None:
    """Put the previous handlers back; a stop not yet raised ends with them (a later run in this
    process, as in tests, must not inherit it)."""
    signal.signal(signal.SIGTERM, previous[0])
    signal.signal(signal.SIGINT, previous[1])
    _requested.clear()
    _interrupted.clear()


def check() -> None:
    """Raise Terminated (SIGTERM) or KeyboardInterrupt (SIGINT) if one arrived, even if its first
    raise was swallowed."""
    if _requested.is_set():
        raise Terminated()
    if _interrupted.is_set():
        raise KeyboardInterrupt()
