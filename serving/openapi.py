"""The OpenAPI 3.1 description of the REST API, served at GET /openapi.json.

Why a hand-written document and not one generated from the Flask rules: most of the API lives
behind one catch-all rule (`/v1/models/<path:path>`, TF Serving's `name[/versions/v|/labels/l]`
plus `/metadata` or `:verb`), so the rules alone cannot say which paths exist. The document is
built here from small tables instead, and tests/serving/test_openapi.py checks it against what
the app really registers: every rule and method must be described, every verb of
`serving.rest.VERBS` must have its path, and every described path must reach a rule.

The model name parameter lists the models this server was configured with, and the label
parameter its version labels when it has some (the document is built per server), so clients and
fuzzers meet the real models; any other name or label answers 404.
This module is also the extension (`serving.config.EXTENSIONS`) that adds the route.
"""
from __future__ import annotations

from typing import Any, Sequence

from flask import Blueprint, Response, jsonify

JSON = "application/json"
Schema = dict[str, Any]

MODEL_FORMS: tuple[tuple[str, str, str], ...] = (
    # (path suffix after the name, operationId suffix, what the form selects)
    ("", "", "the model's default version (the highest available)"),
    ("/versions/{version}", "Version", "one version by number"),
    ("/labels/{label}", "Label", "the version a label (e.g. `stable`, `canary`) points to"),
)
VERSION_PARAM: Schema = {"name": "version", "in": "path", "required": True,
                         "description": "A version number (its directory name under the base path).",
                         "schema": {"type": "integer", "minimum": 0}}
LABEL_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]*$"
ADMIN_SECURITY = [{"adminToken": []}]

