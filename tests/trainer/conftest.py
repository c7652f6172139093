"""Fixtures for trainer tests: tiny generated datasets (all four formats, plus broken files) and
one shared tiny training run (MobileNetV2, --weights none, 32 px), computed once per session."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY_CLASSES = ["blue", "green", "red"]
FORMATS = [("JPEG", ".jpg"), ("PNG", ".png"), ("GIF", ".gif"), ("BMP", ".bmp")]


def tinted_image(seed: int, channel: int, fmt: str = "PNG", size: tuple[int, int] = (40, 36)) -> bytes:
    """Noise with one dominant colour channel: easy to tell apart, so a few steps learn something."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 90, (size[1], size[0], 3), dtype=np.uint8)
    pixels[..., channel] = rng.integers(160, 256, (size[1], size[0]), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def make_dataset(root: Path, per_class: int = 12, corrupt: bool = True) -> Path:
    """root/<class>/ with per_class images cycling JPEG/PNG/GIF/BMP; optionally two broken files."""
    for channel, name in enumerate(["red", "green", "blue"]):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            fmt, suffix = FORMATS[n % len(FORMATS)]
            (folder / f"{name}_{n:02d}{suffix}").write_bytes(tinted_image(100 * channel + n, channel, fmt))
    if corrupt:
        (root / "red" / "garbage.png").write_bytes(b"this is not an image at all")
        whole = tinted_image(999, 1, "JPEG")
        (root / "green" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    return root


def tiny_args(data: Path, base: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--model-name", "tiny", "--model-base-path", str(base),
            "--weights", "none", "--image-size", "32", "--epochs", "1", "--ft-epochs", "1",
            "--batch-size", "8", "--quiet", *extra]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    """One real training run on generated images, shared by the tests that inspect its export."""
    from trainer.config import TrainConfig
    from trainer.train import run

    base = tmp_path_factory.mktemp("tiny-models") / "tiny"
    config = TrainConfig(data=str(tiny_data), model_name="tiny", model_base_path=str(base),
                         weights="none", image_size=32, epochs=1, ft_epochs=1, batch_size=8,
                         verbose=0)
    return run(config)
