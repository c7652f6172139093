"""The gunicorn master must not import TensorFlow: it would hold a second ~600 MB copy of the
runtime in a process that never serves, and TensorFlow must not be set up before the fork."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_master_side_imports_leave_tensorflow_out() -> None:
    code = ("import sys\n"
            "from serving.config import parse_args\n"
            "import serving.server\n"
            "parse_args(['--model-name', 'm', '--model-base-path', '/nonexistent'])\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", "the master process imported " + result.stdout
