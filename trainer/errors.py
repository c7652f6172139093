"""How a run ends early: TrainerError, reported as one line (exit code 2, no traceback), and
Terminated, raised by the SIGTERM handler (exit code 143)."""
from __future__ import annotations


class TrainerError(Exception):
    """A problem with the user's input (data, weights, flags): said in one line, never a crash."""


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt so staging and checkpoints are cleaned up."""
