"""The OpenAPI document against the routes the app really registers, and against the spec.

The app is built by `serving.rest.create_app` with the configured extensions, on a stand-in core
(route registration never touches a model), with the retrain API both disabled and enabled: the
two register their routes separately, and each must be described.
"""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
from flask import Flask
from openapi_spec_validator import validate
from werkzeug.exceptions import MethodNotAllowed, NotFound

from serving import openapi
from serving.config import extension_modules
from serving.console import asset_names
from serving.errors import ServingError
from serving.rest import VERBS, ModelPath, create_app

IGNORED_METHODS = {"HEAD", "OPTIONS"}          # added by Flask to every rule
SAMPLES = {"name": "tiny", "version": "1", "label": "stable", "job_id": "0123456789", "asset": "app.js",
           "segment": "foo"}


def _options(root: Path, retrain: bool) -> SimpleNamespace:
    extra = {"retrain_backend": "local", "admin_token_file": None, "retrain_poll_interval": 60}
    if retrain:
        (root / "token").write_text("t0ken\n")
        (root / "data").mkdir()
        extra.update(admin_token_file=str(root / "token"), jobs_dir=str(root / "jobs"), data_root=str(root / "data"))
    return SimpleNamespace(models=[SimpleNamespace(name="tiny", base_path=root / "models" / "tiny")],
                           max_request_bytes=1 << 20, extra=extra)


@pytest.fixture(params=[False, True], ids=["retrain-disabled", "retrain-enabled"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    options = _options(tmp_path, request.param)
    flask_app = create_app(SimpleNamespace(options=options), extension_modules())
    yield flask_app
    retrain = flask_app.blueprints["retrain"]
    if hasattr(retrain, "job_manager"):
        retrain.job_manager.stop()


@pytest.fixture(scope="module")
def document() -> dict:
    return openapi.build_document(["tiny"], asset_names())


def operations(document: dict) -> Iterator[tuple[str, str, str]]:
    """(template, concrete sample path, METHOD) of every described operation."""
    for template, item in document["paths"].items():
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m[1]], template)
        for method in item:
            yield template, concrete, method.upper()


def test_the_document_is_valid_openapi_3_1(document: dict) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_registered_route_and_method_is_described(app: Flask, document: dict) -> None:
    adapter = app.url_map.bind("localhost")
    described = {(adapter.match(path, method)[0], method) for _, path, method in operations(document)}
    registered = {(rule.endpoint, method) for rule in app.url_map.iter_rules()
                  for method in rule.methods - IGNORED_METHODS}
    assert registered - described == set(), "routes without an OpenAPI description"


def test_every_described_path_reaches_a_route(app: Flask, document: dict) -> None:
    adapter = app.url_map.bind("localhost")
    for template, path, method in operations(document):
        try:
            endpoint, args = adapter.match(path, method)
        except (NotFound, MethodNotAllowed) as error:
            raise AssertionError(f"{method} {template} reaches no route: {error}") from None
        if document["paths"][template][method.lower()]["operationId"].endswith("Malformed"):   # TF Serving's 400
            with pytest.raises(ServingError, match="Malformed request"):
                ModelPath(args["path"], method)
        elif endpoint in ("models.get_model", "models.post_model"):   # the catch-all: TF Serving's grammar
            target = ModelPath(args["path"], method)
            assert (target.verb in VERBS) if method == "POST" else target.verb is None, template


def test_every_verb_has_its_path(document: dict) -> None:
    for verb in [*VERBS, "retrain"]:
        assert f"/v1/models/{{name}}:{verb}" in document["paths"], verb
    for verb in VERBS:
        if verb != "feedback":                  # feedback names a prediction, not a version
            assert f"/v1/models/{{name}}/versions/{{version}}:{verb}" in document["paths"], verb
            assert f"/v1/models/{{name}}/labels/{{label}}:{verb}" in document["paths"], verb


def test_admin_routes_need_the_bearer_token_and_the_others_do_not(document: dict) -> None:
    assert document["components"]["securitySchemes"]["adminToken"] == {
        "type": "http", "scheme": "bearer", "description": openapi._components()["securitySchemes"]
        ["adminToken"]["description"]}
    for template, _, method in operations(document):
        operation = document["paths"][template][method.lower()]
        admin = (template.startswith("/v1/jobs") or template.endswith(":retrain")) \
            and not operation["operationId"].endswith("Malformed")
        assert ("security" in operation) == admin, template
        if admin:
            assert "401" in operation["responses"], template


def test_every_operation_documents_its_errors_in_one_shape(document: dict) -> None:
    for template, _, method in operations(document):
        responses = document["paths"][template][method.lower()]["responses"]
        for status, answer in responses.items():
            if int(status) >= 400 and "$ref" in answer:
                target = answer["$ref"].rsplit("/", 1)[1]
                assert document["components"]["responses"][target]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}
