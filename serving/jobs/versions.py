"""Which version a finished retrain produced, read from the model's base path.

Both backends use the same rule: the job noted the highest version when it started (its baseline);
the smallest version above that baseline is the one it exported. One retrain per model at a time
keeps the rule exact unless someone exports into the same base path by hand meanwhile.
"""
from __future__ import annotations

from pathlib import Path

from model_format.versions import existing_versions   # TF-free: safe in the gunicorn master


def highest_version(base_path: Path) -> int:
    versions = existing_versions(Path(base_path))
    return versions[-1] if versions else 0


def version_after(base_path: Path, baseline: int) -> int | None:
    newer = [v for v in existing_versions(Path(base_path)) if v > baseline]
    return newer[0] if newer else None