# ---- schemas ---------------------------------------------------------------------------------
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object", "required": ["error"],
        "description": "TF Serving's error shape: one human-readable message; the status says the kind.",
        "properties": {"error": {"type": "string"}}},
    "Runtime": {
        "type": "object", "required": ["name", "precision", "note"],
        "description": "What serves a loaded version (our addition to TF Serving's status).",
        "properties": {"name": {"type": "string", "examples": ["tensorflow", "litert"]},
                       "precision": {"type": "string", "examples": ["fp32", "int8"]},
                       "note": {"type": "string"}}},
    "ModelStatus": {
        "type": "object", "required": ["model_version_status"],
        "properties": {"model_version_status": {"type": "array", "items": {
            "type": "object", "required": ["version", "state", "status"],
            "properties": {
                "version": {"type": "string"},
                "state": {"enum": ["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]},
                "status": {"type": "object", "required": ["error_code", "error_message"],
                           "properties": {"error_code": {"type": "string"},
                                          "error_message": {"type": "string"}}},
                "runtime": {"$ref": "#/components/schemas/Runtime"}}}}}},
    "ModelMetadata": {
        "type": "object", "required": ["model_spec", "metadata"],
        "properties": {
            "model_spec": {"type": "object", "required": ["name", "signature_name", "version"],
                           "properties": {"name": {"type": "string"}, "signature_name": {"type": "string"},
                                          "version": {"type": "string"}}},
            "metadata": {"type": "object", "required": ["signature_def"],
                         "properties": {"signature_def": {
                             "type": "object", "description": "tensorflow.serving.SignatureDefMap as JSON"}}}}},
    "PredictRequest": {
        "type": "object",
        "description": "TF Serving's REST predict body: `instances` (row format) or `inputs` (columnar), "
                       "exactly one. Binary values are written {\"b64\": \"...\"}.",
        "properties": {"signature_name": {"type": "string"},
                       "instances": {"type": "array", "minItems": 1},
                       "inputs": {}},
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}]},
    "PredictResponse": {
        "type": "object",
        "description": "`predictions` answers a row-format request, `outputs` a columnar one.",
        "properties": {"predictions": {"type": "array"}, "outputs": {}},
        "oneOf": [{"required": ["predictions"]}, {"required": ["outputs"]}]},
    "ClassifyRequest": {
        "type": "object", "required": ["examples"],
        "description": "TF Serving's REST classify body on the image signature.",
        "properties": {
            "signature_name": {"type": "string"},
            "examples": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["image_bytes"],
                "properties": {"image_bytes": {"$ref": "#/components/schemas/B64"}}}}}},
    "B64": {"type": "object", "required": ["b64"], "properties": {"b64": {"type": "string", "minLength": 1}}},
    "RegressResponse": {
        "type": "object", "required": ["results"], "description": "One value per example.",
        "properties": {"results": {"type": "array", "items": {"type": "number"}}}},
    "ClassifyResponse": {
        "type": "object", "required": ["results"],
        "description": "Per example, every class best first as [label, score].",
        "properties": {"results": {"type": "array", "items": {"type": "array", "items": {
            "type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}],
            "minItems": 2, "maxItems": 2}}}}},
    "Scores": {
        "type": "array", "description": "Top classes, best first.",
        "items": {"type": "object", "required": ["label", "score"],
                  "properties": {"label": {"type": "string"}, "score": {"type": "number"}}}},
    "ImageAnswer": {
        "type": "object",
        "description": "One image's answer: its prediction id (for :feedback) and top classes, or why it "
                       "was refused.",
        "properties": {"filename": NULLABLE_STRING, "prediction_id": {"type": "string"},
                       "predictions": {"$ref": "#/components/schemas/Scores"}, "error": {"type": "string"}}},
    "ClassifyImageResponse": {
        "type": "object", "required": ["model", "version"],
        "description": "One image: its answer at the top level; several: one entry each in `results`.",
        "properties": {
            "model": {"type": "string"}, "version": {"type": "integer"},
            "prediction_id": {"type": "string"}, "predictions": {"$ref": "#/components/schemas/Scores"},
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/ImageAnswer"}}},
        "oneOf": [{"required": ["prediction_id", "predictions"]}, {"required": ["results"]}]},
    "FeedbackItem": {
        "type": "object", "required": ["prediction_id", "label"], "additionalProperties": False,
        "properties": {"prediction_id": {"type": "string", "minLength": 1},
                       "label": {"type": "string", "minLength": 1}}},
    "FeedbackRequest": {
        "oneOf": [{"$ref": "#/components/schemas/FeedbackItem"},
                  {"type": "object", "required": ["feedback"], "additionalProperties": False,
                   "properties": {"feedback": {
                       "type": "array", "minItems": 1,
                       "description": "Several reports, each a FeedbackItem. Each is judged on its own: a "
                                      "malformed one gets an error entry in `results`, not a 400 for all.",
                       "items": {}}}}]},
    "FeedbackDone": {
        "type": "object", "required": ["prediction_id", "model", "version", "predicted_label", "label", "correct"],
        "properties": {"prediction_id": {"type": "string"}, "model": {"type": "string"},
                       "version": {"type": "integer"}, "predicted_label": {"type": "string"},
                       "label": {"type": "string"}, "correct": {"type": "boolean"}}},
    "FeedbackResponse": {
        "description": "One report's outcome, or per report (`results`) an outcome or its error.",
        "oneOf": [{"$ref": "#/components/schemas/FeedbackDone"},
                  {"type": "object", "required": ["results"], "properties": {"results": {"type": "array", "items": {
                      "oneOf": [{"$ref": "#/components/schemas/FeedbackDone"},
                                {"type": "object", "required": ["prediction_id", "error", "code"],
                                 "properties": {"prediction_id": {}, "error": {"type": "string"},
                                                "code": {"type": "string"}}}]}}}}]},
    "RetrainRequest": {
        "type": "object", "required": ["data"],
        "description": "Trainer options (an allow-list, serving/jobs/options.py); paths lie under --data-root.",
        "properties": {"data": {"type": "string"}, "val_data": {"type": "string"},
                       "test_data": {"type": "string"}, "backbone": {"type": "string"},
                       "weights": {"type": "string"}, "image_size": {"type": "integer"},
                       "epochs": {"type": "integer"}, "ft_epochs": {"type": "integer"},
                       "unfreeze_top": {"type": ["integer", "string"]}, "batch_size": {"type": "integer"},
                       "learning_rate": {"type": "number"}, "ft_learning_rate": {"type": "number"},
                       "ft_schedule": {"type": "string"}, "patience": {"type": "integer"},
                       "dropout": {"type": "number"}, "seed": {"type": "integer"},
                       "cache_features": {"type": "boolean"}}},
    "Job": {
        "type": "object", "required": ["id", "model", "backend", "options", "state", "created_at"],
        "properties": {
            "id": {"type": "string"}, "model": {"type": "string"}, "backend": {"type": "string"},
            "options": {"type": "object"},
            "state": {"enum": ["PENDING", "RUNNING", "SUCCEEDED", "FAILED"]},
            "created_at": {"type": "string"}, "started_at": NULLABLE_STRING, "finished_at": NULLABLE_STRING,
            "exit_reason": NULLABLE_STRING, "produced_version": {"type": ["integer", "null"]},
            "details": {"type": "object"}}},
    "RetrainAccepted": {
        "type": "object", "required": ["job_id", "job"],
        "properties": {"job_id": {"type": "string"}, "job": {"$ref": "#/components/schemas/Job"}}},
    "JobList": {"type": "object", "required": ["jobs"],
                "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}},
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
    "Ready": {
        "type": "object", "required": ["ready", "draining", "models"],
        "properties": {"ready": {"type": "boolean"}, "draining": {"type": "boolean"},
                       "models": {"type": "object", "description": "model name -> its available versions",
                                  "additionalProperties": {"type": "array", "items": {"type": "integer"}}}}},
}

ERROR_MEANINGS: dict[int, str] = {
    400: "Invalid request (INVALID_ARGUMENT): the message says what is wrong.",
    401: "Missing or wrong bearer token, or the retrain API is disabled (no --admin-token-file).",
    404: "No such model, version, label, prediction, job or method.",
    405: "Method not allowed on this route; the Allow header lists the ones that are.",
    409: "Already exists: a second feedback for a prediction, or a second running retrain of a model.",
    412: "Failed precondition: the job has already finished.",
    413: "The request body is over --max-request-bytes.",
    503: "Unavailable: no version loaded yet, a version being swapped or unloaded, the batch queue "
         "full, or the server shutting down; retry.",
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": _ref(name)}}}


def _responses(ok: int, ok_schema: str, ok_text: str, errors: tuple[int, ...]) -> Schema:
    """`ok` with its schema, then each error status with the shared Error shape."""
    answers = {str(ok): _json(ok_schema, ok_text)}
    answers.update({str(code): {"$ref": f"#/components/responses/E{code}"} for code in errors})
    return answers


def _operation(op_id: str, summary: str, responses: Schema, body: Schema | None = None,
               params: list[Schema] | None = None, admin: bool = False) -> Schema:
    operation: Schema = {"operationId": op_id, "summary": summary, "responses": responses}
    if params:
        operation["parameters"] = params
    if body:
        operation["requestBody"] = body
    if admin:
        operation["security"] = ADMIN_SECURITY
    return operation


def _json_body(schema: str) -> Schema:
    return {"required": True, "content": {JSON: {"schema": _ref(schema)}}}


IMAGE_BODY: Schema = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "contentMediaType": "application/octet-stream",
                 "description": "an encoded image; several file fields classify several images"}}}},
    "image/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}},
    "application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}}
