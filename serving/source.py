"""The file-system source: which model versions exist under a base path right now.

Like TF Serving's FileSystemStoragePathSource, it only reports; the manager decides. A version
is a directory whose name is a version by model_format.versions (canonical positive decimal, the
rule the trainer writes by) and which holds `saved_model.pb`. Dot-directories (the trainer's
`.staging-XXXX`) and half-written or foreign directories are ignored, so a reader never sees a
version that is not complete.

Problems a user must fix (a base path that does not exist or cannot be read, a directory named
like a version that is not one, such as `01` or `²`) are logged once, when first seen, not on
every poll: TF Serving logs such a path on every poll, which buries everything else.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from model_format.contract import SAVED_MODEL_FILE
from model_format.versions import looks_like_version, parse_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionOnDisk:
    """A candidate version; `fingerprint` changes when its saved_model.pb is replaced."""
    version: int
    path: Path
    fingerprint: tuple[int, int]


@dataclass
class Reported:
    """The problems already logged for one base path; a problem that goes away is forgotten, so
    it is logged again if it comes back."""
    seen: set[str] = field(default_factory=set)

    def note(self, current: set[str], messages: dict[str, str]) -> None:
        for key in sorted(current - self.seen):
            log.warning("%s", messages[key])
        self.seen = set(current)


def _entries(base_path: Path) -> tuple[list[os.DirEntry[str]], str | None]:
    """The children of base_path, or the problem that prevents listing them."""
    try:
        return list(os.scandir(base_path)), None
    except FileNotFoundError:
        return [], (f"model base path {base_path} does not exist; no version can load until it "
                    f"does (checked every poll)")
    except NotADirectoryError:
        return [], f"model base path {base_path} is not a directory"
    except OSError as error:
        return [], f"cannot list model base path {base_path}: {error}"


def scan(base_path: Path, reported: Reported | None = None) -> dict[int, VersionOnDisk]:
    """The versions under base_path (empty when the path does not exist yet)."""
    entries, problem = _entries(base_path)
    problems = {"base": problem} if problem else {}
    found: dict[int, VersionOnDisk] = {}
    for entry in entries:
        version = parse_version(entry.name)
        if version is None:
            if looks_like_version(entry.name):
                problems[f"name:{entry.name}"] = (
                    f"ignoring {entry.path!r} under model base path {base_path}: a version directory "
                    f"is named by ASCII digits with no leading zero (e.g. 1, 12)")
            continue
        try:
            if not entry.is_dir():
                continue
            stat = os.stat(os.path.join(entry.path, SAVED_MODEL_FILE))
        except OSError:
            continue
        found[version] = VersionOnDisk(version, Path(entry.path), (stat.st_mtime_ns, stat.st_size))
    if reported is not None:
        reported.note(set(problems), problems)
    return found
