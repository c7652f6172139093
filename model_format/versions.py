"""The one rule for version directory names, shared by the trainer (writer) and the server (reader).

TF Serving parses a child of the base path with `safe_strto64`, so `01`, ` 1` and `+1` all mean
version 1 and one of two such directories is silently ignored (it logs "Duplicate version
directories detected"). Python's `str.isdigit()` is looser still: it is true for `²` or `١`, which
`int()` then refuses or reads as another number. Here a version name is the canonical decimal
form only: ASCII digits, no sign, no leading zero, a positive value that fits an int64. So each
version has exactly one directory name, and the name the trainer writes is the name the server
reads. Anything else is not a version (the server names it in a warning once, see serving.source).
"""
from __future__ import annotations

import re
from pathlib import Path

_CANONICAL = re.compile(r"[1-9][0-9]*", re.ASCII)
MAX_VERSION = 2**63 - 1   # TF Serving's versions are int64


def parse_version(name: str) -> int | None:
    """The version a directory name stands for, or None when the name is not a version."""
    if not _CANONICAL.fullmatch(name):
        return None
    version = int(name)
    return version if version <= MAX_VERSION else None


def looks_like_version(name: str) -> bool:
    """True for names TF Serving would read as a number but this rule refuses (`01`, `²`, `+1`):
    worth a warning, since the user probably meant a version. Dot-names are never versions."""
    stripped = name.strip().lstrip("+-")
    return not name.startswith(".") and bool(stripped) and stripped.isdigit() and parse_version(name) is None


def existing_versions(base_path: Path) -> list[int]:
    """The version directories under base_path, sorted: what a writer must not reuse and what a
    retrain reads back. (The server's source also requires saved_model.pb, see serving.source.)"""
    base = Path(base_path)
    if not base.is_dir():
        return []
    versions = ((parse_version(p.name), p) for p in base.iterdir())
    return sorted(v for v, p in versions if v is not None and p.is_dir())
