"""TensorFlow's start-up noise, kept off a CPU user's terminal (trainer and server alike).

Importing TensorFlow 2.21 on a machine without a GPU writes, from C++ and before Python can filter
anything: the oneDNN notice and "Could not find cuda drivers" (each twice, through absl, which
ignores TF_CPP_MIN_LOG_LEVEL before its own initialisation), then an error-level "failed call to
cuInit" when the devices are first listed. New users read these as failures. So the import and
the first device listing run with file descriptor 2 captured; lines matching NOISE are dropped
and anything else is written back to stderr, so an unexpected message (or the traceback of a
failed import) is never lost. `verbose=True` imports TensorFlow with every line shown.

No TensorFlow import at module level: callers decide when the seconds-long import happens.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile

NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on"
    r"|Could not find cuda drivers|failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered|TF-TRT Warning|This TensorFlow binary is optimized"
    r"|rebuild TensorFlow with the appropriate compiler flags|absl::InitializeLog\(\) is called")


def import_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow and list its devices; quietly unless `verbose` (see the module doc)."""
    if "tensorflow" in sys.modules:
        return
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        _import_and_list()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # later C++ INFO/WARNING lines too
    captured, error = _captured(_import_and_list)
    kept = [line for line in captured.splitlines(keepends=True) if line.strip() and not NOISE.search(line)]
    if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()
    if error is not None:
        raise error


def _import_and_list() -> None:
    import tensorflow as tf

    tf.config.list_physical_devices()   # the cuInit probe happens here, inside the capture


def _captured(action) -> tuple[str, BaseException | None]:
    """Run `action` with fd 2 going to a temporary file; returns what it wrote and its exception."""
    sys.stderr.flush()
    saved = os.dup(2)
    error: BaseException | None = None
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            action()
        except BaseException as caught:  # noqa: BLE001 - re-raised by the caller after the replay
            error = caught
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        return capture.read().decode(errors="replace"), error
