"""TF Serving's tensorflow_serving/util/json_tensor_test.cc against serving/json_tensor.py.

Each case is one checked call of that file (tensorflow/serving at 07451ec6), named
`<TEST name>/<n>`. TF Serving builds TensorProtos; our codec builds numpy arrays, so a case
compares dtype, shape and values (NaN equal to NaN). JSON answers are compared as documents
(numbers as numbers, as rapidjson's operator== does), or token by token where TF Serving compares
"all values as strings" (the float formatting cases). Error cases check the substring TF Serving
checks. The typed Classify/Regress cases run once (our Examples are the same for both).

Out of scope: TensorFromNonNullTerminatedBuffer (a C++ string_view over a buffer without NUL;
Python strings have no such thing) and StatusOK (MakeJsonFromStatus of OK writes nothing; we
never write an error body for a success).
"""
from __future__ import annotations

import json
import re
import sys
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow.core.example import example_pb2

from serving import json_tensor
from serving.errors import ServingError

I32, F32, F64, STR = np.dtype(np.int32), np.dtype(np.float32), np.dtype(np.float64), np.dtype(object)


def _predict(body: str, dtypes: dict[str, np.dtype]) -> json_tensor.PredictJson:
    return json_tensor.parse_predict(json_tensor.loads(body), lambda name: dtypes)


def _equal(array: np.ndarray, dtype: np.dtype, shape: list[int], values: list[Any]) -> None:
    assert array.dtype == dtype and list(array.shape) == shape
    flat = array.reshape(-1).tolist()
    if dtype == STR:
        assert flat == values
    else:
        np.testing.assert_array_equal(np.array(flat, dtype=dtype), np.array(values, dtype=dtype))


# (case, body, input dtypes, format, {input: (dtype, shape, values)})
REQUESTS = [
    ("SingleUnnamedTensor", '{"instances": [[1,2],[3,4],[5,6]]}', {"default": I32}, "row",
     {"default": (I32, [3, 2], [1, 2, 3, 4, 5, 6])}),
    ("MixedInputForFloatTensor", '{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', {"default": F32}, "row",
     {"default": (F32, [7], [1, 2, 3, 4, 5.003, 0.007, 0])}),
    ("MixedInputForDoubleTensor", '{"instances": [1.0, 2, 3, 4, 0.662, 0, 0.0]}', {"default": F64}, "row",
     {"default": (F64, [7], [1, 2, 3, 4, 0.662, 0, 0])}),
    ("SingleUnnamedTensorWithSignature", '{"signature_name": "predict_images", "instances": [[1,2]]}',
     {"default": I32}, "row", {"default": (I32, [1, 2], [1, 2])}),
    ("SingleUnnamedTensorBase64Scalars", '{"instances": [ { "b64" : "aGVsbG8=" }, { "b64": "d29ybGQ=" } ]}',
     {"default": STR}, "row", {"default": (STR, [2], [b"hello", b"world"])}),
    ("SingleUnnamedTensorBase64Lists", '{"instances": [ [{ "b64" : "aGVsbG8=" }], [{ "b64": "d29ybGQ=" }] ]}',
     {"default": STR}, "row", {"default": (STR, [2, 1], [b"hello", b"world"])}),
    ("SingleNamedTensorBase64",
     '{"instances": [{"default": [ [{ "b64" : "aGVsbG8=" }], [{ "b64": "d29ybGQ=" }] ]}]}',
     {"default": STR}, "row", {"default": (STR, [1, 2, 1], [b"hello", b"world"])}),
    ("MultipleNamedTensor",
     '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"], '
     '"float_tensor": [1.0, NaN], "dbl_tensor": [NaN]}, {"int_tensor": [[7,8],[9,0],[1,2]], '
     '"str_tensor": ["baz", "bat"], "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}',
     {"int_tensor": I32, "str_tensor": STR, "float_tensor": F32, "dbl_tensor": F64}, "row",
     {"int_tensor": (I32, [2, 3, 2], [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]),
      "str_tensor": (STR, [2, 2], [b"foo", b"bar", b"baz", b"bat"]),
      "float_tensor": (F32, [2, 2], [1.0, float("nan"), 2.0, float("inf")]),
      "dbl_tensor": (F64, [2, 1], [float("nan"), 2.0])}),
    ("SingleUnnamedTensorColumnarFormat/1", '{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}',
     {"int_tensor": I32}, "columnar", {"int_tensor": (I32, [1, 3, 2], [1, 2, 3, 4, 5, 6])}),
    ("SingleUnnamedTensorColumnarFormat/2", '{"inputs": [[[1,2],[3,4],[5,6]]]}',
     {"int_tensor": I32}, "columnar", {"int_tensor": (I32, [1, 3, 2], [1, 2, 3, 4, 5, 6])}),
    ("MultipleNamedTensorColumnarFormat",
     '{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]], "str_tensor": ["foo", "bar"], '
     '"bin_tensor": { "b64" : "aGVsbG8=" }}}',
     {"int_tensor": I32, "str_tensor": STR, "bin_tensor": STR}, "columnar",
     {"int_tensor": (I32, [1, 3, 2], [1, 2, 3, 4, 5, 6]), "str_tensor": (STR, [2], [b"foo", b"bar"]),
      "bin_tensor": (STR, [], [b"hello"])}),
]


