"""TF Serving's tensorflow_serving/model_servers/http_rest_api_handler_test.cc, over real HTTP.

Each case is one `ProcessRequest` call of that file (tensorflow/serving at 49ac8acb), named
`<TEST_F name>/<n>`; the expected status is its errors::Is* (InvalidArgument = 400, NotFound =
404, OK = 200), the expected text its HasSubstr, the expected body its CompareJson (numbers
compared as numbers, as rapidjson's operator== does) and the Content-Type header its
UnorderedElementsAreArray. `kPathRegex` tests the handler's routing regex; here it is which paths
the REST API answers at all.

One documented difference (docs/serving.md, "TF Serving conformance"): a loaded version's status
carries our `runtime` block; GetStatus compares the rest exactly and checks that `runtime` is the
only addition.
"""
from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conformance.conftest import HTTP_MODEL, VERSION, VERSION_LABEL

M = HTTP_MODEL
STATUS = {"model_version_status": [{"version": str(VERSION), "state": "AVAILABLE",
                                    "status": {"error_code": "OK", "error_message": ""}}]}


def _info(name: str, dtype: str, dims: list[int] | None) -> dict[str, Any]:
    """A TensorInfo as TF Serving prints it: every field, int64 sizes as strings."""
    shape = {"dim": [], "unknown_rank": True} if dims is None else \
        {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}
    return {"dtype": dtype, "tensor_shape": shape, "name": name}


def _signature(inputs: dict[str, Any], outputs: dict[str, Any], method: str) -> dict[str, Any]:
    return {"inputs": inputs, "outputs": outputs, "method_name": f"tensorflow/serving/{method}", "defaults": {}}


# What saved_model_half_plus_two_2_versions_metadata.json (TF Serving's testdata) holds, rebuilt
# from its parts: the tf_example input of unknown rank, every float tensor [-1, 1].
EXAMPLES = {"inputs": _info("tf_example:0", "DT_STRING", None)}
METADATA = {
    "model_spec": {"name": M, "signature_name": "", "version": str(VERSION)},
    "metadata": {"signature_def": {"signature_def": {
        "serving_default": _signature({"x": _info("x:0", "DT_FLOAT", [-1, 1])},
                                      {"y": _info("y:0", "DT_FLOAT", [-1, 1])}, "predict"),
        "regress_x_to_y": _signature(EXAMPLES, {"outputs": _info("y:0", "DT_FLOAT", [-1, 1])}, "regress"),
        "regress_x_to_y2": _signature(EXAMPLES, {"outputs": _info("y2:0", "DT_FLOAT", [-1, 1])}, "regress"),
        "regress_x2_to_y3": _signature({"inputs": _info("x2:0", "DT_FLOAT", [-1, 1])},
                                       {"outputs": _info("y3:0", "DT_FLOAT", [-1, 1])}, "regress"),
        "classify_x_to_y": _signature(EXAMPLES, {"scores": _info("y:0", "DT_FLOAT", [-1, 1])}, "classify"),
        "classify_x2_to_y3": _signature({"inputs": _info("x2:0", "DT_FLOAT", [-1, 1])},
                                        {"scores": _info("y3:0", "DT_FLOAT", [-1, 1])}, "classify"),
    }}}}

