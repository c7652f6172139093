"""The runtime choice of a version: LiteRT only when it agrees with the SavedModel, TensorFlow
(with the reason) otherwise; int8 only when its recorded accuracy holds; the same answers from
both runtimes over REST and gRPC, for real JPEG and PNG bytes."""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from model_format.fast_form import FILES, convert, keras_pixels_function
from serving import loader
from serving.config import BatchingOptions, RuntimeOptions
from serving.inference_runtime import MAX_PROBABILITY_DIFF
from tests.helpers import TINY_LABELS, TINY_SIZE, export_tiny, image_bytes, tiny_model
from tests.server_process import start_server

BATCHING = BatchingOptions(max_batch_size=4)


def _form_of(seed: int, precision: str = "fp32") -> bytes:
    """The fast form of the tiny model of `seed` (another seed's form disagrees with a version)."""
    model = tiny_model(seed)
    pixels = np.random.default_rng(0).uniform(0, 255, (8, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    calibration = (lambda: (pixels[i:i + 1] for i in range(len(pixels)))) if precision == "int8" else None
    return convert(keras_pixels_function(model, TINY_SIZE), model, calibration)


def _version(tmp_path: Path, forms: dict[str, bytes] | None = None, fast_figures: dict | None = None) -> Path:
    version_dir = export_tiny(tmp_path / "tiny", seed=1)
    for precision, content in (forms or {}).items():
        (version_dir / FILES[precision]).write_bytes(content)
    if fast_figures is not None:
        metadata_file = version_dir / "assets.extra" / "metadata.json"
        metadata = json.loads(metadata_file.read_text())
        metadata_file.write_text(json.dumps({**metadata, "fast_forms": fast_figures}))
    return version_dir


def _load(version_dir: Path, runtime: str = "auto", precision: str = "fp32") -> loader.LoadResult:
    return loader.load_version("tiny", 1, version_dir, BATCHING, RuntimeOptions(runtime, precision))


def test_a_version_without_fast_form_is_converted_at_load_and_served_on_litert(tmp_path: Path) -> None:
    version_dir = _version(tmp_path)
    servable = _load(version_dir).servable
    assert servable is not None and servable.runtime.runtime == "litert" and servable.runtime.note == ""
    assert not (version_dir / "model.tflite").exists()          # the version directory is never written
    assert servable.saved_model is None                          # every signature moved off TensorFlow


def test_a_disagreeing_fast_form_falls_back_to_tensorflow_or_fails_with_litert(tmp_path: Path) -> None:
    version_dir = _version(tmp_path, {"fp32": _form_of(seed=2)})
    servable = _load(version_dir).servable
    assert servable is not None
    assert servable.runtime.runtime == "tensorflow" and servable.runtime.cause == "mismatch"
    assert "disagrees with the SavedModel" in servable.runtime.note and "limit 1e-04" in servable.runtime.note
    images = np.array([image_bytes(1)], dtype=object)
    reference = tf.saved_model.load(str(version_dir)).signatures["serving_default"](image_bytes=images)
    np.testing.assert_allclose(servable.signatures["serving_default"].run({"image_bytes": images})["probabilities"],
                               reference["probabilities"].numpy(), atol=1e-6)   # TensorFlow really serves
    strict = _load(version_dir, runtime="litert")
    assert strict.servable is None and "--runtime litert" in strict.error and "disagrees" in strict.error


def test_an_unreadable_or_unconvertible_fast_form_falls_back(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _load(_version(tmp_path / "a", {"fp32": b"TFL3 not a flatbuffer"})).servable
    assert broken is not None and (broken.runtime.runtime, broken.runtime.cause) == ("tensorflow", "invalid_form")

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise ValueError("op not supported")
    monkeypatch.setattr("model_format.fast_form.convert", refuse)
    servable = _load(_version(tmp_path / "b")).servable
    assert servable is not None and servable.runtime.cause == "conversion_failed"
    assert "op not supported" in servable.runtime.note


@pytest.mark.parametrize("int8_accuracy,served", [(0.80, "fp32"), (0.898, "int8")])
def test_int8_serves_only_when_its_recorded_accuracy_holds(tmp_path: Path, int8_accuracy: float,
                                                           served: str) -> None:
    figures = {"fp32": {"accuracy": 0.90}, "int8": {"accuracy": int8_accuracy}}
    version_dir = _version(tmp_path, {"int8": _form_of(seed=1, precision="int8")}, figures)
    choice = _load(version_dir, precision="int8").servable.runtime
    assert (choice.runtime, choice.precision) == ("litert", served)
    if served == "fp32":
        assert choice.cause == "precision_refused"
        assert "80.00%" in choice.note and "10.00 points below fp32's 90.00%" in choice.note
    else:
        assert choice.note == "" and choice.cause == ""


def test_int8_without_recorded_accuracy_is_refused(tmp_path: Path) -> None:
    version_dir = _version(tmp_path, {"int8": _form_of(seed=1, precision="int8")})
    choice = _load(version_dir, precision="int8").servable.runtime
    assert (choice.precision, choice.cause) == ("fp32", "precision_refused") and "records no test accuracy" in choice.note


def _metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_both_runtimes_give_the_same_answers_over_rest_and_grpc(tmp_path: Path) -> None:
    """One server, the same version as three models: on TensorFlow, on LiteRT, and with a
    disagreeing fast form (auto falls back). Real JPEG and PNG bytes through every API."""
    good = export_tiny(tmp_path / "good", seed=1).parent
    bad = _version(tmp_path / "bad", {"fp32": _form_of(seed=2)}).parent
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump({"models": [
        {"name": "on_tf", "base_path": str(good), "runtime": "tensorflow"},
        {"name": "on_litert", "base_path": str(good), "runtime": "litert"},
        {"name": "fallback", "base_path": str(bad)}]}))
    images = [image_bytes(seed, fmt) for seed in range(3) for fmt in ("JPEG", "PNG")]
    with start_server("--model-config-file", str(config)) as server:
        url = server.rest_url
        for model in ("on_tf", "on_litert", "fallback"):
            _wait_available(url, model)
        answers = {model: _answers(url, server.grpc_target, model, images) for model in ("on_tf", "on_litert")}
        for api in answers["on_tf"]:
            np.testing.assert_allclose(answers["on_litert"][api], answers["on_tf"][api], atol=MAX_PROBABILITY_DIFF,
                                       err_msg=api)
            assert (answers["on_litert"][api].argmax(1) == answers["on_tf"][api].argmax(1)).all(), api
        status = {m: requests.get(f"{url}/v1/models/{m}").json()["model_version_status"][0]["runtime"]
                  for m in ("on_tf", "on_litert", "fallback")}
        assert [status[m]["name"] for m in ("on_tf", "on_litert", "fallback")] == ["tensorflow", "litert", "tensorflow"]
        assert "disagrees with the SavedModel" in status["fallback"]["note"]
        metrics = requests.get(f"{url}/metrics").text
        assert _metric(metrics, "serving_model_runtime_info", model="on_litert", version="1", runtime="litert",
                       precision="fp32") == 1.0
        assert _metric(metrics, "serving_model_runtime_fallbacks_total", model="fallback", version="1",
                       cause="mismatch") == 1.0
        assert _metric(metrics, "serving_model_runtime_fallbacks_total", model="on_litert") is None
        assert "LiteRT fp32 refused" in server.log()


def _wait_available(url: str, model: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(f"{url}/v1/models/{model}", timeout=10)
        if answer.ok and answer.json()["model_version_status"][0]["state"] == "AVAILABLE":
            return
        time.sleep(0.2)
    raise TimeoutError(f"{model} not AVAILABLE: {answer.text}")


def _answers(url: str, grpc_target: str, model: str, images: list[bytes]) -> dict[str, np.ndarray]:
    """Probabilities [N, C] for `images` from REST :predict, REST :classify_image and gRPC Predict."""
    encoded = [base64.b64encode(image).decode() for image in images]
    rest = requests.post(f"{url}/v1/models/{model}:predict",
                         json={"instances": [{"image_bytes": {"b64": item}} for item in encoded]}, timeout=30)
    assert rest.status_code == 200, rest.text
    by_upload = []
    for image in images:
        answer = requests.post(f"{url}/v1/models/{model}:classify_image?top_k=3", data=image, timeout=30,
                               headers={"Content-Type": "image/png"})
        assert answer.status_code == 200, answer.text
        scores = {item["label"]: item["score"] for item in answer.json()["predictions"]}
        by_upload.append([scores[label] for label in TINY_LABELS])
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    with grpc.insecure_channel(grpc_target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    return {"rest_predict": np.array([row["probabilities"] for row in rest.json()["predictions"]]),
            "rest_classify_image": np.array(by_upload),
            "grpc_predict": tf.make_ndarray(response.outputs["probabilities"])}
