"""Property-based fuzzing (hypothesis) of both protocols of the real server.

Properties, for any input hypothesis can build:
- random bytes, and valid images with bytes flipped, cut or spliced: never a server fault; an
  answer, when given, equals the SavedModel's own output on the same bytes;
- any JSON value as a :predict body: never a server fault;
and after each property the same worker is alive and healthy.
"""
from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import clients
from tests.helpers import image_bytes

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SEEDS = [image_bytes(seed, fmt) for seed, fmt in ((31, "JPEG"), (32, "PNG"), (33, "GIF"), (34, "BMP"))]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        data += draw(st.binary(max_size=64))
    return bytes(data)


def _check(answers: list[clients.Answer], expected: np.ndarray | None, data: bytes) -> None:
    for answer in answers:
        assert not answer.server_fault, (answer, data[:32])
        if answer.ok:
            assert expected is not None, (answer.protocol, "answered bytes the model refuses", data[:32])
            np.testing.assert_allclose(answer.probabilities, expected, atol=1e-5)


def test_random_bytes(server, channel, direct, alive) -> None:
    @SETTINGS
    @given(st.binary(max_size=2048))
    def run(data: bytes) -> None:
        _check(clients.every_protocol(server.rest_url, channel, data), direct(data) if data else None, data)

    run()
    alive()


def test_mutated_images(server, channel, direct, alive) -> None:
    @SETTINGS
    @given(mutated_images())
    def run(data: bytes) -> None:
        _check(clients.every_protocol(server.rest_url, channel, data), direct(data) if data else None, data)

    run()
    alive()


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=5)
                    | st.dictionaries(st.sampled_from(["instances", "inputs", "signature_name", "b64",
                                                      "image_bytes", "images", "x"]) | st.text(max_size=5),
                                      children, max_size=4),
                    max_leaves=30)


def test_any_json_predict_body(server, alive) -> None:
    @SETTINGS
    @given(JSON)
    def run(body: object) -> None:
        raw = json.dumps(body).encode()
        answer = clients.rest_predict_body(server.rest_url, None, raw=raw)
        assert not answer.server_fault, (answer, raw[:200])

    run()
    alive()