TOP_K: Schema = {"name": "top_k", "in": "query", "required": False, "description": "classes per image (default 5)",
                 "schema": {"type": "integer", "minimum": 1}}
MODEL_ERRORS = (400, 404, 503)


# ---- paths -----------------------------------------------------------------------------------
def _model_operations() -> dict[str, tuple[str, Schema]]:
    """Path tail -> (method, operation), the same in every path form (the caller adds the form)."""
    post_errors = (*MODEL_ERRORS, 413)
    return {
        "": ("get", _operation("getModelStatus", "TF Serving model status: versions and their state",
                                _responses(200, "ModelStatus", "every known version, newest first",
                                           (400, 404)))),
        "/metadata": ("get", _operation("getModelMetadata", "TF Serving metadata: the SignatureDefs",
                                        _responses(200, "ModelMetadata", "signature defs", MODEL_ERRORS))),
        ":predict": ("post", _operation("predict", "TF Serving predict (row or columnar JSON)",
                                        _responses(200, "PredictResponse", "model outputs", post_errors),
                                        _json_body("PredictRequest"))),
        ":classify": ("post", _operation("classify", "TF Serving classify: examples with image_bytes",
                                         _responses(200, "ClassifyResponse", "every class per example",
                                                    post_errors), _json_body("ClassifyRequest"))),
        ":classify_image": ("post", _operation(
            "classifyImage", "Image in (multipart files or a raw image body), top classes out",
            _responses(200, "ClassifyImageResponse", "top classes with a prediction id", post_errors),
            IMAGE_BODY, [TOP_K])),
        ":regress": ("post", _operation(
            "regress", "TF Serving regress: tf.Example features in, one value per example (models with "
                       "a regression signature; image models answer 400)",
            _responses(200, "RegressResponse", "one value per example", post_errors),
            _json_body("ClassifyRequest"))),
    }


