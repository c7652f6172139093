"""The project's own gRPC service (proto/transfer_serving/v1/image_classifier.proto).

Image bytes in, labels out, and feedback on earlier predictions; a thin adapter over the same
core calls as REST's `:classify_image` and `:feedback`, so both protocols give the same answer.
"""
from __future__ import annotations

from typing import Any

import grpc

from serving.core import ClassifyResult, ServingCore
from serving.grpc_calls import rpc
from serving.protos import image_classifier_pb2 as pb
from serving.protos import image_classifier_pb2_grpc as pb_grpc


def _version_choice(request: Any) -> tuple[int | None, str | None]:
    choice = request.WhichOneof("version_choice")
    return (request.version if choice == "version" else None,
            request.version_label if choice == "version_label" else None)


def _top_k(request: Any) -> dict[str, int]:
    """top_k 0 (unset) leaves the core's default; anything else goes to the core to judge."""
    return {"top_k": request.top_k} if request.top_k else {}


def _predictions(ranked: list[tuple[str, float]]) -> list[pb.Prediction]:
    return [pb.Prediction(label=label, score=score) for label, score in ranked]


class ImageClassifier(pb_grpc.ImageClassifierServicer):
    """transfer_serving.v1.ImageClassifier: Classify, ClassifyBatch, Feedback."""

    def __init__(self, core: ServingCore) -> None:
        self._core = core

    def _classify(self, request: Any, images: list[bytes]) -> ClassifyResult:
        version, label = _version_choice(request)
        return self._core.classify_images(request.model_name, version, label, images, **_top_k(request))

    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext) -> pb.ClassifyResponse:
        with rpc(context, request.model_name, "classify_image") as track:
            result = self._classify(request, [request.image])
            track.version = result.version
            item = result.items[0]   # with one image the core raises its error instead
            return pb.ClassifyResponse(model=result.model, version=result.version,
                                       prediction_id=item.prediction_id,
                                       predictions=_predictions(item.predictions))

    def ClassifyBatch(self, request: pb.ClassifyBatchRequest,
                      context: grpc.ServicerContext) -> pb.ClassifyBatchResponse:
        with rpc(context, request.model_name, "classify_image") as track:
            result = self._classify(request, list(request.images))
            track.version = result.version
            return pb.ClassifyBatchResponse(model=result.model, version=result.version, results=[
                pb.ImageClassification(error=item.error.message) if item.error is not None else
                pb.ImageClassification(prediction_id=item.prediction_id,
                                       predictions=_predictions(item.predictions))
                for item in result.items])

    def Feedback(self, request: pb.FeedbackRequest, context: grpc.ServicerContext) -> pb.FeedbackResponse:
        with rpc(context, request.model_name, "feedback") as track:
            outcome = self._core.feedback(request.model_name, request.prediction_id, request.label)
            track.version = outcome.version
            return pb.FeedbackResponse(model=outcome.model, version=outcome.version,
                                       prediction_id=outcome.prediction_id,
                                       predicted_label=outcome.predicted_label, label=outcome.true_label,
                                       correct=outcome.correct)
