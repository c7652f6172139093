"""The project's own ImageClassifier service, against REST on the same real server process."""
from __future__ import annotations

import grpc
import pytest
import requests

from serving.protos import image_classifier_pb2 as pb
from serving.protos import image_classifier_pb2_grpc as pb_grpc
from tests.grpc.conftest import MODEL
from tests.grpc.test_tf_serving_api import _has_series
from tests.helpers import TINY_LABELS, image_bytes

TIMEOUT = 20


@pytest.fixture(scope="module")
def classifier(channel: grpc.Channel) -> pb_grpc.ImageClassifierStub:
    return pb_grpc.ImageClassifierStub(channel)


def rest_classify(server, image: bytes, query: str = "") -> dict:
    response = requests.post(f"{server.rest_url}/v1/models/{MODEL}{query}:classify_image?top_k=3",
                             data=image, headers={"Content-Type": "image/jpeg"}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("seed, fmt", [(1, "JPEG"), (2, "PNG"), (3, "GIF"), (4, "BMP")])
def test_classify_gives_the_same_labels_as_rest(server, classifier, seed, fmt) -> None:
    image = image_bytes(seed, fmt)
    answer = classifier.Classify(pb.ClassifyRequest(model_name=MODEL, image=image, top_k=3), timeout=TIMEOUT)
    rest = rest_classify(server, image)
    assert (answer.model, answer.version) == (rest["model"], int(rest["version"])) == (MODEL, 2)
    assert [p.label for p in answer.predictions] == [p["label"] for p in rest["predictions"]]
    assert [p.score for p in answer.predictions] == pytest.approx([p["score"] for p in rest["predictions"]], abs=1e-6)
    assert sorted(p.label for p in answer.predictions) == sorted(TINY_LABELS)
    assert answer.prediction_id and answer.prediction_id != rest["prediction_id"]


def test_classify_selects_version_and_label_and_top_k(server, classifier) -> None:
    image = image_bytes(9)
    by_version = classifier.Classify(pb.ClassifyRequest(model_name=MODEL, version=1, image=image, top_k=1),
                                     timeout=TIMEOUT)
    by_label = classifier.Classify(pb.ClassifyRequest(model_name=MODEL, version_label="stable", image=image),
                                   timeout=TIMEOUT)
    assert by_version.version == by_label.version == 1 and len(by_version.predictions) == 1
    assert by_label.predictions[0].label == by_version.predictions[0].label
    assert by_version.predictions[0].label == rest_classify(server, image, "/versions/1")["predictions"][0]["label"]


def test_classify_batch_answers_each_image_from_one_version(classifier) -> None:
    images = [image_bytes(1), b"not an image", image_bytes(2, "PNG")]
    answer = classifier.ClassifyBatch(pb.ClassifyBatchRequest(model_name=MODEL, version_label="canary",
                                                              images=images, top_k=2), timeout=TIMEOUT)
    assert answer.version == 2 and len(answer.results) == 3
    assert answer.results[1].error and not answer.results[1].predictions
    for index in (0, 2):
        single = classifier.Classify(pb.ClassifyRequest(model_name=MODEL, version=2, image=images[index], top_k=2),
                                     timeout=TIMEOUT)
        result = answer.results[index]
        assert not result.error and result.prediction_id
        assert [p.label for p in result.predictions] == [p.label for p in single.predictions]


@pytest.mark.parametrize("request_, code", [
    (pb.ClassifyRequest(model_name="nope", image=image_bytes(1)), grpc.StatusCode.NOT_FOUND),
    (pb.ClassifyRequest(model_name=MODEL, version=9, image=image_bytes(1)), grpc.StatusCode.NOT_FOUND),
    (pb.ClassifyRequest(model_name=MODEL, image=b""), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.ClassifyRequest(model_name=MODEL, image=b"GIF89a broken"), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.ClassifyRequest(model_name=MODEL, image=image_bytes(1), top_k=-2), grpc.StatusCode.INVALID_ARGUMENT),
], ids=["unknown model", "unknown version", "empty image", "not an image", "negative top_k"])
def test_classify_errors(classifier, request_, code) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        classifier.Classify(request_, timeout=TIMEOUT)
    assert raised.value.code() == code


def test_feedback_through_grpc_counts_for_online_accuracy(server, classifier) -> None:
    answer = classifier.Classify(pb.ClassifyRequest(model_name=MODEL, image=image_bytes(11)), timeout=TIMEOUT)
    top = answer.predictions[0].label
    outcome = classifier.Feedback(pb.FeedbackRequest(model_name=MODEL, prediction_id=answer.prediction_id,
                                                     label=top), timeout=TIMEOUT)
    assert (outcome.model, outcome.version, outcome.prediction_id) == (MODEL, answer.version, answer.prediction_id)
    assert outcome.predicted_label == outcome.label == top and outcome.correct

    other = classifier.Classify(pb.ClassifyRequest(model_name=MODEL, image=image_bytes(12)), timeout=TIMEOUT)
    wrong = next(label for label in TINY_LABELS if label != other.predictions[0].label)
    assert not classifier.Feedback(pb.FeedbackRequest(model_name=MODEL, prediction_id=other.prediction_id,
                                                      label=wrong), timeout=TIMEOUT).correct

    third = classifier.Classify(pb.ClassifyRequest(model_name=MODEL, image=image_bytes(13)), timeout=TIMEOUT)
    errors = {
        grpc.StatusCode.ALREADY_EXISTS: pb.FeedbackRequest(model_name=MODEL, prediction_id=answer.prediction_id,
                                                           label=top),
        grpc.StatusCode.NOT_FOUND: pb.FeedbackRequest(model_name=MODEL, prediction_id="0" * 32, label=top),
        grpc.StatusCode.INVALID_ARGUMENT: pb.FeedbackRequest(model_name=MODEL, prediction_id=third.prediction_id,
                                                             label="giraffe"),
    }
    for code, request in errors.items():
        with pytest.raises(grpc.RpcError) as raised:
            classifier.Feedback(request, timeout=TIMEOUT)
        assert raised.value.code() == code

    text = requests.get(server.rest_url + "/metrics", timeout=10).text
    assert _has_series(text, model=MODEL, api="feedback", protocol="grpc", outcome="ok")
    assert _has_series(text, model=MODEL, api="feedback", protocol="grpc", outcome="already_exists")
    assert _has_series(text, model=MODEL, api="classify_image", protocol="grpc", outcome="ok")
    assert f'serving_feedback_total{{model="{MODEL}",version="2"}}' in text