def _label_param(labels: list[str]) -> Schema:
    """The configured labels when there are some (any other answers 404), else the label syntax."""
    schema = {"type": "string", "enum": labels} if labels else {"type": "string", "pattern": LABEL_PATTERN}
    return {"name": "label", "in": "path", "required": True, "schema": schema,
            "description": "A version label from the model config (`version_labels`)."}


def model_paths(names: list[str], labels: Sequence[str] = ()) -> dict[str, Schema]:
    """Every /v1/models path: each operation in each form (plain, /versions/{v}, /labels/{l})."""
    name_param: Schema = {"name": "name", "in": "path", "required": True, "description": "A served model.",
                          "schema": {"type": "string", "enum": names} if names else {"type": "string"}}
    label_param = _label_param(list(labels))
    paths: dict[str, Schema] = {}
    for form, op_suffix, selects in MODEL_FORMS:
        extra = [VERSION_PARAM] if "{version}" in form else [label_param] if "{label}" in form else []
        for tail, (method, operation) in _model_operations().items():
            operation = {**operation, "operationId": operation["operationId"] + op_suffix,
                         "description": f"Answered by {selects}.",
                         "parameters": [name_param, *extra, *operation.get("parameters", [])]}
            paths[f"/v1/models/{{name}}{form}{tail}"] = {method: operation}
    paths["/v1/models/{name}:feedback"] = {"post": _operation(
        "feedback", "Report the true label of earlier :classify_image predictions (online accuracy)",
        _responses(200, "FeedbackResponse", "the outcome, per report for a list", (400, 404, 409, 413)),
        _json_body("FeedbackRequest"), [name_param])}
    return paths


def _other_method(item: Schema) -> Schema:
    """A /v1 path item with GET and POST both declared: the method it does not serve answers 400
    "Malformed request" (404 for an unknown model or label), as TF Serving answers it; its
    clients and tests expect that, not 405."""
    served = next(iter(item.values()))
    params = [p for p in served.get("parameters", []) if p["in"] == "path"]
    mirrored = _operation(served["operationId"] + "Malformed", "Not served with this method: 400, as TF Serving",
                          _responses(400, "Error", "Malformed request (TF Serving's answer)", (404, 405)),
                          params=params)
    return {**{method: mirrored for method in ("get", "post") if method not in item}, **item}


def unrouted_paths() -> dict[str, Schema]:
    """What TF Serving answers 400 "Malformed request" to: no model name, or a /v1 path it does
    not route (our routes keep TF Serving's answers, so its clients see the same codes)."""
    malformed = _responses(400, "Error", "Malformed request (TF Serving's answer)", (404,))
    segment = {"name": "segment", "in": "path", "required": True, "description": "anything but `models`",
               "schema": {"type": "string", "pattern": "^[a-ln-z][A-Za-z0-9_-]*$"}}
    return {
        "/v1/models": {method: _operation(f"noModel{method.title()}", "No model name: 400, as TF Serving",
                                          malformed) for method in ("get", "post")},
        "/v1/{segment}": {method: _operation(f"unrouted{method.title()}", "Not a TF Serving route: 400, as TF "
                                             "Serving", malformed, params=[segment]) for method in ("get", "post")},
    }


