"""TF Serving's own client stubs (tensorflow_serving.apis) against the real server process."""
from __future__ import annotations

import numpy as np
import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

from tests.grpc.conftest import MAX_MESSAGE_BYTES, MODEL
from tests.helpers import TINY_LABELS, TINY_SIZE, image_bytes

TIMEOUT = 20


@pytest.fixture(scope="module")
def predictions(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel: grpc.Channel) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(channel)


def predict_request(inputs: dict[str, tensor_pb2.TensorProto], *, version: int | None = None,
                    label: str | None = None, signature: str = "", model: str = MODEL,
                    output_filter: tuple[str, ...] = ()) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(output_filter=output_filter)
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    return request


def images_input(*seeds: int) -> dict[str, tensor_pb2.TensorProto]:
    return {"image_bytes": tf.make_tensor_proto([image_bytes(s) for s in seeds], dtype=tf.string)}


def direct_images(direct: dict, version: int, *seeds: int) -> dict[str, np.ndarray]:
    function = direct[version].signatures["serving_default"]
    return {k: v.numpy() for k, v in function(image_bytes=tf.constant([image_bytes(s) for s in seeds])).items()}


def status_code(call, request) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=TIMEOUT)
    return raised.value.code()


# ---- Predict -----------------------------------------------------------------------------------
def test_predict_on_image_bytes_equals_the_savedmodel(predictions, direct) -> None:
    response = predictions.Predict(predict_request(images_input(1, 2, 3)), timeout=TIMEOUT)
    expected = direct_images(direct, 2, 1, 2, 3)   # no version asked: the latest available
    assert response.model_spec.name == MODEL and response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    assert set(response.outputs) == {"probabilities", "classes", "labels"}
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["classes"]), expected["classes"])
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["labels"]), expected["labels"])


def test_predict_on_pixels_equals_the_savedmodel(predictions, direct) -> None:
    pixels = np.random.default_rng(7).uniform(0, 255, (2, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    request = predict_request({"images": tf.make_tensor_proto(pixels)}, signature="predict_pixels", version=1)
    response = predictions.Predict(request, timeout=TIMEOUT)
    expected = direct[1].signatures["predict_pixels"](images=tf.constant(pixels))
    assert response.model_spec.version.value == 1 and response.model_spec.signature_name == "predict_pixels"
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]),
                               expected["probabilities"].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("version, label, expected_version", [
    (1, None, 1), (2, None, 2), (None, "stable", 1), (None, "canary", 2)])
def test_version_and_label_selection(predictions, direct, version, label, expected_version) -> None:
    response = predictions.Predict(predict_request(images_input(5), version=version, label=label),
                                   timeout=TIMEOUT)
    assert response.model_spec.version.value == expected_version
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]),
                               direct_images(direct, expected_version, 5)["probabilities"], rtol=1e-5, atol=1e-6)


def test_versions_really_differ(direct) -> None:
    """Guards the selection test: the two versions must give different answers."""
    assert not np.allclose(direct_images(direct, 1, 5)["probabilities"], direct_images(direct, 2, 5)["probabilities"])


def test_output_filter_returns_only_the_named_outputs(predictions) -> None:
    response = predictions.Predict(predict_request(images_input(1), output_filter=("labels",)), timeout=TIMEOUT)
    assert set(response.outputs) == {"labels"}


# ---- Classify (tf.Example) ---------------------------------------------------------------------
def example(image: bytes) -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(feature={
        "image_bytes": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}))


def test_classify_examples_gives_every_class_with_the_models_scores(predictions, direct) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = 1
    request.input.example_list.examples.extend([example(image_bytes(1)), example(image_bytes(4))])
    response = predictions.Classify(request, timeout=TIMEOUT)
    expected = direct_images(direct, 1, 1, 4)["probabilities"]
    assert response.model_spec.version.value == 1
    assert len(response.result.classifications) == 2
    for row, classifications in zip(expected, response.result.classifications):
        scores = {c.label: c.score for c in classifications.classes}
        assert set(scores) == set(TINY_LABELS)
        np.testing.assert_allclose([scores[name] for name in TINY_LABELS], row, rtol=1e-5, atol=1e-6)
        assert [c.label for c in classifications.classes][0] == TINY_LABELS[int(np.argmax(row))]


