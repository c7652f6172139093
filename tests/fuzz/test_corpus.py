"""Corpus-driven hostile inputs against both protocols of the real server.

The corpus is generated here (Pillow, zlib, struct): valid images of every awkward kind, which
must be answered exactly as the SavedModel answers them in-process, and broken or hostile ones,
which must be refused with a client error. Never a 5xx / INTERNAL / UNKNOWN, never a dead worker.
"""
from __future__ import annotations

import io
import json
import zlib

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from PIL import Image

from tests.fuzz import clients
from tests.fuzz.images import png_raw, save as _save, zlib_bomb_png
from tests.helpers import image_bytes


def rgb(seed: int, size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.open(io.BytesIO(image_bytes(seed, "PNG", size))).convert("RGB")


def valid_images() -> dict[str, bytes]:
    """Images a client may legitimately send: each must equal the model's own answer."""
    base = rgb(11)
    frames = [rgb(12), rgb(13)]
    return {
        "jpeg": _save(base, "JPEG"), "png": _save(base, "PNG"), "gif": _save(base, "GIF"),
        "bmp": _save(base, "BMP"),
        "grayscale png": _save(base.convert("L"), "PNG"), "grayscale jpeg": _save(base.convert("L"), "JPEG"),
        "alpha png": _save(base.convert("RGBA"), "PNG"), "gray+alpha png": _save(base.convert("LA"), "PNG"),
        "palette png": _save(base.convert("P"), "PNG"),
        "palette+transparency png": _save(base.convert("P"), "PNG", transparency=0),
        "16-bit png": _save(Image.fromarray((np.asarray(base.convert("L"), np.uint16) * 257)), "PNG"),
        "16-bit rgb png": png_raw(2, 1, zlib.compress(b"\x00" + bytes(range(12))), 16, 2),
        "cmyk jpeg": _save(base.convert("CMYK"), "JPEG"),
        "progressive jpeg": _save(base, "JPEG", progressive=True),
        "animated gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0),
        "1x1 png": _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "1x2000 png": _save(Image.new("RGB", (1, 2000), (10, 200, 10)), "PNG"),
        "zlib bomb under the pixel limit (4000x4000)": zlib_bomb_png(4000),
    }


def hostile_inputs() -> dict[str, bytes]:
    """Inputs that must be refused with a client error (or, if answered, answered correctly)."""
    jpeg, png, gif = image_bytes(21, "JPEG"), image_bytes(22, "PNG"), _save(rgb(23), "GIF")
    rng = np.random.default_rng(5)
    return {
        "zero bytes": b"", "one byte": b"\xff", "random bytes": rng.bytes(3000),
        "text": "ceci n'est pas une image ✓".encode(),
        "truncated jpeg": jpeg[: len(jpeg) // 2], "truncated png": png[: len(png) // 2],
        "truncated gif": gif[: len(gif) // 2], "jpeg header only": jpeg[:20], "png signature only": png[:8],
        "png claiming 100000x100000": png_raw(100000, 100000, zlib.compress(b"\x00" * 16)),
        "zlib bomb over the pixel limit (6000x6000)": zlib_bomb_png(6000),
        "png 5000x5000 with a tiny IDAT": png_raw(5000, 5000, zlib.compress(b"\x00" * 100)),
        "png 0x0": png_raw(0, 0, zlib.compress(b"")),
        "png bad crc": png[:30] + bytes([png[30] ^ 0xFF]) + png[31:],
        "jpeg with garbage scan": jpeg[:400] + rng.bytes(len(jpeg) - 400),
        "tiff": _save(rgb(24), "TIFF"), "webp": _save(rgb(25), "WEBP"), "ico": _save(rgb(26), "ICO"),
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"/>',
    }


VALID, HOSTILE = valid_images(), hostile_inputs()


def _assert_answer(answer: clients.Answer, expected: np.ndarray | None, name: str, must_succeed: bool) -> None:
    assert not answer.server_fault, f"{name}: {answer.protocol} answered {answer.status}: {answer.message}"
    if must_succeed:
        assert answer.ok, f"{name}: {answer.protocol} refused a valid image: {answer.status} {answer.message}"
    if answer.ok:
        assert expected is not None, f"{name}: {answer.protocol} answered an input the model itself refuses"
        np.testing.assert_allclose(answer.probabilities, expected, atol=1e-5, err_msg=f"{name} {answer.protocol}")
    else:
        assert answer.message, f"{name}: {answer.protocol} refused without saying why"


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_images_equal_the_model_on_both_protocols(name, server, channel, direct, alive) -> None:
    data = VALID[name]
    expected = direct(data)
    assert expected is not None, f"{name}: the SavedModel itself refuses it"
    for answer in clients.every_protocol(server.rest_url, channel, data):
        _assert_answer(answer, expected, name, must_succeed=True)
    alive()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_images_are_refused_cleanly(name, server, channel, direct, alive) -> None:
    data = HOSTILE[name]
    expected = direct(data) if len(data) < 200_000 else None
    for answer in clients.every_protocol(server.rest_url, channel, data):
        _assert_answer(answer, expected, name, must_succeed=False)
    alive()


def _nested(depth: int) -> str:
    return '{"instances": ' + "[" * depth + "]" * depth + "}"


JSON_BODIES = {
    "not json": b"{instances: [",
    "empty body": b"",
    "json null": b"null",
    "json string": b'"instances"',
    "nested 100": _nested(100).encode(),
    "nested 5000": _nested(5000).encode(),
    "nested objects 3000": ('{"instances": [' + '{"a":' * 3000 + "1" + "}" * 3000 + "]}").encode(),
    "b64 nested 500": ('{"instances": [' + "[" * 500 + '{"b64": "AAAA"}' + "]" * 500 + "]}").encode(),
    "huge json (3.9 MB of numbers)": json.dumps({"instances": [0.5] * 780_000}).encode(),
    "json over the request limit": json.dumps({"instances": ["x" * (5 * 1024 * 1024)]}).encode(),
    "bad b64": b'{"instances": [{"b64": "!!!not base64!!!"}]}',
    "b64 not a string": b'{"instances": [{"b64": 12}]}',
    "b64 with extra key": b'{"instances": [{"b64": "AAAA", "x": 1}]}',
    "b64 of nothing": b'{"instances": [{"b64": ""}]}',
    "numbers for image_bytes": b'{"instances": [1, 2, 3]}',
    "nested numbers for image_bytes": b'{"instances": [[1, 2], [3]]}',
    "bool instance": b'{"instances": [true]}',
    "NaN": b'{"instances": [NaN]}',
    "instances empty": b'{"instances": []}',
    "instances and inputs": b'{"instances": [], "inputs": []}',
    "unknown input name": b'{"inputs": {"nope": ["AAAA"]}}',
    "unknown signature": b'{"signature_name": "../../etc/passwd", "instances": ["AAAA"]}',
    "signature not a string": b'{"signature_name": ["x"], "instances": ["AAAA"]}',
    "pixels as strings": b'{"signature_name": "predict_pixels", "instances": ["AAAA"]}',
    "pixels wrong shape": json.dumps({"signature_name": "predict_pixels",
                                      "instances": [[[[0.0] * 3] * 5] * 5]}).encode(),
    "pixels ragged": b'{"signature_name": "predict_pixels", "instances": [[[1]], [[1, 2]]]}',
    "pixels huge numbers": json.dumps({"signature_name": "predict_pixels",
                                       "instances": [[[[1e308] * 3] * 32] * 32]}).encode(),
    "pixels 1e999": b'{"signature_name": "predict_pixels", "instances": [[[[1e999, 0, 0]]]]}',
    "invalid utf-8": b'{"instances": ["\xff\xfe"]}',
    "utf-16 body": '{"instances": ["AAAA"]}'.encode("utf-16"),
}


@pytest.mark.parametrize("name", sorted(JSON_BODIES))
def test_hostile_json_is_a_client_error(name, server, alive) -> None:
    answer = clients.rest_predict_body(server.rest_url, None, raw=JSON_BODIES[name])
    assert not answer.server_fault, f"{name}: {answer.status} {answer.message}"
    assert not answer.ok or name in ("pixels huge numbers", "pixels 1e999"), f"{name}: answered 200"
    alive()


NAMES = ["模型", "tiny/../tiny", "..", "../../etc/passwd", "tiny%00", "%2e%2e%2fetc", "tiny\u202e",
         "t" * 5000, "tiny:predict", "TINY", " tiny"]


@pytest.mark.parametrize("name", NAMES)
def test_model_names_and_paths_never_escape(name, server, channel, alive) -> None:
    jpeg = image_bytes(1, "JPEG")
    for path in (f"{name}:predict", f"{name}/versions/1:predict", f"tiny/labels/{name}:predict",
                 f"{name}/metadata", name):
        raw = requests.Request("POST" if ":" in path else "GET", f"{server.rest_url}/v1/models/{path}",
                               data=json.dumps({"instances": [{"b64": "AAAA"}]})).prepare()
        raw.url = f"{server.rest_url}/v1/models/{path}"          # no client-side normalisation
        reply = requests.Session().send(raw, timeout=30)
        assert reply.status_code < 500, (path, reply.status_code, reply.text[:200])
        assert "root:" not in reply.text
    for answer in (clients.grpc_predict_tensor(channel, "image_bytes", tf.make_tensor_proto([jpeg]), model=name),
                   clients.grpc_classify(channel, jpeg, model=name)):
        assert answer.status in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), (name, answer)
    alive()


def _tensor(**fields: object) -> tf.Tensor:
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    proto = tensor_pb2.TensorProto()
    for key, value in fields.items():
        if key == "shape":
            proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in value]))
        elif isinstance(value, list):
            getattr(proto, key).extend(value)
        else:
            setattr(proto, key, value)
    return proto