@pytest.mark.parametrize("case, body, dtypes, fmt, expected", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_predict_request(case: str, body: str, dtypes: dict[str, np.dtype], fmt: str,
                         expected: dict[str, Any]) -> None:
    parsed = _predict(body, dtypes)
    assert parsed.format == fmt and set(parsed.inputs) == set(expected)
    if case == "SingleUnnamedTensorWithSignature":
        assert parsed.signature_name == "predict_images"
    for name, (dtype, shape, values) in expected.items():
        _equal(parsed.inputs[name], dtype, shape, values)


MULTI = {"int_tensor": I32, "str_tensor": STR}
REQUEST_ERRORS = [
    ("SingleUnnamedTensorErrors/1", "", {"default": I32}, "document is empty"),
    ("SingleUnnamedTensorErrors/2", '{"signature_name": 5, "instances": [[1,2],[3,4],[5,6,7]]}', {"default": I32},
     "must be a string value"),
    ("SingleUnnamedTensorErrors/3", '{"instances": [[1,2],[3,4],[5,6,7]], "inputs": [[1,2],[3,4],[5,6,7]]}',
     {"default": I32}, "Not formatted correctly"),
    ("SingleUnnamedTensorErrors/4", '{"instances": [[1,2],[3,4],[5,6,7]]}', {"default": I32}, "Expecting tensor size"),
    ("SingleUnnamedTensorErrors/5", '{"instances": [[1,2],[3,4],[[5,6]]]}', {"default": I32}, "Expecting shape"),
    ("SingleUnnamedTensorErrors/6", '{"instances": [1, [1]]}', {"default": I32}, "Expecting shape"),
    ("SingleUnnamedTensorErrors/7", '{"instances": [[1,2],["a", "b"]]}', {"default": I32}, "not of expected type"),
    ("SingleUnnamedTensorErrors/8", '{ "instances": [%r] }' % sys.float_info.max, {"default": F32},
     "loss of precision"),
    ("SingleUnnamedTensorErrors/9", '{ "instances": [16777217] }', {"default": F32}, "loss of precision"),
    ("SingleUnnamedTensorErrors/10", '{ "instances": [9007199254740993] }', {"default": F64}, "loss of precision"),
    ("MultipleNamedTensorErrors/1",
     '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]}, '
     '{"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}', MULTI, "Expecting shape"),
    ("MultipleNamedTensorErrors/2",
     '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6],[7,8]], "str_tensor": ["foo", "bar"]}, '
     '{"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"]}]}', MULTI, "Expecting tensor size"),
    ("MultipleNamedTensorErrors/3",
     '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]}, [1, 20, 30], '
     '{"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}', MULTI,
     "Expecting object but got list"),
    ("MultipleNamedTensorErrors/4", '{"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]}',
     {"str_tensor": STR}, "Expecting value/list but got object"),
]


@pytest.mark.parametrize("case, body, dtypes, text", REQUEST_ERRORS, ids=[r[0] for r in REQUEST_ERRORS])
def test_predict_request_error(case: str, body: str, dtypes: dict[str, np.dtype], text: str) -> None:
    with pytest.raises(ServingError) as error:
        _predict(body, dtypes)
    assert error.value.code == "INVALID_ARGUMENT" and text in error.value.message


def _tensors(**arrays: np.ndarray) -> dict[str, np.ndarray]:
    return arrays


INT_2x3x2 = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2], np.int32).reshape(2, 3, 2)
STR_2x2 = np.array([b"foo", b"bar", b"baz", b"bat"], object).reshape(2, 2)
BYTES_2x2 = np.array([b"hello", b"world", b"tf", b"serving"], object).reshape(2, 2)
MULTIPLE = _tensors(int_tensor=INT_2x3x2, str_tensor=STR_2x2, float_tensor=np.array([[1.0], [2.0]], np.float32),
                    double_scalar_tensor=np.array([8.0, 9.0]), str_tensor_bytes=BYTES_2x2)