def test_classify_reads_the_image_from_the_context(predictions, direct) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.input.example_list_with_context.context.CopyFrom(example(image_bytes(3)))
    request.input.example_list_with_context.examples.add()
    response = predictions.Classify(request, timeout=TIMEOUT)
    top = response.result.classifications[0].classes[0]
    assert top.label == TINY_LABELS[int(np.argmax(direct_images(direct, 2, 3)["probabilities"][0]))]


# ---- GetModelMetadata, GetModelStatus ----------------------------------------------------------
def test_metadata_returns_both_signatures_as_tf_serving_does(predictions, model_dirs) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    request.model_spec.version.value = 1
    response = predictions.GetModelMetadata(request, timeout=TIMEOUT)
    assert response.model_spec.version.value == 1
    defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(defs)
    assert {"serving_default", "predict_pixels"} <= set(defs.signature_def)
    image_input = defs.signature_def["serving_default"].inputs["image_bytes"]
    assert image_input.dtype == types_pb2.DT_STRING
    pixels = defs.signature_def["predict_pixels"].inputs["images"]
    assert pixels.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in pixels.tensor_shape.dim] == [-1, TINY_SIZE, TINY_SIZE, 3]
    assert set(defs.signature_def["serving_default"].outputs) == {"probabilities", "classes", "labels"}


def status_request(version: int | None = None, label: str | None = None,
                   model: str = MODEL) -> get_model_status_pb2.GetModelStatusRequest:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    return request


def test_model_status_lists_available_versions(models) -> None:
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    response = models.GetModelStatus(status_request(), timeout=TIMEOUT)
    assert {(s.version, s.state) for s in response.model_version_status} == {(1, available), (2, available)}
    assert all(s.status.error_code == 0 for s in response.model_version_status)
    only = models.GetModelStatus(status_request(version=1), timeout=TIMEOUT).model_version_status
    assert [(s.version, s.state) for s in only] == [(1, available)]
    labelled = models.GetModelStatus(status_request(label="canary"), timeout=TIMEOUT).model_version_status
    assert [s.version for s in labelled] == [2]


# ---- errors ------------------------------------------------------------------------------------
def _tensor(dtype: int, dims: list[int], **values) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)


PREDICT_ERRORS = {
    "unknown model": (predict_request(images_input(1), model="nope"), grpc.StatusCode.NOT_FOUND),
    "unknown version": (predict_request(images_input(1), version=9), grpc.StatusCode.NOT_FOUND),
    # INVALID_ARGUMENT, as TF Serving answers an unrecognized version label
    "unknown label": (predict_request(images_input(1), label="beta"), grpc.StatusCode.INVALID_ARGUMENT),
    "no model name": (predict_request(images_input(1), model=""), grpc.StatusCode.INVALID_ARGUMENT),
    "wrong signature": (predict_request(images_input(1), signature="nope"), grpc.StatusCode.INVALID_ARGUMENT),
    "wrong input name": (predict_request({"pixels": tf.make_tensor_proto([b"x"])}),
                         grpc.StatusCode.INVALID_ARGUMENT),
    "not an image": (predict_request({"image_bytes": tf.make_tensor_proto([b"not an image"])}),
                     grpc.StatusCode.INVALID_ARGUMENT),
    "wrong dtype": (predict_request({"images": tf.make_tensor_proto(np.full((1, TINY_SIZE, TINY_SIZE, 3), b"x"))},
                                    signature="predict_pixels"), grpc.StatusCode.INVALID_ARGUMENT),
    "wrong shape": (predict_request({"images": tf.make_tensor_proto(np.zeros((1, 8, 8, 3), np.float32))},
                                    signature="predict_pixels"), grpc.StatusCode.INVALID_ARGUMENT),
    "broken tensor_content": (predict_request({"images": _tensor(types_pb2.DT_FLOAT, [1, TINY_SIZE, TINY_SIZE, 3],
                                                                 tensor_content=b"abc")},
                                              signature="predict_pixels"), grpc.StatusCode.INVALID_ARGUMENT),
    "no dtype": (predict_request({"image_bytes": _tensor(types_pb2.DT_INVALID, [1])}),
                 grpc.StatusCode.INVALID_ARGUMENT),
    "broadcast bomb": (predict_request({"images": _tensor(types_pb2.DT_FLOAT, [1 << 20, TINY_SIZE, TINY_SIZE, 3],
                                                          float_val=[1.0])}, signature="predict_pixels"),
                       grpc.StatusCode.INVALID_ARGUMENT),
    "unknown output_filter": (predict_request(images_input(1), output_filter=("nope",)),
                              grpc.StatusCode.INVALID_ARGUMENT),
    "message too large": (predict_request({"image_bytes": tf.make_tensor_proto([b"\xff" * (MAX_MESSAGE_BYTES + 1)])}),
                          grpc.StatusCode.RESOURCE_EXHAUSTED),
}


