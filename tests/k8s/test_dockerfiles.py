"""Both Dockerfiles pass hadolint (every ignored rule would have to be explained inline: none is)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.k8s.tools import hadolint


@pytest.mark.parametrize("name", ["Dockerfile.serve", "Dockerfile.trainer"])
def test_dockerfile_passes_hadolint(name: str) -> None:
    text = (REPO / name).read_text()
    assert "hadolint ignore" not in text, "an ignored rule needs an explanation; none is expected"
    result = subprocess.run([hadolint(), "--failure-threshold", "style", str(REPO / name)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "USER 10001" in text and 'ENTRYPOINT ["python", "-m",' in text


def test_hadolint_does_catch_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nENTRYPOINT python app.py\n")
    result = subprocess.run([hadolint(), "--failure-threshold", "style", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout and "DL3025" in result.stdout


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "materials", "MODELS", "tests"} <= set(ignored)