# (case, method, path, body, status, expected: str = substring of the error, dict = whole JSON body)
CASES: list[tuple[str, str, str, str, int, Any]] = [
    ("kPathRegex/1", "GET", "/v1/models", "", 400, "Missing model name"),
    ("kPathRegex/2", "GET", "/statuspage", "", 404, None),
    ("kPathRegex/3", "GET", "/index", "", 404, None),
    ("UnsupportedApiCalls/1", "GET", "/v1/foo", "", 400, "Malformed request"),
    ("UnsupportedApiCalls/2", "POST", "/v1/foo", "", 400, "Malformed request"),
    ("UnsupportedApiCalls/3", "GET", "/v1/models", "", 400, "Missing model name"),
    ("UnsupportedApiCalls/4", "GET", "/v1/models/debug/model_name", "", 400, "Malformed request"),
    ("UnsupportedApiCalls/5", "POST", "/v1/models", "", 400, "Malformed request"),
    ("UnsupportedApiCalls/6", "GET", "/v1/models/foo:predict", "", 400, "Malformed request"),
    ("UnsupportedApiCalls/7", "GET", "/v1/models/foo/version/50:predict", "", 400, "Malformed request"),
    ("UnsupportedApiCalls/8", "POST", "/v1/models/foo/version/50:regress", "", 400, "Malformed request"),
    ("UnsupportedApiCalls/9", "POST", "/v1/models/foo/versions/HELLO:regress", "", 400, "Malformed request"),
    ("UnsupportedApiCalls/10", "POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "", 400,
     "Failed to convert version"),
    ("UnsupportedApiCalls/11", "POST", "/v1/models/foo/metadata", "", 400, "Malformed request"),
    ("UnsupportedApiCalls/12", "POST", "/v1/models/foo/label/some_label:regress", "", 400, "Malformed request"),
    ("UnsupportedApiCalls/13", "POST", "/v1/models/foo/versions/50/labels/some_label:regress", "", 400,
     "Malformed request"),
    ("UnsupportedApiCalls/14", "POST", "/v1/models/foo/versions/some_label:regress", "", 400, "Malformed request"),
    ("PredictModelNameVersionErrors/1", "POST", "/v1/models/foo:predict", '{ "instances": [1] }', 404, ""),
    ("PredictModelNameVersionErrors/2", "POST", "/v1/models/foo/versions/50:predict", '{ "instances": [1] }', 404, ""),
    ("PredictModelNameVersionErrors/3", "POST", f"/v1/models/{M}99:predict", '{ "instances": [1] }', 404, ""),
    ("PredictRequestErrors/1", "POST", f"/v1/models/{M}:predict", "", 400, "JSON Parse error: The document is empty"),
    ("PredictRequestErrors/2", "POST", f"/v1/models/{M}:predict", "instances = [1, 2]", 400,
     "JSON Parse error: Invalid value"),
    ("PredictRequestErrors/3", "POST", f"/v1/models/{M}:predict", '{ "instances": ["x", "y"] }', 400,
     "not of expected type: float"),
    ("PredictRequestErrors/4", "POST", f"/v1/models/{M}/labels/Version_Nonexistent:predict",
     '{ "instances": ["x", "y"] }', 400, "Unrecognized servable version label"),
    ("PredictRequestErrors/5", "POST", f"/v1/models/{M}:predict", '{ "signature_name": 100 }', 400,
     "'signature_name' key must be a string value."),
    ("Predict/1", "POST", f"/v1/models/{M}:predict", '{"instances": [[1.0, 2.0], [3.0, 4.0]]}', 200,
     {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
    ("Predict/2", "POST", f"/v1/models/{M}/versions/{VERSION}:predict", '{"instances": [1.0, 2.0]}', 200,
     {"predictions": [2.5, 3.0]}),
    ("Predict/3", "POST", f"/v1/models/{M}/labels/{VERSION_LABEL}:predict", '{"instances": [1.0, 2.0]}', 200,
     {"predictions": [2.5, 3.0]}),
    ("Predict/4", "POST", f"/v1/models/{M}/versions/{VERSION}:predict",
     '{"signature_name": "serving_default", "instances": [3.0, 4.0]}', 200, {"predictions": [3.5, 4.0]}),
    ("Predict/5", "POST", f"/v1/models/{M}/versions/{VERSION}:predict",
     '{"signature_name": "serving_default", "inputs": [3.0, 4.0]}', 200, {"outputs": [3.5, 4.0]}),
    ("Regress/1", "POST", f"/v1/models/{M}:regress",
     '{"signature_name": "regress_x_to_y", "examples": [ { "x": 80.0 } ] }', 200, {"results": [42]}),
    ("Regress/2", "POST", f"/v1/models/{M}/versions/{VERSION}:regress",
     '{"signature_name": "regress_x_to_y", "examples": [ { "x": 80.0 } ] }', 200, {"results": [42]}),
    ("Regress/3", "POST", f"/v1/models/{M}/labels/{VERSION_LABEL}:regress",
     '{"signature_name": "regress_x_to_y", "examples": [ { "x": 80.0 } ] }', 200, {"results": [42]}),
    ("Classify/1", "POST", f"/v1/models/{M}:classify",
     '{"signature_name": "classify_x_to_y", "examples": [ { "x": 20.0 } ] }', 200, {"results": [[["", 12]]]}),
    ("Classify/2", "POST", f"/v1/models/{M}/labels/{VERSION_LABEL}:classify",
     '{"signature_name": "classify_x_to_y", "examples": [ { "x": 10.0 } ] }', 200, {"results": [[["", 7]]]}),
    ("GetStatus/1", "GET", f"/v1/models/{M}", "", 200, STATUS),
    ("GetStatus/2", "GET", f"/v1/models/{M}/versions/{VERSION}", "", 200, STATUS),
    ("GetStatus/3", "GET", f"/v1/models/{M}/labels/{VERSION_LABEL}", "", 200, STATUS),
    ("GetModelMetadata/1", "GET", f"/v1/models/{M}/metadata", "", 200, METADATA),
]


def _without_runtime(body: Any) -> Any:
    """The status JSON without our `runtime` addition (checked to be the only one)."""
    for entry in body.get("model_version_status", []):
        assert set(entry) - {"version", "state", "status"} <= {"runtime"}
        entry.pop("runtime", None)
    return body


@pytest.mark.parametrize("case, method, path, body, status, expected", CASES, ids=[c[0] for c in CASES])
def test_case(tfs_server: Any, case: str, method: str, path: str, body: str, status: int, expected: Any) -> None:
    response = requests.request(method, tfs_server.rest_url + path, data=body.encode(), timeout=30)
    assert response.status_code == status, response.text
    if status == 404 and expected is None:
        return                                   # not an API path: nothing of TF Serving's to check
    assert response.headers["Content-Type"] == "application/json"
    answer = response.json()
    if isinstance(expected, str):
        assert expected in answer["error"]
    else:
        assert (_without_runtime(answer) if case.startswith("GetStatus") else answer) == expected


# The cases whose answer does not depend on half_plus_two, replayed on our own image model.
MODEL_INDEPENDENT = [c for c in CASES if c[0].split("/")[0] in ("kPathRegex", "UnsupportedApiCalls",
                                                                "PredictModelNameVersionErrors")
                     or c[0] in ("PredictRequestErrors/1", "PredictRequestErrors/2", "PredictRequestErrors/4",
                                 "PredictRequestErrors/5")]


@pytest.mark.parametrize("case, method, path, body, status, expected", MODEL_INDEPENDENT,
                         ids=[c[0] for c in MODEL_INDEPENDENT])
def test_case_on_an_image_model(image_server: Any, case: str, method: str, path: str, body: str, status: int,
                                expected: Any) -> None:
    test_case(image_server, case, method, path.replace(M, "tiny"), body, status, expected)