@pytest.mark.parametrize("case", sorted(PREDICT_ERRORS))
def test_predict_errors_have_their_status_code(predictions, case) -> None:
    request, expected = PREDICT_ERRORS[case]
    assert status_code(predictions.Predict, request) == expected


def test_other_rpc_errors_have_their_status_code(predictions, models) -> None:
    no_field = get_model_metadata_pb2.GetModelMetadataRequest()
    no_field.model_spec.name = MODEL
    assert status_code(predictions.GetModelMetadata, no_field) == grpc.StatusCode.INVALID_ARGUMENT
    bad_field = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def", "weights"])
    bad_field.model_spec.name = MODEL
    assert status_code(predictions.GetModelMetadata, bad_field) == grpc.StatusCode.INVALID_ARGUMENT
    unknown = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    unknown.model_spec.name = "nope"
    assert status_code(predictions.GetModelMetadata, unknown) == grpc.StatusCode.NOT_FOUND
    assert status_code(models.GetModelStatus, status_request(model="nope")) == grpc.StatusCode.NOT_FOUND
    assert status_code(models.GetModelStatus, status_request(version=9)) == grpc.StatusCode.NOT_FOUND
    pixels_classify = classification_pb2.ClassificationRequest()
    pixels_classify.model_spec.name = MODEL
    pixels_classify.model_spec.signature_name = "predict_pixels"
    pixels_classify.input.example_list.examples.add().CopyFrom(example(image_bytes(1)))
    assert status_code(predictions.Classify, pixels_classify) == grpc.StatusCode.INVALID_ARGUMENT
    no_image = classification_pb2.ClassificationRequest()
    no_image.model_spec.name = MODEL
    no_image.input.example_list.examples.add()
    assert status_code(predictions.Classify, no_image) == grpc.StatusCode.INVALID_ARGUMENT
    empty = classification_pb2.ClassificationRequest()
    empty.model_spec.name = MODEL
    assert status_code(predictions.Classify, empty) == grpc.StatusCode.INVALID_ARGUMENT


def test_server_keeps_serving_after_errors_and_counts_them(server, predictions) -> None:
    for request, _ in PREDICT_ERRORS.values():
        with pytest.raises(grpc.RpcError):
            predictions.Predict(request, timeout=TIMEOUT)
    assert predictions.Predict(predict_request(images_input(1)), timeout=TIMEOUT).model_spec.version.value == 2
    text = requests.get(server.rest_url + "/metrics", timeout=10).text
    for outcome in ("ok", "not_found", "invalid_argument"):
        assert _has_series(text, model=MODEL, api="predict", outcome=outcome, protocol="grpc"), outcome


def _has_series(text: str, **labels: str) -> bool:
    """A serving_requests_total sample with these labels (any order) and a positive count."""
    for line in text.splitlines():
        if line.startswith("serving_requests_total{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            if float(line.rsplit(" ", 1)[1]) > 0:
                return True
    return False