def admin_paths() -> dict[str, Schema]:
    """The retrain API (serving/retrain_api.py): bearer token on every route."""
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    model = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": r"^[^/:]+$"}}
    return {
        "/v1/models/{name}:retrain": {"post": _operation(
            "retrain", "Start a retrain job (202 with its id; Location: /v1/jobs/{id})",
            _with_header(_responses(202, "RetrainAccepted", "the job was submitted", (400, 401, 404, 409, 503)),
                         "202", "Location", "/v1/jobs/{job_id} of the new job"),
            {"required": False, "content": {JSON: {"schema": _ref("RetrainRequest")}}}, [model], admin=True)},
        "/v1/jobs": {"get": _operation(
            "listJobs", "Retrain jobs, optionally of one model",
            _responses(200, "JobList", "the jobs", (401, 503)),
            params=[{"name": "model", "in": "query", "required": False, "schema": {"type": "string"}}],
            admin=True)},
        "/v1/jobs/{job_id}": {
            "get": _operation("getJob", "One retrain job", _responses(200, "Job", "the job", (401, 404, 503)),
                              params=[job_id], admin=True),
            "delete": _operation("cancelJob", "Cancel a running retrain job",
                                 _responses(202, "Job", "cancelling", (401, 404, 412, 503)),
                                 params=[job_id], admin=True)},
    }


def _with_header(responses: Schema, status: str, name: str, description: str) -> Schema:
    """`responses` with a header that the `status` answer always carries."""
    answer = responses[status]
    answer["headers"] = {name: {"description": description, "required": True, "schema": {"type": "string"}}}
    return responses


def _text(media: str, description: str) -> Schema:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


def service_paths(console_assets: list[str]) -> dict[str, Schema]:
    """Health, metrics, this document and the console page."""
    asset = {"name": "asset", "in": "path", "required": True,
             "schema": {"type": "string", "enum": console_assets} if console_assets else {"type": "string"}}
    return {
        "/healthz": {"get": _operation("healthz", "Liveness", _responses(200, "Health", "the process answers", ()))},
        "/readyz": {"get": _operation("readyz", "Readiness: every model has a version and no drain", {
            "200": _json("Ready", "ready"), "503": _json("Ready", "not ready (loading or draining)")})},
        "/metrics": {"get": _operation("metrics", "Prometheus exposition",
                                       {"200": _text("text/plain", "the serving_* metrics")})},
        "/openapi.json": {"get": _operation("openapi", "This document",
                                            {"200": {"description": "OpenAPI 3.1", "content": {JSON: {}}}})},
        "/": {"get": _operation("console", "The web console (docs/serving.md, \"Console\")",
                                {"200": _text("text/html", "the page")})},
        "/console/{asset}": {"get": _operation("consoleAsset", "The console's script and style sheet", {
            "200": {"description": "the file", "content": {"text/javascript": {}, "text/css": {}}},
            "404": {"description": "no such file"}}, params=[asset])},
    }


def _components() -> Schema:
    responses = {f"E{code}": {"description": text, "content": {JSON: {"schema": _ref("Error")}}}
                 for code, text in ERROR_MEANINGS.items()}
    _with_header(responses, "E401", "WWW-Authenticate", "Bearer realm=\"retrain\" (RFC 6750)")
    return {"schemas": SCHEMAS, "responses": responses, "securitySchemes": {"adminToken": {
        "type": "http", "scheme": "bearer",
        "description": "The content of --admin-token-file (a mounted Secret in Kubernetes)."}}}


def build_document(model_names: list[str], console_assets: Sequence[str] = (),
                   labels: Sequence[str] = ()) -> Schema:
    """The whole OpenAPI 3.1 document for a server serving `model_names` (with version `labels`)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "transfer-serving REST API", "version": "1",
                 "description": "TensorFlow Serving's REST API (/v1/models/...) plus image classification, "
                                "feedback and retraining. Errors are {\"error\": message}; the HTTP status "
                                "gives the kind (serving/errors.py)."},
        "paths": {path: _other_method(item) if path.startswith("/v1/") else item
                  for path, item in {**model_paths(model_names, labels), **unrouted_paths(), **admin_paths(),
                                     **service_paths(list(console_assets))}.items()},
        "components": _components(),
    }


def blueprint(core: Any, options: Any) -> Blueprint:
    """The extension hook of serving.config: GET /openapi.json for this server's models."""
    from serving.console import asset_names

    labels = sorted({label for m in options.models for label in getattr(m, "version_labels", {})})
    document = build_document([m.name for m in options.models], asset_names(), labels)
    bp = Blueprint("openapi", __name__)

    @bp.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(document)

    return bp
