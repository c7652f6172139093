"""Every top-level package the code imports is installed by pyproject and copied by the images."""
from __future__ import annotations

import tomllib

from tests.conftest import REPO

PACKAGES = ("trainer", "serving", "model_format")


def test_pyproject_installs_every_package() -> None:
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert all(f"{name}*" in include["include"] for name in PACKAGES)


def test_images_copy_every_package() -> None:
    for dockerfile in ("Dockerfile.serve", "Dockerfile.trainer"):
        text = (REPO / dockerfile).read_text()
        assert all(f"COPY {name}/ {name}/" in text for name in PACKAGES), dockerfile
