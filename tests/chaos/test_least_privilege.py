"""Least privilege, checked on the real server process and on the shipped manifests.

- the admin (retrain) routes need the bearer token, on every method, and are off without one;
  there is no reload endpoint to abuse (gRPC HandleReloadConfigRequest is UNIMPLEMENTED) and no
  gunicorn control socket;
- retrain data paths cannot leave the data root (`..`, absolute paths, symlinks);
- request, message and pixel limits hold on both protocols;
- the serving container runs as a non-root user with a read-only root filesystem.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterator

import grpc
import pytest
import requests
import tensorflow as tf
import yaml
from PIL import Image
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from tests.conftest import REPO
from tests.fuzz import clients
from tests.fuzz.images import png_raw, zlib_bomb_png
from tests.helpers import export_tiny, image_bytes
from tests.server_process import ServerHandle, start_server

TOKEN = "chaos-admin-token-7f3a"
LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("privilege")
    export_tiny(root / "models" / "tiny", seed=4)
    (root / "data" / "pets").mkdir(parents=True)
    (root / "data" / "escape").symlink_to("/etc")
    (root / "token").write_text(TOKEN + "\n")
    os.chmod(root / "token", 0o600)
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerHandle]:
    with start_server("--model-name", "tiny", "--model-base-path", str(root / "models" / "tiny"),
                      "--admin-token-file", str(root / "token"), "--data-root", str(root / "data"),
                      "--jobs-dir", str(root / "jobs"), "--max-request-bytes", str(LIMIT),
                      "--max-image-pixels", "1000000") as handle:
        yield handle


ADMIN_ROUTES = [("POST", "/v1/models/tiny:retrain"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/abc"),
                ("DELETE", "/v1/jobs/abc")]
BAD_AUTH = [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", f"bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
            "Bearer " + "A" * 4000, f"Token {TOKEN}"]


@pytest.mark.parametrize("method,path", ADMIN_ROUTES)
def test_admin_routes_need_the_token(server: ServerHandle, method: str, path: str) -> None:
    for auth in BAD_AUTH:
        headers = {} if auth is None else {"Authorization": auth}
        reply = requests.request(method, server.rest_url + path, headers=headers, json={"data": "pets"}, timeout=10)
        assert reply.status_code == 401, (auth, reply.status_code, reply.text)
        assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert TOKEN not in reply.text
    reply = requests.request(method, f"{server.rest_url}{path}?token={TOKEN}&access_token={TOKEN}", timeout=10)
    assert reply.status_code == 401, "a token in the query string must not count"
    assert TOKEN not in server.log(), "the token was logged"


def test_retrain_data_paths_stay_under_the_data_root(server: ServerHandle) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for data in ("../token", "/etc", "pets/../../token", "escape", "escape/ssl", "%2e%2e/token", "pets/\x00x"):
        reply = requests.post(f"{server.rest_url}/v1/models/tiny:retrain", headers=headers,
                              json={"data": data}, timeout=10)
        assert reply.status_code == 400, (data, reply.status_code, reply.text)
    reply = requests.post(f"{server.rest_url}/v1/models/..%2Ftiny:retrain", headers=headers,
                          json={"data": "pets"}, timeout=10)
    assert reply.status_code in (400, 404), reply.text


def test_retrain_is_off_without_a_token_file(tmp_path: Path) -> None:
    export_tiny(tmp_path / "tiny", seed=5)
    with start_server("--model-name", "tiny", "--model-base-path", str(tmp_path / "tiny"), grpc=False) as bare:
        for method, path in ADMIN_ROUTES:
            reply = requests.request(method, bare.rest_url + path, headers={"Authorization": "Bearer x"}, timeout=10)
            assert reply.status_code == 401, (path, reply.text)


def test_no_reload_endpoint_and_no_control_socket(server: ServerHandle) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    for path in ("/v1/reload", "/v1/models/tiny:reload", "/v1/config"):
        # no such route: a /v1 path TF Serving does not route answers its 400 "Malformed request"
        reply = requests.post(server.rest_url + path, timeout=10)
        assert reply.status_code in (400, 404, 405) and "Malformed request" in reply.text, (path, reply.text)
    assert "Control socket listening" not in server.log()


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_request_message_and_pixel_limits_on_both_protocols(server: ServerHandle) -> None:
    with grpc.insecure_channel(server.grpc_target, options=[("grpc.max_send_message_length", 8 * LIMIT)]) as channel:
        big = b"\xff\xd8" + b"\x00" * (LIMIT + 10)
        assert requests.post(f"{server.rest_url}/v1/models/tiny:classify_image", data=big,
                             headers={"Content-Type": "image/jpeg"}, timeout=30).status_code == 413
        assert requests.post(f"{server.rest_url}/v1/models/tiny:predict", timeout=30,
                             data=b'{"instances": ["' + b"A" * LIMIT + b'"]}').status_code == 413
        assert clients.grpc_predict(channel, big).status == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert clients.grpc_classify(channel, big).status == grpc.StatusCode.RESOURCE_EXHAUSTED
        for image in (_jpeg(1001, 1000), zlib_bomb_png(1500), png_raw(100000, 100000, b"")):
            for answer in (clients.rest_classify_image(server.rest_url, image), clients.rest_predict(server.rest_url, image),
                           clients.grpc_predict(channel, image), clients.grpc_classify(channel, image)):
                assert answer.status in (400, grpc.StatusCode.INVALID_ARGUMENT), answer
                assert "pixel" in answer.message, answer
        assert clients.grpc_predict(channel, _jpeg(1000, 1000)).ok       # exactly at the limit
        many = tf.make_tensor_proto([image_bytes(1)] * 3, dtype=tf.string)
        assert clients.grpc_predict_tensor(channel, "image_bytes", many).ok


def test_serving_container_is_non_root_with_read_only_root_filesystem() -> None:
    documents = list(yaml.safe_load_all((REPO / "k8s" / "deployment.yaml").read_text()))
    deployment = next(d for d in documents if d and d.get("kind") == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["capabilities"]["drop"] == ["ALL"], container["name"]
        model_mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/models"]
        assert all(m.get("readOnly") for m in model_mounts), "serving must not be able to write models"
    dockerfile = (REPO / "Dockerfile.serve").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and not users[-1].startswith(("root", "0:", "0")), users
