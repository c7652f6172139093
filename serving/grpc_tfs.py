"""TensorFlow Serving's gRPC API over the serving core: PredictionService and ModelService.

Clients built on the `tensorflow-serving-api` stubs work unchanged against this server. Each
method only translates protos to core calls and back (no model logic here); errors and metrics
go through serving.grpc_calls. Predict, Classify, Regress, MultiInference and GetModelMetadata
run on any SavedModel, as in TF Serving; ModelService.HandleReloadConfigRequest answers
UNIMPLEMENTED, as the generated base class does (models come from the base path and config file).
"""
from __future__ import annotations

from typing import Any, Callable

import grpc
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2, status_pb2)

from model_format.contract import DEFAULT_SIGNATURE
from serving.core import ClassifyResult, InferenceTask, RegressResult, ServingCore
from serving.errors import invalid
from serving.examples import ExampleInput
from serving.grpc_calls import rpc
from serving.grpc_tensors import to_ndarrays, to_tensor_proto

SIGNATURE_DEF_FIELD = "signature_def"
_ERROR_UNKNOWN = 2           # tensorflow.error.Code.UNKNOWN, for a version whose load failed


def version_choice(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    """(version, label) from ModelSpec's oneof; neither set means the latest available version."""
    if not spec.name:
        raise invalid("model_spec.name is required")
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def _answered_spec(name: str, version: int, signature: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature)
    spec.version.value = version
    return spec


def _fill_classifications(result: ClassifyResult, target: classification_pb2.ClassificationResult) -> None:
    for item in result.items:
        classes = target.classifications.add().classes
        classes.extend(classification_pb2.Class(label=name, score=score) for name, score in item.predictions)


def _fill_regressions(result: RegressResult, target: regression_pb2.RegressionResult) -> None:
    target.regressions.extend(regression_pb2.Regression(value=value) for value in result.values)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService: Predict, Classify, Regress, MultiInference, GetModelMetadata."""

    def __init__(self, core: ServingCore, max_message_bytes: int) -> None:
        self._core = core
        self._max_bytes = max_message_bytes

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        with rpc(context, spec.name, "predict") as track:
            version, label = version_choice(spec)
            signature = spec.signature_name or DEFAULT_SIGNATURE
            inputs = to_ndarrays(request.inputs, self._max_bytes)
            track.version, outputs = self._core.predict(spec.name, version, label, signature, inputs,
                                                        output_filter=list(request.output_filter) or None)
            response = predict_pb2.PredictResponse(model_spec=_answered_spec(spec.name, track.version, signature))
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(to_tensor_proto(value))
            return response

    def Classify(self, request: classification_pb2.ClassificationRequest,
                 context: grpc.ServicerContext) -> classification_pb2.ClassificationResponse:
        return self._on_examples(request, context, "classify", self._core.classify,
                                 classification_pb2.ClassificationResponse, _fill_classifications)

    def Regress(self, request: regression_pb2.RegressionRequest,
                context: grpc.ServicerContext) -> regression_pb2.RegressionResponse:
        return self._on_examples(request, context, "regress", self._core.regress,
                                 regression_pb2.RegressionResponse, _fill_regressions)

    def _on_examples(self, request: Any, context: grpc.ServicerContext, api: str, call: Callable[..., Any],
                     response_type: Callable[..., Any], fill: Callable[[Any, Any], None]) -> Any:
        """Classify and Regress: tf.Examples in, one core call, the result filled into the response."""
        spec = request.model_spec
        with rpc(context, spec.name, api) as track:
            version, label = version_choice(spec)
            result = call(spec.name, version, label, spec.signature_name or None, ExampleInput.from_proto(request.input))
            track.version = result.version
            response = response_type(model_spec=_answered_spec(spec.name, result.version, result.signature))
            fill(result, response.result)
            return response

    def MultiInference(self, request: inference_pb2.MultiInferenceRequest,
                       context: grpc.ServicerContext) -> inference_pb2.MultiInferenceResponse:
        name = request.tasks[0].model_spec.name if request.tasks else ""
        with rpc(context, name, "multi_inference") as track:
            tasks = [InferenceTask(task.model_spec.name, *version_choice(task.model_spec),
                                   task.model_spec.signature_name or None, task.method_name)
                     for task in request.tasks]
            results = self._core.multi_inference(tasks, ExampleInput.from_proto(request.input))
            response = inference_pb2.MultiInferenceResponse()
            for result in results:
                track.version = result.version
                entry = response.results.add(model_spec=_answered_spec(result.model, result.version,
                                                                       result.signature))
                if isinstance(result, RegressResult):
                    _fill_regressions(result, entry.regression_result)
                else:
                    _fill_classifications(result, entry.classification_result)
            return response

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        spec = request.model_spec
        with rpc(context, spec.name, "metadata") as track:
            version, label = version_choice(spec)
            if not request.metadata_field:
                raise invalid(f"GetModelMetadataRequest must name at least one metadata_field "
                              f"({SIGNATURE_DEF_FIELD!r})")
            unsupported = sorted(set(request.metadata_field) - {SIGNATURE_DEF_FIELD})
            if unsupported:
                raise invalid(f"metadata_field {unsupported} is not supported (only {SIGNATURE_DEF_FIELD!r})")
            track.version, defs = self._core.signature_defs(spec.name, version, label)
            response = get_model_metadata_pb2.GetModelMetadataResponse(
                model_spec=_answered_spec(spec.name, track.version))
            response.metadata[SIGNATURE_DEF_FIELD].Pack(defs)
            return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus with TF Serving's version states."""

    def __init__(self, core: ServingCore) -> None:
        self._core = core

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        spec = request.model_spec
        with rpc(context, spec.name, "status") as track:
            version, label = version_choice(spec)
            if label is not None:
                version = self._core.resolve_label(spec.name, label)
            track.version = version or ""
            response = get_model_status_pb2.GetModelStatusResponse()
            for status in self._core.model_status(spec.name, version):
                response.model_version_status.add(
                    version=status.version,
                    state=get_model_status_pb2.ModelVersionStatus.State.Value(status.state),
                    status=status_pb2.StatusProto(error_code=_ERROR_UNKNOWN if status.error else 0,
                                                  error_message=status.error))
            return response
