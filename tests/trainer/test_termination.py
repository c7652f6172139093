"""trainer.termination: a stop signal that Python swallows inside a `__del__` is not lost."""
from __future__ import annotations

import signal

import pytest

from trainer import termination
from trainer.errors import Terminated


class _SignalsInDel:
    """Raises `signum` in its finalizer, as when a signal lands while TensorFlow frees a function."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        signal.raise_signal(self.signum)
        for _ in range(100):      # pending signals are handled between bytecodes, here
            pass


@pytest.mark.parametrize("signum, stop", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_stop_swallowed_in_a_finalizer_is_raised_by_check(signum: int, stop: type) -> None:
    previous = termination.install()
    try:
        termination.check()                       # nothing pending
        victim = _SignalsInDel(signum)
        del victim                                # the handler's raise is swallowed in __del__
        with pytest.raises(stop):
            termination.check()
    finally:
        termination.restore(previous)
    assert signal.getsignal(signal.SIGINT) is previous[1]
    termination.check()                           # restored: nothing pending for a later run
