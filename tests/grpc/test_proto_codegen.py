"""The checked-in generated code of proto/ must be exactly what grpcio-tools generates now."""
from __future__ import annotations

import shutil
from pathlib import Path

from scripts import gen_proto


def test_checked_in_code_matches_the_proto() -> None:
    assert gen_proto.proto_files(), "no .proto found under proto/"
    assert gen_proto.stale_files() == [], "run `make proto` and commit serving/protos/"


def test_an_edited_proto_is_detected(tmp_path: Path) -> None:
    """The check can fail: add a field to a copy of the proto and compare against checked-in code."""
    root = tmp_path / "proto"
    shutil.copytree(gen_proto.PROTO_ROOT, root)
    proto = root / gen_proto.proto_files()[0]
    text = proto.read_text()
    proto.write_text(text.replace("message Prediction {", "message Prediction {\n  string extra = 99;", 1))
    assert "image_classifier_pb2.py" in gen_proto.stale_files(gen_proto.OUT_DIR, root)


def test_generated_modules_import_and_round_trip() -> None:
    from serving.protos import image_classifier_pb2 as pb, image_classifier_pb2_grpc as pb_grpc

    request = pb.ClassifyRequest(model_name="m", version_label="stable", image=b"\x89PNG", top_k=2)
    assert pb.ClassifyRequest.FromString(request.SerializeToString()) == request
    assert request.WhichOneof("version_choice") == "version_label"
    assert hasattr(pb_grpc, "ImageClassifierStub") and hasattr(pb_grpc, "add_ImageClassifierServicer_to_server")
