"""Folder-per-class image datasets: discovery, validation and a stratified split (the tf.data
streams over a split are trainer.pipeline's).

Discovery and splitting use only the standard library and NumPy, so a wrong `--data` path is
reported before TensorFlow is even imported. Every file is validated up front with the same
decoder the input pipeline and the serving graph use (model_format.imaging); files it cannot read are
skipped, counted and named instead of crashing training half-way through an epoch. Files in image
formats the model cannot decode (WebP, TIFF, ...) are named as skipped too, never dropped silently;
dot-files and dot-folders (.DS_Store, .thumbnails/, editor backups) are not data.
"""
from __future__ import annotations

import hashlib
import logging
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from trainer.errors import TrainerError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp"}
# Image files the decoder (tf.io.decode_image) cannot read: reported as skipped, not ignored.
UNSUPPORTED_SUFFIXES = {".webp": "WebP", ".tif": "TIFF", ".tiff": "TIFF", ".heic": "HEIC", ".heif": "HEIF",
                        ".avif": "AVIF", ".jxl": "JPEG XL", ".ico": "ICO"}
SHOWN_SKIPPED = 20   # skipped files named one by one in the log; the rest are counted
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
    reasons: dict[str, str] = field(default_factory=dict)   # skipped path -> why

    def skip(self, path: Path, reason: str) -> None:
        self.skipped.append(str(path))
        self.reasons[str(path)] = reason

    def as_split(self) -> Split:
        paths, labels = [], []
        for index, name in enumerate(self.class_names):
            paths += [str(p) for p in self.files[name]]
            labels += [index] * len(self.files[name])
        return Split(paths, labels)


def _check_class_name(root: Path, name: str) -> None:
    """A class name becomes one line of labels.txt and a label in every answer: a newline or other
    control character in it would split the line (3 labels for 2 classes) and cut the label."""
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if bad or name != name.strip():
        what = f"control character {bad[0]!r}" if bad else "leading or trailing white space"
        raise TrainerError(f"class folder {str(root / name)!r} has a {what} in its name; rename it "
                           f"(class names become labels, one per line of labels.txt)")


def is_hidden(path: Path, root: Path) -> bool:
    """A dot-file or a file inside a dot-folder below root (.thumbs/, ._x.png): never data."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _class_files(folder: ImageFolder, name: str) -> list[Path]:
    """The class's image files (sorted); files of formats the decoder lacks are noted as skipped."""
    class_dir = folder.root / name
    found = []
    for path in sorted(class_dir.rglob("*")):
        if not path.is_file() or is_hidden(path, class_dir):
            continue
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            found.append(path)
        elif suffix in UNSUPPORTED_SUFFIXES:
            folder.skip(path, f"{UNSUPPORTED_SUFFIXES[suffix]} is not decodable by the model "
                              f"(JPEG, PNG, GIF, BMP); convert it")
    return found


def discover(root: str | Path, class_names: Sequence[str] | None = None) -> ImageFolder:
    """Find class folders and their image files; one-line errors for unusable layouts."""
    root = Path(root)
    if not root.is_dir():
        raise TrainerError(f"data folder not found: {root}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for name in found:
        _check_class_name(root, name)
    if class_names is not None:
        missing = sorted(set(class_names) - set(found))
        if missing:
            raise TrainerError(f"{root} lacks class folders {missing} present in the training data")
        found = list(class_names)
    if len(found) < 2:
        raise TrainerError(f"need at least 2 class folders in {root}, found {len(found)}")
    folder = ImageFolder(root, found, {})
    folder.files = {name: _class_files(folder, name) for name in found}
    empty = [name for name, paths in folder.files.items() if not paths]
    if empty:
        raise TrainerError(f"class folder {root / empty[0]} has no images (.jpg .png .gif .bmp)")
    return folder


def unreadable_reason(path: Path) -> str | None:
    """Why the pipeline cannot use this file (None: it can). Pillow's structural check, then the
    pipeline's own decoder; an 8-bit palette BMP is refused because TensorFlow's BMP decoder
    ignores the palette and would train on wrong colours without an error."""
    import tensorflow as tf
    from PIL import Image

    from model_format.imaging import decode_image

    try:
        with Image.open(path) as image:
            if image.format == "BMP" and image.mode == "P":
                return "8-bit palette BMP (TensorFlow ignores the palette); save it as 24-bit BMP or PNG"
            image.verify()
        decoded = decode_image(tf.io.read_file(str(path)))
        if int(decoded.shape[0]) > 0 and int(decoded.shape[1]) > 0:
            return None
        return "empty image"
    except Exception as error:  # noqa: BLE001 - any failure to read means "skip this file"
        return f"unreadable or corrupt ({type(error).__name__})"


def is_readable(path: Path) -> bool:
    return unreadable_reason(path) is None


def validate(folder: ImageFolder) -> ImageFolder:
    """Drop unreadable files (counted in folder.skipped); a class left empty is an error."""
    for name in folder.class_names:
        good = []
        for path in folder.files[name]:
            reason = unreadable_reason(path)
            if reason is None:
                good.append(path)
            else:
                folder.skip(path, reason)
        folder.files[name] = good
        if not good:
            raise TrainerError(f"class folder {folder.root / name} has no readable images")
    log_skipped(folder)
    return folder


def log_skipped(folder: ImageFolder) -> None:
    """Name each skipped file and why (the first SHOWN_SKIPPED), so the user can fix them."""
    if not folder.skipped:
        return
    log.warning("skipped %d files in %s:", len(folder.skipped), folder.root)
    for path in folder.skipped[:SHOWN_SKIPPED]:
        log.warning("  skipped %s: %s", path, folder.reasons.get(path, "unreadable"))
    if len(folder.skipped) > SHOWN_SKIPPED:
        log.warning("  ... and %d more", len(folder.skipped) - SHOWN_SKIPPED)


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
