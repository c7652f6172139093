"""Send one image (or one raw body) over each protocol and return what came back, uniformly.

An `Answer` is (protocol, status, probabilities or None, message). `server_fault` is the property
every fuzz test checks: no 5xx on REST, no INTERNAL / UNKNOWN / DATA_LOSS / UNAVAILABLE on gRPC.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import requests
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.protos import image_classifier_pb2, image_classifier_pb2_grpc

MODEL = "tiny"
LABELS = ["cat", "dog", "pizza"]
GRPC_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS,
               grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass
class Answer:
    protocol: str
    status: Any                       # int (REST) or grpc.StatusCode
    probabilities: np.ndarray | None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (200, grpc.StatusCode.OK)

    @property
    def server_fault(self) -> bool:
        if isinstance(self.status, int):
            return self.status >= 500
        return self.status in GRPC_FAULTS


def rest_classify_image(url: str, data: bytes, content_type: str = "application/octet-stream") -> Answer:
    reply = requests.post(f"{url}/v1/models/{MODEL}:classify_image?top_k=3", data=data,
                          headers={"Content-Type": content_type}, timeout=60)
    if reply.status_code != 200:
        return Answer("rest classify_image", reply.status_code, None, reply.text[:200])
    probabilities = np.zeros(len(LABELS), np.float32)
    for item in reply.json()["predictions"]:
        probabilities[LABELS.index(item["label"])] = item["score"]
    return Answer("rest classify_image", 200, probabilities)


def rest_predict(url: str, data: bytes) -> Answer:
    body = {"instances": [{"b64": base64.b64encode(data).decode()}]}
    return rest_predict_body(url, body)


def rest_predict_body(url: str, body: Any, raw: bytes | None = None, path: str = f"{MODEL}:predict") -> Answer:
    if raw is None:
        reply = requests.post(f"{url}/v1/models/{path}", json=body, timeout=60)
    else:
        reply = requests.post(f"{url}/v1/models/{path}", data=raw, timeout=60,
                              headers={"Content-Type": "application/json"})
    if reply.status_code != 200:
        return Answer("rest predict", reply.status_code, None, reply.text[:200])
    predictions = reply.json()["predictions"]
    first = predictions[0] if isinstance(predictions, list) and predictions else {}
    value = first.get("probabilities") if isinstance(first, dict) else None
    return Answer("rest predict", 200, None if value is None else np.array(value, np.float32))


def grpc_predict_tensor(channel: grpc.Channel, name: str, tensor: tensor_pb2.TensorProto,
                        model: str = MODEL, signature: str = "serving_default") -> Answer:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs[name].CopyFrom(tensor)
    try:
        reply = stub.Predict(request, timeout=60)
    except grpc.RpcError as error:
        return Answer("grpc Predict", error.code(), None, error.details() or "")
    value = reply.outputs.get("probabilities")
    return Answer("grpc Predict", grpc.StatusCode.OK, None if value is None else tf.make_ndarray(value)[0])


def grpc_predict(channel: grpc.Channel, data: bytes) -> Answer:
    return grpc_predict_tensor(channel, "image_bytes", tf.make_tensor_proto([data], dtype=tf.string))


def grpc_classify(channel: grpc.Channel, data: bytes, model: str = MODEL) -> Answer:
    stub = image_classifier_pb2_grpc.ImageClassifierStub(channel)
    try:
        reply = stub.Classify(image_classifier_pb2.ClassifyRequest(model_name=model, image=data), timeout=60)
    except grpc.RpcError as error:
        return Answer("grpc Classify", error.code(), None, error.details() or "")
    probabilities = np.zeros(len(LABELS), np.float32)
    for item in reply.predictions:
        probabilities[LABELS.index(item.label)] = item.score
    return Answer("grpc Classify", grpc.StatusCode.OK, probabilities)


def every_protocol(url: str, channel: grpc.Channel, data: bytes) -> list[Answer]:
    return [rest_classify_image(url, data), rest_predict(url, data), grpc_predict(channel, data),
            grpc_classify(channel, data)]
