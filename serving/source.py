"""The file-system source: which model versions exist under a base path right now.

Like TF Serving's FileSystemStoragePathSource, it only reports; the manager decides. A version
is a directory whose name is a positive integer and which holds `saved_model.pb`. Dot-directories
(the trainer's `.staging-XXXX`) and half-written or foreign directories are ignored, so a reader
never sees a version that is not complete.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SAVED_MODEL_FILE = "saved_model.pb"


@dataclass(frozen=True)
class VersionOnDisk:
    """A candidate version; `fingerprint` changes when its saved_model.pb is replaced."""
    version: int
    path: Path
    fingerprint: tuple[int, int]


def scan(base_path: Path) -> dict[int, VersionOnDisk]:
    """The versions under base_path (empty when the path does not exist yet)."""
    try:
        entries = list(os.scandir(base_path))
    except FileNotFoundError:
        return {}
    except OSError as error:
        log.warning("cannot list model base path %s: %s", base_path, error)
        return {}
    found: dict[int, VersionOnDisk] = {}
    for entry in entries:
        if not entry.name.isdigit() or not entry.is_dir() or int(entry.name) <= 0:
            continue
        try:
            stat = os.stat(os.path.join(entry.path, SAVED_MODEL_FILE))
        except OSError:
            continue
        version = int(entry.name)
        found[version] = VersionOnDisk(version, Path(entry.path), (stat.st_mtime_ns, stat.st_size))
    return found