B64 = [[{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}], [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]
NESTED = [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]
# (case, tensors, format, expected JSON document, or a str: tokens compared as strings)
RESPONSES = [
    ("FromJsonSingleTensor/1", _tensors(int_tensor=INT_2x3x2), "row", {"predictions": NESTED}),
    ("FromJsonSingleTensor/2", _tensors(int_tensor=INT_2x3x2), "columnar", {"outputs": NESTED}),
    ("FromJsonSingleScalarTensor/1", _tensors(int_tensor=np.arange(1, 6, dtype=np.int32)), "row",
     {"predictions": [1, 2, 3, 4, 5]}),
    ("FromJsonSingleScalarTensor/2", _tensors(int_tensor=np.arange(1, 6, dtype=np.int32)), "columnar",
     {"outputs": [1, 2, 3, 4, 5]}),
    ("FromJsonSingleBytesTensor", _tensors(str_tensor_bytes=BYTES_2x2), "row", {"predictions": B64}),
    ("FromJsonSingleFloatTensorSixDigitPrecision",
     _tensors(float_tensor=np.array([9000000, 999999, 0.5, .0003, .00003, 555557.5], np.float32).reshape(2, 3)),
     "row", '{"predictions": [[9e+06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]}'),
    ("FromJsonSingleFloatTensorNonFinite",
     _tensors(float_tensor=np.array([np.nan, np.inf, 3, -np.inf], np.float32).reshape(2, 2)),
     "row", '{"predictions": [[NaN, Infinity], [3.0, -Infinity]]}'),
    ("FromJsonMultipleNamedTensors/1", MULTIPLE, "row", {"predictions": [
        {"double_scalar_tensor": 8.0, "float_tensor": [1.0], "int_tensor": NESTED[0], "str_tensor": ["foo", "bar"],
         "str_tensor_bytes": B64[0]},
        {"double_scalar_tensor": 9.0, "float_tensor": [2.0], "int_tensor": NESTED[1], "str_tensor": ["baz", "bat"],
         "str_tensor_bytes": B64[1]}]}),
    ("FromJsonMultipleNamedTensors/2", MULTIPLE, "columnar", {"outputs": {
        "double_scalar_tensor": [8.0, 9.0], "float_tensor": [[1.0], [2.0]], "int_tensor": NESTED,
        "str_tensor": [["foo", "bar"], ["baz", "bat"]], "str_tensor_bytes": B64}}),
    ("FromJsonSingleZeroBatchTensor", _tensors(int_tensor=np.zeros((0, 2), np.int32)), "row", {"predictions": []}),
    ("FromJsonMultipleZeroBatchTensors",
     _tensors(str_tensor=np.zeros((0, 1, 2), object), float_tensor=np.zeros((0, 3, 4), np.float32)), "row",
     {"predictions": []}),
]

_TOKEN = re.compile(r'-?(?:NaN|Infinity|[0-9][0-9.e+-]*)|"[^"]*"')


@pytest.mark.parametrize("case, tensors, fmt, expected", RESPONSES, ids=[r[0] for r in RESPONSES])
def test_predict_response(case: str, tensors: dict[str, np.ndarray], fmt: str, expected: Any) -> None:
    text = json_tensor.predict_json(tensors, fmt)
    if isinstance(expected, str):
        assert _TOKEN.findall(text) == _TOKEN.findall(expected)
    else:
        assert json.loads(text) == expected


RESPONSE_ERRORS = [
    ("FromJsonSingleTensorErrors/1", {}, "empty tensor map"),
    ("FromJsonSingleTensorErrors/2", _tensors(tensor=np.array([1.0, 2.0], np.complex64)), "tensor type: complex64"),
    ("FromJsonSingleTensorErrors/3", _tensors(tensor=np.array(1, np.int32)), "no shape information"),
    ("FromJsonMultipleNamedTensorsErrors",
     _tensors(int_tensor=np.arange(6, dtype=np.int32).reshape(2, 3), str_tensor=np.array([[b"foo", b"bar", b"baz"]],
                                                                                         object)),
     "inconsistent batch size"),
    ("FromJsonMultipleZeroBatchTensorsErrors",
     _tensors(int_tensor=np.zeros((0, 2), np.int32), str_tensor=np.array([[b"foo", b"bar"]], object)),
     "inconsistent batch size"),
]


@pytest.mark.parametrize("case, tensors, text", RESPONSE_ERRORS, ids=[r[0] for r in RESPONSE_ERRORS])
def test_predict_response_error(case: str, tensors: dict[str, np.ndarray], text: str) -> None:
    with pytest.raises(ServingError) as error:
        json_tensor.predict_json(tensors, "row")
    assert error.value.code == "INVALID_ARGUMENT" and text in error.value.message


NO_CONTEXT = """
  examples { features {
    feature { key: "names" value { bytes_list { value: "foo" value: "bar" } } }
    feature { key: "ratings" value { float_list { value: 8.0 value: 9.0 } } }
    feature { key: "age" value { int64_list { value: 20 } } } } }
  examples { features {
    feature { key: "names" value { bytes_list { value: "baz" } } }
    feature { key: "ratings" value { float_list { value: 6.0 } } } } }
"""
WITH_CONTEXT = """
  examples { features {
    feature { key: "names" value { bytes_list { value: "foo" value: "bar" } } }
    feature { key: "ratings" value { float_list { value: 8.0 value: 9.0 value: NaN value: Infinity } } }
    feature { key: "age" value { int64_list { value: 20 } } } } }
  examples { features {
    feature { key: "names" value { bytes_list { value: "baz" value: "hello" } } }
    feature { key: "ratings" value { float_list { value: 6.0 } } }
    feature { key: "intboolmix" value { int64_list { value: 1 value: 1 value: 0 } } } } }
  examples { features {
    feature { key: "names" value { bytes_list { value: "bar" } } }
    feature { key: "ratings" value { float_list { value: -Infinity } } } } }
"""
CONTEXT = """features {
    feature { key: "query" value { bytes_list { value: "pizza" } } }
    feature { key: "location" value { bytes_list { value: "sfo" } } } }"""


def _example_list(text: str) -> list[example_pb2.Example]:
    from tensorflow_serving.apis import input_pb2

    holder = input_pb2.ExampleList()
    text_format.Parse(text, holder)
    return list(holder.examples)


def _same_examples(got: list[example_pb2.Example], expected: list[example_pb2.Example]) -> None:
    """Equal feature by feature, NaN equal to NaN (TF Serving's treat_nan_as_equal comparator)."""
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        assert set(mine.features.feature) == set(theirs.features.feature)
        for key, feature in theirs.features.feature.items():
            ours = mine.features.feature[key]
            assert ours.WhichOneof("kind") == feature.WhichOneof("kind")
            kind = feature.WhichOneof("kind")
            np.testing.assert_array_equal(np.array(getattr(ours, kind).value), np.array(getattr(feature, kind).value))


def test_RequestNoContext() -> None:
    parsed = json_tensor.parse_examples(json_tensor.loads(
        '{"examples": [{"names": [ "foo", "bar" ], "ratings": [ 8.0, 9.0 ], "age": 20}, '
        '{"names": [ "baz" ], "ratings": 6.0}]}'))
    assert parsed.signature_name == "" and parsed.context is None
    _same_examples(parsed.examples, _example_list(NO_CONTEXT))


def test_RequestWithContextAndSignature() -> None:
    parsed = json_tensor.parse_examples(json_tensor.loads(
        '{"signature_name": "custom_signture", "context": {"query": "pizza", "location": [ "sfo" ]}, '
        '"examples": [{"names": [ "foo", "bar" ], "ratings": [ 8.0, 9.0, NaN, Infinity ], "age": 20}, '
        '{"names": [ "baz", { "b64": "aGVsbG8=" } ], "ratings": 6.0, "intboolmix": [ 1, true, false ]}, '
        '{"names": "bar", "ratings": -Infinity}]}'))
    assert parsed.signature_name == "custom_signture"
    context = example_pb2.Example()
    text_format.Parse(CONTEXT, context)
    _same_examples([parsed.context], [context])
    _same_examples(parsed.examples, _example_list(WITH_CONTEXT))


EXAMPLE_ERRORS = [
    ('{"signature_name": [ "hello" ], "examples": [ { "names": [ "foo", "bar" ] } ]}',
     "'signature_name' key must be a string"),
    ('{"context": [ { "names": [ "foo", "bar" ] } ]}', "Example must be JSON object"),
    ('{"examples": { "names": [ "foo", "bar" ] }}', "list/array"),
    ('{"examples": [ [ { "names": [ "foo", "bar" ] } ] ]}', "Example must be JSON object"),
    ('{"examples": [ { "names": [ 10, null ] } ]}', "names has element with unexpected JSON type: Null"),
    ('{"examples": [ { "names": [ 10, 10.0 ] } ]}', "feature: names expecting type: int64"),
    ('{"examples": [ { "names": [ 10, { "test": 10 } ] } ]}', "names has element with unexpected JSON type: Object"),
    ('{"examples": [ { "names": [ [10], 20 ] } ]}', "names has element with unexpected JSON type: Array"),
    ('{"examples": [ { "names": [ 20, 18446744073709551603 ] } ]}', "Only int64 is supported"),
    ('{ "examples": [ { "names": %r } ] }' % sys.float_info.max, "loss of precision"),
]


@pytest.mark.parametrize("body, text", EXAMPLE_ERRORS, ids=[f"JsonErrors/{i + 1}" for i in range(len(EXAMPLE_ERRORS))])
def test_examples_error(body: str, text: str) -> None:
    with pytest.raises(ServingError) as error:
        json_tensor.parse_examples(json_tensor.loads(body))
    assert error.value.code == "INVALID_ARGUMENT" and text in error.value.message


def test_JsonFromClassificationResult() -> None:
    text = json_tensor.classification_json([[("car", 0.2), ("bike", 0.7), ("bus", 0.1)],
                                            [("car", 0.7), ("bike", 0.1), ("bus", 0.2)]])
    assert json.loads(text) == {"results": [[["car", 0.2], ["bike", 0.7], ["bus", 0.1]],
                                            [["car", 0.7], ["bike", 0.1], ["bus", 0.2]]]}


def test_JsonFromRegressionResult() -> None:
    assert json.loads(json_tensor.regression_json([0.2, 0.9, 1.0])) == {"results": [0.2, 0.9, 1.0]}


def test_JsonFromRegressionResultWithNonFinite() -> None:
    text = json_tensor.regression_json([0.2, float("inf"), 1.0, float("-inf"), float("nan")])
    assert _TOKEN.findall(text) == _TOKEN.findall('{ "results": [ 0.2, Infinity, 1.0, -Infinity, NaN ] }')


@pytest.mark.parametrize("function, text", [(json_tensor.classification_json, "empty ClassificationResults"),
                                            (json_tensor.regression_json, "empty RegressionResults")],
                         ids=["JsonFromResultErrors/1", "JsonFromResultErrors/2"])
def test_JsonFromResultErrors(function: Any, text: str) -> None:
    with pytest.raises(ServingError) as error:
        function([])
    assert error.value.code == "INVALID_ARGUMENT" and text in error.value.message


@pytest.mark.parametrize("message", ['Bad key: "key"', "Bad key: 'key'"], ids=["StatusError/1", "StatusError/2"])
def test_StatusError(message: str) -> None:
    assert json.loads(json_tensor.error_json(message)) == {"error": message}
