"""TF Serving's tensorflow_serving/model_servers/tensorflow_model_server_test.py, on our server.

Each test is one test method of that file (tensorflow/serving at 00e459f1), with its requests
built by the official `tensorflow-serving-api` stubs and its assertions. The model is served as
`default` (and `half_plus_two` / `half_plus_three` for testGoodModelConfig), version 123.

Out of scope, with the reason (also in docs/serving.md, "TF Serving conformance"):
- testPredictBatching, testPredictUpconvertedSavedModel: they serve a SessionBundle export, a
  format TensorFlow 2 can neither write nor read;
- testBadModelConfig: it checks TF Serving's text-proto parser message ("Invalid protobuf file");
  our --model-config-file is YAML;
- testGoodGrpcChannelArgs: the --grpc_channel_arguments flag is TF Serving's; not offered.
testGoodModelConfig runs with the same two models from our YAML model config.
"""
from __future__ import annotations

from typing import Any

import grpc
import pytest
import requests
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_status_pb2, inference_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from tests.conformance.conftest import VERSION

RPC_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def channel(tfs_server: Any) -> Any:
    with grpc.insecure_channel(tfs_server.grpc_target) as opened:
        yield opened


def _verify_model_spec(spec: Any, name: str, signature: str, version: int) -> None:
    assert (spec.name, spec.signature_name, spec.version.value) == (name, signature, version)


def _verify_predict(channel: Any, expected: float, model: str = "default", specify_output: bool = True) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, RPC_TIMEOUT)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1
    assert result.outputs["y"].float_val[0] == expected
    _verify_model_spec(result.model_spec, model, "serving_default", VERSION)


def _example_input(target: Any) -> None:
    target.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])


def test_testGetModelStatus(channel: Any) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    result = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, RPC_TIMEOUT)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == VERSION
    assert result.model_version_status[0].status.error_code == 0


def test_testClassify(channel: Any) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    _example_input(request.input)
    result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(request, RPC_TIMEOUT)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    _verify_model_spec(result.model_spec, "default", "classify_x_to_y", VERSION)


def test_testRegress(channel: Any) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    _example_input(request.input)
    result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Regress(request, RPC_TIMEOUT)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    _verify_model_spec(result.model_spec, "default", "regress_x_to_y", VERSION)


def test_testMultiInference(channel: Any) -> None:
    request = inference_pb2.MultiInferenceRequest()
    request.tasks.add().model_spec.name = "default"
    request.tasks[0].model_spec.signature_name = "regress_x_to_y"
    request.tasks[0].method_name = "tensorflow/serving/regress"
    request.tasks.add().model_spec.name = "default"
    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/classify"
    _example_input(request.input)
    result = prediction_service_pb2_grpc.PredictionServiceStub(channel).MultiInference(request, RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for index in range(2):
        _verify_model_spec(result.results[index].model_spec, request.tasks[index].model_spec.name,
                           request.tasks[index].model_spec.signature_name, VERSION)


def test_testPredictSavedModel(channel: Any) -> None:
    _verify_predict(channel, 3.0)
    _verify_predict(channel, 3.0, specify_output=False)


def test_testGoodModelConfig(channel: Any) -> None:
    for model, expected in (("half_plus_two", 3.0), ("half_plus_three", 4.0)):
        _verify_predict(channel, expected, model)
        _verify_predict(channel, expected, model, specify_output=False)


def _rest(server: Any, path: str, body: Any) -> Any:
    response = requests.post(server.rest_url + path, json=body, timeout=30) if body is not None \
        else requests.get(server.rest_url + path, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_testClassifyREST(tfs_server: Any) -> None:
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert _rest(tfs_server, "/v1/models/default:classify", body) == {"results": [[["", 3.0]]]}


def test_testRegressREST(tfs_server: Any) -> None:
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert _rest(tfs_server, "/v1/models/default:regress", body) == {"results": [3.0]}


def test_testPredictREST(tfs_server: Any) -> None:
    assert _rest(tfs_server, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]}) == \
        {"predictions": [3.0, 3.5, 4.0]}


def test_testPredictColumnarREST(tfs_server: Any) -> None:
    assert _rest(tfs_server, "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]}) == \
        {"outputs": [3.0, 3.5, 4.0]}


def test_testGetStatusREST(tfs_server: Any) -> None:
    answer = _rest(tfs_server, "/v1/models/default", None)
    for entry in answer["model_version_status"]:
        entry.pop("runtime")        # our documented addition (docs/serving.md)
    assert answer == {"model_version_status": [{"version": "123", "state": "AVAILABLE",
                                                "status": {"error_code": "OK", "error_message": ""}}]}


# ---- beyond TF Serving's files: the issue's own cases (a TF2 model, scalar outputs) -------------
def test_tf2_saved_model_over_grpc_and_rest(tfs_server: Any, channel: Any) -> None:
    _verify_predict(channel, 3.0, "half_plus_two_tf2")
    assert _rest(tfs_server, "/v1/models/half_plus_two_tf2:predict", {"instances": [[1.0], [2.0]]}) == \
        {"predictions": [[2.5], [3.0]]}


def test_scalar_output_is_answered(tfs_server: Any, channel: Any) -> None:
    assert _rest(tfs_server, "/v1/models/scalar:predict", {"inputs": [1.0, 2.0, 3.0]}) == \
        {"outputs": {"doubled": [2.0, 4.0, 6.0], "total": 6.0}}
    row = requests.post(tfs_server.rest_url + "/v1/models/scalar:predict", json={"instances": [1.0, 2.0]}, timeout=30)
    assert row.status_code == 400 and "no shape information" in row.json()["error"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "scalar"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.extend([1.0, 2.0])
    request.inputs["x"].tensor_shape.dim.add().size = 2
    result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, RPC_TIMEOUT)
    assert list(result.outputs["total"].float_val) == [3.0] and not result.outputs["total"].tensor_shape.dim


def test_official_client_metadata_on_half_plus_two(channel: Any) -> None:
    """The issue's Done-when: GetModelMetadata too, with the unchanged official client."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "default"
    result = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, RPC_TIMEOUT)
    defs = get_model_metadata_pb2.SignatureDefMap()
    assert result.metadata["signature_def"].Unpack(defs)
    assert {"serving_default", "regress_x_to_y", "classify_x_to_y"} <= set(defs.signature_def)
    assert defs.signature_def["serving_default"].inputs["x"].name == "x:0"
    assert result.model_spec.version.value == VERSION
