"""The one error type the trainer reports as a one-line message (exit code 2, no traceback)."""
from __future__ import annotations


class TrainerError(Exception):
    """A problem with the user's input (data, weights, flags): said in one line, never a crash."""


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt so staging and checkpoints are cleaned up."""
