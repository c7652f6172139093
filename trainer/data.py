"""Folder-per-class image datasets: discovery, validation, a stratified split, and tf.data streams.

Discovery and splitting use only the standard library and NumPy, so a wrong `--data` path is
reported before TensorFlow is even imported. Every file is validated up front with the same
decoder the input pipeline and the serving graph use (trainer.imaging); files it cannot read are
skipped and counted instead of crashing training half-way through an epoch.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from trainer.errors import TrainerError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """Parallel lists of image paths and integer labels."""

    paths: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class ImageFolder:
    """One folder-per-class dataset after validation."""

    root: Path
    class_names: list[str]
    files: dict[str, list[Path]]
    skipped: list[str] = field(default_factory=list)

    def as_split(self) -> Split:
        paths, labels = [], []
        for index, name in enumerate(self.class_names):
            paths += [str(p) for p in self.files[name]]
            labels += [index] * len(self.files[name])
        return Split(paths, labels)


def discover(root: str | Path, class_names: Sequence[str] | None = None) -> ImageFolder:
    """Find class folders and their image files; one-line errors for unusable layouts."""
    root = Path(root)
    if not root.is_dir():
        raise TrainerError(f"data folder not found: {root}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_names is not None:
        missing = sorted(set(class_names) - set(found))
        if missing:
            raise TrainerError(f"{root} lacks class folders {missing} present in the training data")
        found = list(class_names)
    if len(found) < 2:
        raise TrainerError(f"need at least 2 class folders in {root}, found {len(found)}")
    files = {name: sorted(p for p in (root / name).rglob("*")
                          if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) for name in found}
    empty = [name for name, paths in files.items() if not paths]
    if empty:
        raise TrainerError(f"class folder {root / empty[0]} has no images (.jpg .png .gif .bmp)")
    return ImageFolder(root, found, files)


def is_readable(path: Path) -> bool:
    """Pillow's structural check, then the pipeline's own decoder: both must accept the file."""
    import tensorflow as tf
    from PIL import Image

    from trainer.imaging import decode_image

    try:
        with Image.open(path) as image:
            image.verify()
        decoded = decode_image(tf.io.read_file(str(path)))
        return int(decoded.shape[0]) > 0 and int(decoded.shape[1]) > 0
    except Exception:  # noqa: BLE001 - any failure to read means "skip this file"
        return False


def validate(folder: ImageFolder) -> ImageFolder:
    """Drop unreadable files (counted in folder.skipped); a class left empty is an error."""
    for name in folder.class_names:
        good = []
        for path in folder.files[name]:
            if is_readable(path):
                good.append(path)
            else:
                folder.skipped.append(str(path))
        folder.files[name] = good
        if not good:
            raise TrainerError(f"class folder {folder.root / name} has no readable images")
    if folder.skipped:
        log.warning("skipped %d unreadable or corrupt files in %s", len(folder.skipped), folder.root)
    return folder


def _cut(count: int, fraction: float) -> int:
    """Images of one class for a held-out split: at least one unless the split comes from elsewhere."""
    return max(1, round(count * fraction)) if fraction > 0 else 0


def stratified_split(folder: ImageFolder, seed: int, val_fraction: float,
                     test_fraction: float) -> tuple[Split, Split, Split]:
    """Per class: shuffle by seed, then cut test and validation off the front (>= 1 each)."""
    parts: list[tuple[list[str], list[int]]] = [([], []), ([], []), ([], [])]
    rng = np.random.default_rng(seed)
    for index, name in enumerate(folder.class_names):
        paths = [str(p) for p in folder.files[name]]
        order = rng.permutation(len(paths))
        n_test, n_val = _cut(len(paths), test_fraction), _cut(len(paths), val_fraction)
        if len(paths) < n_test + n_val + 1:
            raise TrainerError(f"class {name} has {len(paths)} readable images; the split needs "
                               f"{n_test + n_val + 1}")
        cuts = [order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]]
        for (split_paths, split_labels), chosen in zip(parts, cuts):
            split_paths += [paths[i] for i in sorted(chosen)]
            split_labels += [index] * len(chosen)
    train, val, test = (Split(p, l) for p, l in parts)
    return train, val, test


def fingerprint(splits: Sequence[Split], class_names: Sequence[str]) -> str:
    """sha256 over class names and every file's bytes in split order: same data, same value."""
    digest = hashlib.sha256("\n".join(class_names).encode())
    for split in splits:
        for path, label in zip(split.paths, split.labels):
            digest.update(f"{label}:{Path(path).name}:".encode())
            digest.update(Path(path).read_bytes())
        digest.update(b"|")
    return digest.hexdigest()
