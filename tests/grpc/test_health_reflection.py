"""grpc.health.v1.Health and server reflection on the real server (what grpcurl and k8s probes use)."""
from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.grpc.conftest import MODEL

SERVICES = {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "transfer_serving.v1.ImageClassifier", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"}


@pytest.mark.parametrize("service", ["", MODEL, "tensorflow.serving.PredictionService",
                                     "transfer_serving.v1.ImageClassifier"])
def test_health_is_serving_when_ready(channel, service) -> None:
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_health_of_an_unknown_service_is_not_found(channel) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_every_service(channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    [response] = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                           timeout=10)
    assert {s.name for s in response.list_services_response.service} == SERVICES


def test_reflection_describes_our_service_and_tf_servings(channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    ours = database.FindFileContainingSymbol("transfer_serving.v1.ImageClassifier")
    assert isinstance(ours, descriptor_pb2.FileDescriptorProto)
    [service] = [s for s in ours.service if s.name == "ImageClassifier"]
    assert {m.name for m in service.method} == {"Classify", "ClassifyBatch", "Feedback"}
    tfs = database.FindFileContainingSymbol("tensorflow.serving.PredictionService")
    [prediction] = [s for s in tfs.service if s.name == "PredictionService"]
    assert {"Predict", "Classify", "GetModelMetadata"} <= {m.name for m in prediction.method}
