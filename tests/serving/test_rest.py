"""The real server over REST: TF Serving's API, classify_image, feedback, errors and metrics."""
from __future__ import annotations

import base64
import io
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import TINY_LABELS, TINY_SIZE, image_bytes
from tests.server_process import ServerHandle


@pytest.fixture(scope="module")
def direct(tiny_base: Path):
    """The SavedModel's serving_default signature called directly (the reference answers)."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(tiny_base / "1")).signatures["serving_default"]
    return lambda images: signature(image_bytes=tf.constant(images))["probabilities"].numpy()


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


IMAGES = [image_bytes(seed) for seed in range(3)] + [image_bytes(7, "PNG", (20, 30))]


def test_status_and_metadata_are_tf_serving_shaped(tiny_server: ServerHandle, serving_runtime: str) -> None:
    url = tiny_server.rest_url
    status = requests.get(f"{url}/v1/models/tiny").json()
    runtime = status["model_version_status"][0].pop("runtime")     # our one addition (docs/serving.md)
    assert runtime == {"name": serving_runtime, "precision": "fp32", "note": ""}
    assert status == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert requests.get(f"{url}/v1/models/tiny/versions/1").status_code == 200
    metadata = requests.get(f"{url}/v1/models/tiny/metadata").json()
    assert metadata["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
    defs = metadata["metadata"]["signature_def"]["signature_def"]
    # TF Serving prints the SavedModel's internal init signature too
    assert set(defs) == {"serving_default", "predict_pixels", "__saved_model_init_op"}
    assert defs["serving_default"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert defs["predict_pixels"]["outputs"]["probabilities"]["dtype"] == "DT_FLOAT"
    assert requests.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = requests.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json()["models"] == {"tiny": [1]}


def test_predict_b64_instances_equals_the_saved_model(tiny_server: ServerHandle, direct) -> None:
    url = tiny_server.rest_url
    answer = requests.post(f"{url}/v1/models/tiny:predict",
                           json={"instances": [{"image_bytes": b64(i)} for i in IMAGES]})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    expected = direct(IMAGES)
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected, rtol=1e-5, atol=1e-6)
    assert [p["labels"] for p in predictions] == [TINY_LABELS[i] for i in expected.argmax(axis=1)]
    # unnamed row values, columnar inputs, explicit version and signature_name give the same
    unnamed = requests.post(f"{url}/v1/models/tiny/versions/1:predict",
                            json={"signature_name": "serving_default", "instances": [b64(i) for i in IMAGES]})
    np.testing.assert_allclose([p["probabilities"] for p in unnamed.json()["predictions"]], expected, atol=1e-6)
    columnar = requests.post(f"{url}/v1/models/tiny:predict", json={"inputs": {"image_bytes": [b64(i) for i in IMAGES]}})
    np.testing.assert_allclose(columnar.json()["outputs"]["probabilities"], expected, atol=1e-6)


def test_classify_tf_serving_examples(tiny_server: ServerHandle, direct) -> None:
    answer = requests.post(f"{tiny_server.rest_url}/v1/models/tiny:classify",
                           json={"examples": [{"image_bytes": b64(i)} for i in IMAGES[:2]]})
    assert answer.status_code == 200, answer.text
    expected = direct(IMAGES[:2])
    for pairs, row in zip(answer.json()["results"], expected):
        scores = dict(pairs)
        np.testing.assert_allclose([scores[label] for label in TINY_LABELS], row, atol=1e-6)
    bad = requests.post(f"{tiny_server.rest_url}/v1/models/tiny:classify", json={"examples": [{"x": b64(IMAGES[0])}]})
    assert bad.status_code == 400 and "image_bytes" in bad.json()["error"]
    url = f"{tiny_server.rest_url}/v1/models/tiny:classify"
    pixels = requests.post(url, json={"signature_name": "predict_pixels",
                                      "examples": [{"image_bytes": b64(IMAGES[0])}]})
    # not a classify signature: TF Serving's method check answers
    assert pixels.status_code == 400 and "method_name" in pixels.json()["error"]
    # answered as a whole, as TF Serving does: one bad image fails the request
    mixed = requests.post(url, json={"examples": [{"image_bytes": b64(IMAGES[0])}, {"image_bytes": b64(b"no")}]})
    assert mixed.status_code == 400 and "image 1" in mixed.json()["error"]


def test_predict_pixels_signature(tiny_server: ServerHandle) -> None:
    pixels = np.random.default_rng(0).uniform(0, 255, (2, TINY_SIZE, TINY_SIZE, 3)).round(1)
    answer = requests.post(f"{tiny_server.rest_url}/v1/models/tiny:predict",
                           json={"signature_name": "predict_pixels", "instances": pixels.tolist()})
    assert answer.status_code == 200, answer.text
    probabilities = np.array([p["probabilities"] for p in answer.json()["predictions"]])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_classify_image_multipart_and_raw_equal_the_saved_model(tiny_server: ServerHandle, direct) -> None:
    url = tiny_server.rest_url
    expected = direct(IMAGES[:1])[0]
    raw = requests.post(f"{url}/v1/models/tiny:classify_image?top_k=3", data=IMAGES[0],
                        headers={"Content-Type": "image/jpeg"}).json()
    multipart = requests.post(f"{url}/v1/models/tiny:classify_image?top_k=3",
                              files={"file": ("x.jpg", IMAGES[0], "image/jpeg")}).json()
    curl_default = requests.post(f"{url}/v1/models/tiny:classify_image?top_k=3", data=IMAGES[0],
                                 headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
    for answer in (raw, multipart, curl_default):
        assert answer["model"] == "tiny" and answer["version"] == 1 and len(answer["prediction_id"]) == 32
        scores = {p["label"]: p["score"] for p in answer["predictions"]}
        np.testing.assert_allclose([scores[label] for label in TINY_LABELS], expected, atol=1e-6)
        assert [p["label"] for p in answer["predictions"]] == [TINY_LABELS[i] for i in np.argsort(-expected)]
    top1 = requests.post(f"{url}/v1/models/tiny:classify_image?top_k=1", data=IMAGES[0],
                         headers={"Content-Type": "image/jpeg"}).json()
    assert len(top1["predictions"]) == 1


def test_classify_image_several_files_gives_per_image_results(tiny_server: ServerHandle, direct) -> None:
    files = [("files", ("a.jpg", IMAGES[0])), ("files", ("bad.txt", b"not an image")), ("files", ("c.png", IMAGES[3]))]
    answer = requests.post(f"{tiny_server.rest_url}/v1/models/tiny:classify_image", files=files)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["filename"] for r in results] == ["a.jpg", "bad.txt", "c.png"]
    assert "not a decodable image" in results[1]["error"] and "prediction_id" not in results[1]
    expected = direct([IMAGES[0], IMAGES[3]])
    for result, row in zip([results[0], results[2]], expected):
        assert result["predictions"][0]["label"] == TINY_LABELS[row.argmax()]
        assert result["predictions"][0]["score"] == pytest.approx(row.max(), abs=1e-6)


def test_feedback_single_and_batch(tiny_server: ServerHandle) -> None:
    url = tiny_server.rest_url
    ids, labels = [], []
    for image in IMAGES[:3]:
        answer = requests.post(f"{url}/v1/models/tiny:classify_image", data=image,
                               headers={"Content-Type": "image/jpeg"}).json()
        ids.append(answer["prediction_id"])
        labels.append(answer["predictions"][0]["label"])
    first = requests.post(f"{url}/v1/models/tiny:feedback", json={"prediction_id": ids[0], "label": labels[0]})
    assert first.status_code == 200 and first.json()["correct"] is True and first.json()["version"] == 1
    again = requests.post(f"{url}/v1/models/tiny:feedback", json={"prediction_id": ids[0], "label": labels[0]})
    assert again.status_code == 409 and "already" in again.json()["error"]
    unknown = requests.post(f"{url}/v1/models/tiny:feedback", json={"prediction_id": "0" * 32, "label": "cat"})
    assert unknown.status_code == 404
    bad_label = requests.post(f"{url}/v1/models/tiny:feedback", json={"prediction_id": ids[1], "label": "horse"})
    assert bad_label.status_code == 400 and "horse" in bad_label.json()["error"]
    wrong = next(label for label in TINY_LABELS if label != labels[2])
    batch = requests.post(f"{url}/v1/models/tiny:feedback", json={"feedback": [
        {"prediction_id": ids[1], "label": labels[1]}, {"prediction_id": ids[2], "label": wrong},
        {"prediction_id": "nope", "label": "cat"}]}).json()["results"]
    assert [r.get("correct") for r in batch] == [True, False, None]
    assert batch[2]["code"] == "NOT_FOUND"


def _truncated_jpeg() -> bytes:
    data = image_bytes(11, size=(64, 64))
    return data[: len(data) // 2]          # the header is intact; the pixel data is cut


def _huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 5000)).save(buffer, "PNG")
    return buffer.getvalue()


ERROR_CASES = [
    # (method, path, kwargs, status, words in the message)
    ("get", "/v1/models/nope", {}, 404, ["nope"]),
    ("get", "/v1/models/tiny/versions/9", {}, 404, ["version 9"]),
    ("post", "/v1/models/nope:predict", {"json": {"instances": [1]}}, 404, ["nope"]),
    ("post", "/v1/models/tiny/versions/9:predict", {"json": {"instances": [b64(IMAGES[0])]}}, 404, ["version 9"]),
    ("get", "/v1/models/tiny/labels/stable", {}, 400, ["label", "stable"]),     # TF Serving: 400
    ("get", "/no/such/route", {}, 404, ["not found"]),
    ("delete", "/v1/models/tiny", {}, 405, ["method"]),
    ("post", "/v1/models/tiny:predict", {"data": b"{not json"}, 400, ["json parse error"]),
    ("post", "/v1/models/tiny:predict", {"data": b""}, 400, ["empty"]),
    ("post", "/v1/models/tiny:predict", {"json": {"instances": [{"pixels": b64(IMAGES[0])}]}}, 400,
     ["image_bytes", "pixels"]),
    ("post", "/v1/models/tiny:predict", {"json": {"signature_name": "nope", "instances": [b64(IMAGES[0])]}}, 400,
     ["signature", "nope"]),
    ("post", "/v1/models/tiny:predict", {"json": {"signature_name": "predict_pixels",
                                                  "instances": [[[0.0, 1.0, 2.0]]]}}, 400, ["shape", "images"]),
    ("post", "/v1/models/tiny:predict", {"json": {"signature_name": "predict_pixels",
                                                  "instances": [[["a"] * 3] * TINY_SIZE] * TINY_SIZE}}, 400,
     ["images", "float"]),
    ("post", "/v1/models/tiny:predict", {"json": {"instances": [b64(b"plain text")]}}, 400,
     ["image_bytes[0]", "not a decodable image"]),
    ("post", "/v1/models/tiny:predict", {"json": {"instances": [{"b64": "%%%"}]}}, 400, ["base64"]),
    ("post", "/v1/models/tiny:predict", {"json": {"instances": []}}, 400, ["instances"]),
    ("post", "/v1/models/tiny:classify_image", {"data": b"", "headers": {"Content-Type": "image/jpeg"}}, 400,
     ["empty"]),
    ("post", "/v1/models/tiny:classify_image", {"data": b"GIF89a....", "headers": {"Content-Type": "image/gif"}},
     400, ["not a decodable image"]),
    ("post", "/v1/models/tiny:classify_image", {"data": _truncated_jpeg(), "headers": {"Content-Type": "image/jpeg"}},
     400, ["rejected", "jpeg"]),
    ("post", "/v1/models/tiny:classify_image?top_k=0", {"data": IMAGES[0]}, 400, ["top_k"]),
    ("post", "/v1/models/tiny:classify_image", {"json": {"x": 1}}, 400, ["content-type"]),
    ("post", "/v1/models/tiny:classify_image", {"data": _huge_png(), "headers": {"Content-Type": "image/png"}},
     400, ["6000x5000", "pixel"]),
    ("post", "/v1/models/tiny:classify_image", {"data": b"\0" * (10 * 1024 * 1024 + 1),
                                               "headers": {"Content-Type": "image/jpeg"}}, 413, ["max-request-bytes"]),
    ("post", "/v1/models/tiny:explode", {"json": {}}, 400, ["malformed request", "explode"]),   # as TF Serving
]


@pytest.mark.parametrize("method, path, kwargs, status, words", ERROR_CASES,
                         ids=[f"{c[3]}-{c[1]}-{i}" for i, c in enumerate(ERROR_CASES)])
def test_error_cases_status_and_message(tiny_server: ServerHandle, method: str, path: str, kwargs: dict,
                                        status: int, words: list[str]) -> None:
    answer = requests.request(method, tiny_server.rest_url + path, timeout=30, **kwargs)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"].lower()
    for word in words:
        assert word.lower() in message, message


def test_bad_requests_do_not_leak_into_a_shared_batch(tiny_server: ServerHandle, direct) -> None:
    """Good and bad requests at once: the good ones all get their own right answer."""
    url = tiny_server.rest_url
    expected = direct(IMAGES[:1])[0]
    outcomes: list[tuple[str, int, dict]] = []
    def send(kind: str) -> None:
        body = IMAGES[0] if kind == "good" else _truncated_jpeg()
        answer = requests.post(f"{url}/v1/models/tiny:classify_image?top_k=3", data=body,
                               headers={"Content-Type": "image/jpeg"})
        outcomes.append((kind, answer.status_code, answer.json()))
    threads = [threading.Thread(target=send, args=("bad" if i % 4 == 0 else "good",)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for kind, status, body in outcomes:
        if kind == "good":
            assert status == 200, body
            scores = {p["label"]: p["score"] for p in body["predictions"]}
            np.testing.assert_allclose([scores[label] for label in TINY_LABELS], expected, atol=1e-6)
        else:
            assert status == 400, body
    assert requests.get(f"{url}/healthz").status_code == 200


def _samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = requests.get(f"{url}/metrics").text
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def test_metrics_after_traffic(tiny_server: ServerHandle) -> None:
    url = tiny_server.rest_url
    requests.post(f"{url}/v1/models/tiny:predict", json={"instances": [b64(IMAGES[0])]})
    requests.post(f"{url}/v1/models/tiny:predict", json={"instances": [b64(b"x")]})
    requests.get(f"{url}/v1/models/nope")
    answer = requests.post(f"{url}/v1/models/tiny:classify_image", data=IMAGES[1],
                           headers={"Content-Type": "image/jpeg"}).json()
    requests.post(f"{url}/v1/models/tiny:feedback",
                  json={"prediction_id": answer["prediction_id"], "label": answer["predictions"][0]["label"]})
    samples = _samples(url)

    def find(name: str, **labels: str) -> list[float]:
        return [value for n, l, value in samples if n == name and all(l.get(k) == v for k, v in labels.items())]

    rest = {"protocol": "rest", "model": "tiny"}
    assert find("serving_requests_total", version="1", api="predict", outcome="ok", **rest)[0] >= 1
    assert find("serving_requests_total", version="1", api="predict", outcome="invalid_argument", **rest)[0] >= 1
    assert find("serving_requests_total", version="1", api="classify_image", outcome="ok", **rest)[0] >= 1
    assert find("serving_requests_total", version="1", api="feedback", outcome="ok", **rest)[0] >= 1
    # an unknown name is counted, but under one label: clients cannot mint label series
    assert find("serving_requests_total", model="_unknown", version="", api="status", outcome="not_found")[0] >= 1
    assert not find("serving_requests_total", model="nope")
    assert find("serving_request_duration_seconds_count", version="1", api="predict", **rest)[0] >= 2
    assert find("serving_request_duration_seconds_bucket", version="1", api="classify_image", le="+Inf", **rest)
    assert find("serving_batch_size_count", model="tiny", version="1")[0] >= 1
    assert find("serving_queue_wait_seconds_count", model="tiny", version="1")[0] >= 1
    assert find("serving_model_load_duration_seconds_count", model="tiny", version="1") == [1.0]
    assert find("serving_model_version_state", model="tiny", version="1", state="AVAILABLE") == [1.0]
    assert find("serving_model_version_state", model="tiny", version="1", state="LOADING") == [0.0]
    assert find("serving_model_eval_accuracy", model="tiny", version="1", stage="stage2") == [0.5]
    assert find("serving_prediction_confidence_count", model="tiny", version="1")[0] >= 2
    assert sum(find("serving_predicted_label_total", model="tiny", version="1")) >= 2
    assert {l["label"] for n, l, _ in samples if n == "serving_predicted_label_total"} <= set(TINY_LABELS)
    assert find("serving_feedback_total", model="tiny", version="1")[0] >= 1
    assert find("serving_feedback_correct_total", model="tiny", version="1")[0] >= 1