GRPC_TENSORS = {
    "float for image_bytes": ("image_bytes", tf.make_tensor_proto([1.0, 2.0])),
    "int for image_bytes": ("image_bytes", tf.make_tensor_proto([[1, 2]])),
    "scalar string": ("image_bytes", tf.make_tensor_proto(b"abc")),
    "2-d strings": ("image_bytes", tf.make_tensor_proto([[b"a", b"b"]])),
    "empty batch": ("image_bytes", tf.make_tensor_proto(np.array([], dtype=object), dtype=tf.string)),
    "DT_INVALID": ("image_bytes", _tensor(dtype=0, shape=[1])),
    "unknown dtype 999": ("image_bytes", _tensor(dtype=999, shape=[1])),
    "DT_RESOURCE": ("image_bytes", _tensor(dtype=20, shape=[1])),
    "DT_VARIANT": ("image_bytes", _tensor(dtype=21, shape=[1])),
    "DT_COMPLEX64": ("image_bytes", _tensor(dtype=8, shape=[1], scomplex_val=[1.0, 2.0])),
    "DT_QINT8": ("image_bytes", _tensor(dtype=11, shape=[1], int_val=[1])),
    "DT_HALF": ("image_bytes", _tensor(dtype=19, shape=[1], half_val=[1])),
    "negative dim": ("image_bytes", _tensor(dtype=7, shape=[-5], string_val=[b"a"])),
    "declares 10^12 strings": ("image_bytes", _tensor(dtype=7, shape=[1_000_000, 1_000_000], string_val=[b"a"])),
    "declares 2^62 floats": ("images", _tensor(dtype=1, shape=[2 ** 31, 2 ** 31], float_val=[1.0])),
    "content size mismatch": ("images", _tensor(dtype=1, shape=[1, 32, 32, 3], tensor_content=b"\x00" * 7)),
    "too few values": ("images", _tensor(dtype=1, shape=[1, 32, 32, 3], float_val=[1.0, 2.0])),
    "pixels wrong shape": ("images", tf.make_tensor_proto(np.zeros((1, 5, 5, 3), np.float32))),
    "pixels as int64": ("images", tf.make_tensor_proto(np.zeros((1, 32, 32, 3), np.int64))),
    "pixels NaN": ("images", tf.make_tensor_proto(np.full((1, 32, 32, 3), np.nan, np.float32))),
    "unknown input": ("nope", tf.make_tensor_proto([b"a"])),
}


@pytest.mark.parametrize("name", sorted(GRPC_TENSORS))
def test_hostile_tensors_are_a_client_error(name, channel, alive) -> None:
    input_name, tensor = GRPC_TENSORS[name]
    signature = "predict_pixels" if input_name == "images" else "serving_default"
    answer = clients.grpc_predict_tensor(channel, input_name, tensor, signature=signature)
    assert not answer.server_fault, f"{name}: {answer.status} {answer.message}"
    # TF's own TensorProto rules: a short *_val list is padded with its last value, and numbers
    # convert to the signature's dtype. NaN pixels are refused (INVALID_ARGUMENT, issue 16): the
    # answer would be NaN probabilities with a label.
    if name == "pixels NaN":
        assert answer.status == grpc.StatusCode.INVALID_ARGUMENT and "NaN" in answer.message, answer
    assert answer.ok == (name in ("too few values", "pixels as int64")), \
        f"{name}: {answer.status} {answer.message}"
    alive()


def test_grpc_message_over_the_limit_is_refused(channel, alive) -> None:
    answer = clients.grpc_predict(channel, b"\xff" * (5 * 1024 * 1024))
    assert answer.status == grpc.StatusCode.RESOURCE_EXHAUSTED, answer
    alive()
