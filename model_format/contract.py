"""The names and files of the model-version contract (docs/model-format.md), in one place.

The trainer writes a version by these names (trainer.export) and the server reads it by them
(serving.loader, serving.warmup). No TensorFlow here: the readers are plain file reads.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_SIGNATURE = "serving_default"    # encoded image bytes in
IMAGE_INPUT = "image_bytes"
PIXELS_SIGNATURE = "predict_pixels"      # float32 pixels [N, S, S, 3], 0..255, in
PIXELS_INPUT = "images"
OUTPUTS = frozenset({"probabilities", "classes", "labels"})   # the outputs of both signatures
# signature -> (inputs, outputs) a version must have to follow the image contract
REQUIRED_SIGNATURES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    DEFAULT_SIGNATURE: (frozenset({IMAGE_INPUT}), OUTPUTS),
    PIXELS_SIGNATURE: (frozenset({PIXELS_INPUT}), OUTPUTS),
}

SAVED_MODEL_FILE = "saved_model.pb"
LABELS_FILE = "assets/labels.txt"                         # one class name per line, in index order
METADATA_FILE = "assets.extra/metadata.json"
WARMUP_FILE = "tf_serving_warmup_requests"                # TF Serving's name, in assets.extra/
WARMUP_PATH = f"assets.extra/{WARMUP_FILE}"
STAGING_PREFIX = ".staging-"    # a version being written: a dot-name, so no reader takes it


def read_labels(version_dir: str | os.PathLike[str]) -> list[str]:
    """Class names of a version, in index order (FileNotFoundError when it has no labels)."""
    return Path(version_dir, LABELS_FILE).read_text().splitlines()


def read_metadata(version_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The version's metadata.json (FileNotFoundError when absent, ValueError when not JSON)."""
    return json.loads(Path(version_dir, METADATA_FILE).read_text())


def write_labels(version_dir: Path, labels: list[str] | tuple[str, ...]) -> None:
    path = Path(version_dir, LABELS_FILE)
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(f"{label}\n" for label in labels))


def write_metadata(version_dir: Path, metadata: dict[str, Any]) -> None:
    path = Path(version_dir, METADATA_FILE)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str))
