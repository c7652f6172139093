"""Which version a finished retrain produced, read from the model's base path.

Both backends use the same rule: the job noted the highest version when it started (its baseline);
the smallest version above that baseline is the one it exported. One retrain per model at a time
keeps the rule exact unless someone exports into the same base path by hand meanwhile.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from model_format.contract import read_metadata
from model_format.versions import existing_versions   # TF-free: safe in the gunicorn master


def highest_version(base_path: Path) -> int:
    versions = existing_versions(Path(base_path))
    return versions[-1] if versions else 0


def version_after(base_path: Path, baseline: int) -> int | None:
    newer = [v for v in existing_versions(Path(base_path)) if v > baseline]
    return newer[0] if newer else None


def export_summary(base_path: Path, version: int | None) -> dict[str, Any] | None:
    """What the job record shows of the trainer's stage choice, from the version's metadata.json:
    which stage was exported, why, and each stage's test accuracy. Read as plain JSON (no
    TensorFlow import); None when there is no version or it predates the choice."""
    if version is None:
        return None
    try:
        metadata = read_metadata(Path(base_path) / str(version))
    except (OSError, ValueError):
        return None
    if "exported_stage" not in metadata:
        return None
    accuracy = {stage: e.get("accuracy") for stage, e in metadata.get("evaluation", {}).items()}
    return {"exported_stage": metadata["exported_stage"], "export_reason": metadata.get("export_reason"),
            "test_accuracy": accuracy}
