"""Issue 16 item 12: `make lint` is a real ruff run: it fails on an unused import and passes on
the repository as it is."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _ruff() -> str:
    candidates = [os.environ.get("RUFF", ""), str(Path(sys.executable).parent / "ruff"), shutil.which("ruff") or ""]
    found = next((c for c in candidates if c and Path(c).is_file()), None)
    if found is None:
        pytest.skip("ruff is not installed (make lint installs it)")
    return found


def _lint(*paths: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "lint", f"RUFF={_ruff()}", f"LINT_PATHS={' '.join(paths)}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_make_lint_fails_on_an_unused_import(tmp_path: Path) -> None:
    bad = tmp_path / "unused.py"
    bad.write_text("import os\n")
    result = _lint(str(bad))
    assert result.returncode != 0
    assert "F401" in result.stdout and "`os` imported but unused" in result.stdout


def test_the_repository_passes_make_lint() -> None:
    result = _lint(".")
    assert result.returncode == 0, result.stdout[-3000:]
