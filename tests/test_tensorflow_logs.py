"""Issue 16 item 11: no TensorFlow C++ start-up noise by default; --verbose brings it back."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.helpers import export_tiny, image_bytes
from tests.server_process import start_server

NOISE = ("oneDNN", "cuda drivers", "cuInit", "absl::InitializeLog")
ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def _predict(base: Path, images: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", "predict", "--model-base-path", str(base),
                           "--images", str(images), *flags], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=180)


def test_trainer_start_is_quiet_and_verbose_shows_the_log(tmp_path: Path) -> None:
    base = tmp_path / "tiny"
    export_tiny(base)
    (tmp_path / "img.jpg").write_bytes(image_bytes(1))
    quiet = _predict(base, tmp_path / "img.jpg")
    assert quiet.returncode == 0, quiet.stderr
    assert not [word for word in NOISE if word in quiet.stderr], quiet.stderr
    loud = _predict(base, tmp_path / "img.jpg", "--verbose")
    assert loud.returncode == 0 and "oneDNN" in loud.stderr


def test_server_start_is_quiet(tmp_path: Path) -> None:
    base = tmp_path / "tiny"
    export_tiny(base)
    with start_server("--model-name", "tiny", "--model-base-path", str(base), grpc=False,
                      env={"TF_CPP_MIN_LOG_LEVEL": ""}) as server:
        log = server.log()
    assert "loaded from" in log
    assert not [word for word in NOISE if word in log], log
