"""Top-k predictions from an exported version, through its serving_default signature on file bytes.

This goes through exactly what a server runs (the SavedModel's own decode/resize/preprocess), so
it checks the export, not the in-memory Keras model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from model_format.contract import DEFAULT_SIGNATURE, IMAGE_INPUT, read_labels
from model_format.versions import existing_versions
from trainer.data import IMAGE_SUFFIXES, is_hidden, is_readable
from trainer.errors import TrainerError


def resolve_version(base_path: Path, version: int | None) -> Path:
    """The requested version directory, or the newest one."""
    versions = existing_versions(base_path)
    if not versions:
        raise TrainerError(f"no model versions under {base_path}")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise TrainerError(f"version {chosen} not found under {base_path} (have {versions})")
    return base_path / str(chosen)


def image_files(root: Path, limit: int | None) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise TrainerError(f"images not found: {root}")
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(p, root))
    if not files:
        raise TrainerError(f"no images (.jpg .png .gif .bmp) under {root}")
    return files[:limit] if limit else files


def top_k(version_dir: Path, files: list[Path], k: int) -> Iterator[tuple[Path, list[tuple[str, float]]]]:
    """(file, [(label, probability), ...] best first) per file, 32 files per call; unreadable
    files come first with an empty ranking."""
    import tensorflow as tf

    labels = read_labels(version_dir)
    signature = tf.saved_model.load(str(version_dir)).signatures[DEFAULT_SIGNATURE]
    readable = [f for f in files if is_readable(f)]
    for path in sorted(set(files) - set(readable)):
        yield path, []  # one bad file must not sink the whole batch
    for start in range(0, len(readable), 32):
        chunk = readable[start:start + 32]
        batch = tf.constant([f.read_bytes() for f in chunk])
        probabilities = signature(**{IMAGE_INPUT: batch})["probabilities"].numpy()
        for path, row in zip(chunk, probabilities):
            best = np.argsort(row)[::-1][:k]
            yield path, [(labels[i], float(row[i])) for i in best]


def print_predictions(base_path: Path, images: Path, version: int | None, k: int, limit: int | None) -> None:
    version_dir = resolve_version(base_path, version)
    files = image_files(images, limit)
    print(f"model {version_dir} (version {version_dir.name})")
    for path, ranked in top_k(version_dir, files, k):
        shown = ", ".join(f"{label} {score:.3f}" for label, score in ranked) or "unreadable, skipped"
        print(f"{path.relative_to(images) if images.is_dir() else path.name}: {shown}")
