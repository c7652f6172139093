"""LiteRTModel: every row its own invoke, one interpreter per concurrent call, and a lone call on
every thread while overlapping calls run one thread each, with the same outputs either way."""
from __future__ import annotations

import threading

import numpy as np

from model_format.fast_form import convert, keras_pixels_function
from model_format.litert import LiteRTModel
from tests.helpers import TINY_SIZE, tiny_model


def _model(threads: int) -> tuple[LiteRTModel, np.ndarray]:
    keras_model = tiny_model(1)
    content = convert(keras_pixels_function(keras_model, TINY_SIZE), keras_model)
    pixels = np.random.default_rng(0).uniform(0, 255, (5, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    return LiteRTModel(content, threads=threads), pixels


class _Recording(LiteRTModel):
    """Records the width of every call; the first call waits until released."""

    def __init__(self, content_model: LiteRTModel) -> None:
        self.__dict__.update(content_model.__dict__)
        self.widths: list[int] = []
        self.first_running, self.release = threading.Event(), threading.Event()

    def _run(self, width: int, pixels: np.ndarray) -> np.ndarray:
        self.widths.append(width)
        if len(self.widths) == 1:
            self.first_running.set()
            self.release.wait(10)
        return super()._run(width, pixels)


def test_a_lone_call_gets_every_thread_and_overlapping_calls_one_each() -> None:
    model, pixels = _model(threads=2)
    recording = _Recording(model)
    lone = threading.Thread(target=recording, args=(pixels,))
    lone.start()
    assert recording.first_running.wait(10)
    overlapping = recording(pixels)              # runs while the first call still holds the model
    recording.release.set()
    lone.join(10)
    after = recording(pixels)                    # alone again
    assert recording.widths == [2, 1, 2]
    np.testing.assert_allclose(overlapping, after, atol=1e-6)


def test_outputs_do_not_depend_on_width_or_batch_size() -> None:
    wide, pixels = _model(threads=2)
    narrow, _ = _model(threads=1)
    batch = wide(pixels)
    assert batch.shape == (5, 3) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, narrow(pixels), atol=1e-6)
    np.testing.assert_allclose(batch[2:3], wide(pixels[2:3]), atol=1e-6)
    assert wide.input_shape == (-1, TINY_SIZE, TINY_SIZE, 3)
