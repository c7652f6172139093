"""Issue 16 item 4 (and the palette BMP of item 9): answers that broke the API. Each error case
asserts the exact status and that the message names the problem, then that the next good request
still answers."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from tests.helpers import TINY_SIZE, image_bytes
from tests.server_process import ServerHandle

GOOD = image_bytes(1)


def _still_answers(url: str) -> None:
    answer = requests.post(f"{url}/v1/models/tiny:classify_image", data=GOOD,
                           headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert answer.status_code == 200, answer.text


def _palette_bmp() -> bytes:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    buffer = io.BytesIO()
    image.save(buffer, "BMP")
    return buffer.getvalue()


def test_palette_bmp_is_refused_not_misread(tiny_server: ServerHandle) -> None:
    url = tiny_server.rest_url
    answer = requests.post(f"{url}/v1/models/tiny:classify_image", data=_palette_bmp(),
                           headers={"Content-Type": "image/bmp"}, timeout=30)
    assert answer.status_code == 400
    assert "8-bit palette BMP" in answer.json()["error"]
    _still_answers(url)


def test_nan_pixel_is_refused_and_never_sent_as_json(tiny_server: ServerHandle) -> None:
    url = tiny_server.rest_url
    pixels = np.zeros((1, TINY_SIZE, TINY_SIZE, 3)).tolist()
    pixels[0][3][4][1] = float("nan")
    body = json.dumps({"signature_name": "predict_pixels", "instances": pixels})   # Python writes NaN
    answer = requests.post(f"{url}/v1/models/tiny:predict", data=body, timeout=30)
    assert answer.status_code == 400
    assert answer.json()["error"] == ("input 'images' holds NaN or infinity (first at index [0, 3, 4, 1]); "
                                      "pixels must be finite numbers")
    _still_answers(url)


def test_non_finite_answer_becomes_a_json_500() -> None:
    from flask import Flask

    from serving.errors import ServingError
    from serving.rest import FiniteJSON

    provider = FiniteJSON(Flask("t"))
    assert provider.dumps({"p": [0.5]}) == '{"p": [0.5]}'
    with pytest.raises(ServingError) as caught:
        provider.dumps({"probabilities": [float("nan"), float("inf")]})
    assert caught.value.http_status == 500 and "NaN or infinity" in caught.value.message


def _chunks(data: bytes, size: int = 1 << 20):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_chunked_json_over_the_limit_is_413(tiny_server: ServerHandle) -> None:
    url = tiny_server.rest_url
    body = json.dumps({"instances": [{"b64": "A" * (11 * 1024 * 1024)}]}).encode()
    answer = requests.post(f"{url}/v1/models/tiny:predict", data=_chunks(body), timeout=60,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert "over the limit of 10485760 bytes (--max-request-bytes)" in answer.json()["error"]
    _still_answers(url)


def test_chunked_png_with_trailing_bytes_over_the_limit_is_413(tiny_server: ServerHandle) -> None:
    url = tiny_server.rest_url
    body = image_bytes(2, "PNG") + b"\0" * (15 * 1024 * 1024)
    answer = requests.post(f"{url}/v1/models/tiny:classify_image", data=_chunks(body), timeout=60,
                           headers={"Content-Type": "image/png"})
    assert answer.status_code == 413 and "--max-request-bytes" in answer.json()["error"]
    answer = requests.post(f"{url}/v1/models/tiny:classify_image", data=_chunks(GOOD, 1000), timeout=30,
                           headers={"Content-Type": "image/jpeg"})
    assert answer.status_code == 200, answer.text          # a small chunked image still answers


def test_chunked_multipart_over_the_limit_is_413(tiny_server: ServerHandle) -> None:
    url = tiny_server.rest_url
    boundary = "xyzzy"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image_bytes(3, "PNG") + b"\0" * (11 << 20) \
        + f"\r\n--{boundary}--\r\n".encode()
    answer = requests.post(f"{url}/v1/models/tiny:classify_image", data=_chunks(body), timeout=60,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 413
    _still_answers(url)


def test_too_long_url_gets_a_json_414(tiny_server: ServerHandle) -> None:
    url = tiny_server.rest_url
    answer = requests.get(f"{url}/v1/models/{'x' * 10000}", timeout=30)
    assert answer.status_code == 414
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["error"].startswith("URI Too Long")
    _still_answers(url)


@pytest.mark.parametrize("path,status", [("nosuchmodel:predict", 404), ("nosuchmodel:classify_image", 404),
                                         ("tiny/labels/nosuchlabel:predict", 400)])   # TF Serving: a label is 400
def test_unknown_model_with_a_bad_body_is_404(tiny_server: ServerHandle, path: str, status: int) -> None:
    """The resource comes first: its error, not the body's."""
    answer = requests.post(f"{tiny_server.rest_url}/v1/models/{path}", data=b"{not json", timeout=30,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == status
    assert "nosuch" in answer.json()["error"]


def test_finite_pixels_that_overflow_the_model_get_a_json_500(tiny_server: ServerHandle) -> None:
    """Huge but finite pixels overflow inside the model: its answer is NaN, which JSON cannot carry."""
    url = tiny_server.rest_url
    body = {"signature_name": "predict_pixels", "instances": np.full((1, TINY_SIZE, TINY_SIZE, 3), 3e38).tolist()}
    answer = requests.post(f"{url}/v1/models/tiny:predict", json=body, timeout=30)
    assert answer.status_code == 500, answer.text
    assert "NaN or infinity" in answer.json()["error"]
    _still_answers(url)
