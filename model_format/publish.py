"""How a version appears under a base path: written whole in a staging directory, then renamed.

A rename within one filesystem is atomic, so a reader polling the base path sees either no
version or a complete one, never half a model. The staging directory is a dot-name (never a
version, see model_format.versions), inside the base path (same filesystem), and its files are
flushed to disk before the rename publishes them. No TensorFlow here.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable

from model_format.contract import STAGING_PREFIX
from model_format.versions import existing_versions


def staging_dir(base_path: Path, tag: str = "") -> Path:
    """A fresh staging directory name inside base_path (`tag` or a random one)."""
    return Path(base_path) / f"{STAGING_PREFIX}{tag or secrets.token_hex(4)}"


def fsync_tree(directory: Path) -> None:
    """Flush every file so the rename publishes data that is on disk, not just in page cache."""
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())


def publish_next(staging: Path, base_path: Path, finish: Callable[[Path, int], None]) -> int:
    """Rename `staging` onto the next version number and return it. `finish(staging, version)`
    first writes what depends on the number (metadata); when another writer takes the number
    meanwhile, the next one is tried."""
    base = Path(base_path)
    while True:
        version = max(existing_versions(base), default=0) + 1
        finish(staging, version)
        fsync_tree(staging)
        try:
            os.rename(staging, base / str(version))
            return version
        except OSError:
            if not (base / str(version)).exists():
                raise
