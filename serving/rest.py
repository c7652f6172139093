"""REST adapter: TF Serving's REST API plus image-native classify and feedback, over the core.

Routes (TF Serving compatible where TF Serving has them):
  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    instances (row) or inputs (columnar)
  POST /v1/models/{name}[...]:classify                         TF Serving's examples -> {"results": ...}
  POST /v1/models/{name}[...]:regress                          TF Serving's examples -> {"results": ...}
  POST /v1/models/{name}[...]:classify_image[?top_k=5]         multipart file(s) or raw image/* body
  POST /v1/models/{name}:feedback                              {prediction_id, label} or {feedback: [..]}
  GET  /healthz  /readyz  /metrics  /monitoring/prometheus/metrics (TF Serving's metrics path)
Errors are TF Serving's shape, {"error": "..."}, with the status from serving.errors; a path TF
Serving would not route is its 400 "Malformed request". The JSON <-> tensor rules live in
serving.json_tensor (TF Serving's util/json_tensor), the work in serving.core.
Other areas add routes through `create_app(..., extensions)` without touching this module.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Callable, Iterable

import numpy as np
from flask import Blueprint, Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from google.protobuf import json_format
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from serving import json_tensor, metrics
from serving.core import ClassifyResult, ImageResult, ServingCore
from serving.errors import ServingError, invalid, too_large
from serving.examples import ExampleInput

log = logging.getLogger(__name__)

_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z_]+))?$")
DEFAULT_TOP_K = 5
MAX_VERSION = (1 << 63) - 1
GET_VERBS = frozenset()                                       # GET answers status and /metadata only
POST_VERBS = frozenset({"predict", "classify", "regress", "classify_image", "feedback"})


def malformed(method: str, path: str) -> ServingError:
    """TF Serving's answer to a path its REST API does not route (400, not 404)."""
    return invalid(f"Malformed request: {method} {path}")


class ModelPath:
    """The parts of /v1/models/... : name, version or label, and /metadata or :verb.

    What TF Serving's handler would not route is its 400 "Malformed request": an unknown verb, a
    verb with GET, /metadata with POST, a version that is not a number."""

    def __init__(self, path: str, method: str = "GET") -> None:
        match = _PATH.match(path)
        full = f"/v1/models/{path}"
        if not match or (match["verb"] and match["verb"] not in (POST_VERBS if method == "POST" else GET_VERBS)) \
                or (method == "POST" and not match["verb"]):
            raise malformed(method, full)
        if match["version"] and int(match["version"]) > MAX_VERSION:
            raise invalid(f"Failed to convert version: {match['version']} to numeric.")
        self.name: str = match["name"]
        self.version = int(match["version"]) if match["version"] else None
        self.label: str | None = match["label"]
        self.metadata = bool(match["metadata"])
        self.verb: str | None = match["verb"]


def error_response(error: ServingError) -> Response:
    return Response(json_tensor.error_json(error.message), status=error.http_status, mimetype="application/json")


def json_response(text: str) -> Response:
    """A JSON body written by serving.json_tensor (its number and string rules, not Flask's)."""
    return Response(text, mimetype="application/json")


def status_response(statuses: Iterable[Any]) -> dict[str, Any]:
    """TF Serving's status JSON; a loaded version also names its `runtime` (our addition)."""
    return {"model_version_status": [
        {"version": str(s.version), "state": s.state,
         "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error},
         **({"runtime": _runtime_json(s.runtime)} if s.runtime else {})}
        for s in statuses]}


def _runtime_json(choice: Any) -> dict[str, str]:
    return {"name": choice.runtime, "precision": choice.precision, "note": choice.note}


def _image_json(item: ImageResult) -> dict[str, Any]:
    if item.error is not None:
        return {"error": item.error.message}
    return {"prediction_id": item.prediction_id,
            "predictions": [{"label": label, "score": score} for label, score in item.predictions]}


def classify_response(result: ClassifyResult, filenames: list[str] | None) -> dict[str, Any]:
    """One image: {model, version, prediction_id, predictions}; several: per-image `results`."""
    head = {"model": result.model, "version": result.version}
    if len(result.items) == 1:
        return {**head, **_image_json(result.items[0])}
    names = filenames or [None] * len(result.items)
    return {**head, "results": [{"filename": name, **_image_json(item)} for name, item in zip(names, result.items)]}


# ---- request helpers -------------------------------------------------------------------------
def _body(core: ServingCore) -> bytes:
    if request.content_length is None:
        return _chunked_body(core.options.max_request_bytes)
    core.check_request_size(request.content_length)
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise _over_limit(core.options.max_request_bytes) from None


def _over_limit(limit: int) -> ServingError:
    return too_large(f"request is over the limit of {limit} bytes (--max-request-bytes)")


def _chunked_body(limit: int) -> bytes:
    """A body without Content-Length (chunked), read up to one byte past the limit: Werkzeug's own
    read stops at the limit without an error, so an oversized body would be cut and read as
    something else (malformed JSON, an image with its trailing bytes dropped) instead of refused.
    Kept as the request's cached data for later readers."""
    stream = request.environ["wsgi.input"]
    data = bytearray()
    while len(data) <= limit:
        chunk = stream.read(min(1 << 16, limit + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        raise _over_limit(limit)
    request._cached_data = bytes(data)   # what request.get_data()/files parse from (Werkzeug)
    return request._cached_data


MAX_JSON_DEPTH = 64   # tensors nest a few levels; deeper JSON only attacks the parser's recursion


def _json_body(core: ServingCore) -> Any:
    """The JSON document (TF Serving's rapidjson error texts, serving.json_tensor.loads)."""
    data = _body(core)
    too_deep = invalid(f"the JSON body nests lists/objects deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json_tensor.loads(data)
    except RecursionError:
        raise too_deep from None
    if _nested_deeper(value, MAX_JSON_DEPTH):
        raise too_deep
    return value


def _nested_deeper(value: Any, limit: int) -> bool:
    """Whether lists/objects nest deeper than `limit` (iterative, so the check cannot recurse)."""
    stack = [(value, 1)] if isinstance(value, (list, dict)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return False


def _images() -> tuple[list[bytes], list[str] | None]:
    """Images of a classify_image request: multipart files, or the raw image/* body."""
    content_type = (request.mimetype or "").lower()
    if content_type == "multipart/form-data":
        files = [f for key in request.files for f in request.files.getlist(key)]
        if not files:
            raise invalid("the multipart body holds no file; send the image as a file field")
        return [f.read() for f in files], [f.filename or "" for f in files]
    if content_type == "application/json" or content_type.startswith("text/"):
        raise invalid(f"Content-Type {content_type!r} not accepted: send multipart/form-data or a raw "
                      f"image/* body (JSON with b64 images goes to :predict)")
    data = request.get_data(cache=True)     # image/*, octet-stream, or curl's default form type
    if not data:
        raise invalid("the request body is empty; send an image")
    return [data], None


def _top_k() -> int:
    raw = request.args.get("top_k", str(DEFAULT_TOP_K))
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"top_k must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise invalid(f"top_k must be a positive integer, got {value}")
    return value


# ---- blueprints ------------------------------------------------------------------------------
def models_blueprint(core: ServingCore) -> Blueprint:
    """The /v1/models API."""
    bp = Blueprint("models", __name__)

    @bp.get("/v1/models/<path:path>")
    def get_model(path: str) -> Response:
        target = ModelPath(path, "GET")
        api = "metadata" if target.metadata else "status"
        with metrics.track_request(target.name, api, "rest") as track:
            if target.metadata:
                track.version, defs = core.signature_defs(target.name, target.version, target.label)
                return jsonify(metadata_response(target.name, track.version, defs))
            version = core.resolve_label(target.name, target.label) if target.label else target.version
            track.version = version or ""
            return jsonify(status_response(core.model_status(target.name, version)))

    @bp.route("/v1/models", methods=["GET", "POST"])
    def no_model() -> Response:
        if request.method == "GET":
            raise invalid("Missing model name in request.")
        raise malformed(request.method, request.path)

    @bp.route("/v1/<path:path>", methods=["GET", "POST"])
    def unrouted(path: str) -> Response:
        raise malformed(request.method, request.path)

    @bp.post("/v1/models/<path:path>")
    def post_model(path: str) -> Response:
        target = ModelPath(path, "POST")
        api, run = VERBS[target.verb or ""]
        with metrics.track_request(target.name, api, "rest") as track:
            _check_resource(core, target)
            return run(core, target, track)

    return bp


def metadata_response(name: str, version: int, defs: Any) -> dict[str, Any]:
    """TF Serving's metadata JSON: every field printed, defaults included (`defaults: {}`,
    `dim.name`, `unknown_rank: false`), int64 sizes as strings, as its proto-to-JSON does."""
    return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": json_format.MessageToDict(
                defs, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)}}


def _check_resource(core: ServingCore, target: ModelPath) -> None:
    """NOT_FOUND for an unknown model or label before the body is read: the resource comes first,
    so a bad body sent to a wrong URL is reported as the wrong URL."""
    if target.label is not None:
        core.resolve_label(target.name, target.label)
    else:
        core.manager.model_config(target.name)


def _predict(core: ServingCore, target: ModelPath, track: metrics.RequestTrack) -> Response:
    parsed = json_tensor.parse_predict(
        _json_body(core), lambda signature: core.input_dtypes(target.name, target.version, target.label,
                                                              signature or None))
    track.version, outputs = core.predict(target.name, target.version, target.label,
                                          parsed.signature_name or None, parsed.inputs)
    check_finite(outputs)
    return json_response(json_tensor.predict_json(outputs, parsed.format))


def _classify_image(core: ServingCore, target: ModelPath, track: metrics.RequestTrack) -> Response:
    _body(core)
    images, filenames = _images()
    result = core.classify_images(target.name, target.version, target.label, images, _top_k())
    track.version = result.version
    return jsonify(classify_response(result, filenames))


def _feedback(core: ServingCore, target: ModelPath, track: metrics.RequestTrack) -> Response:
    body = _json_body(core)
    if isinstance(body, dict) and "feedback" in body:
        if set(body) != {"feedback"}:      # as the single form does: an unknown key is a client bug
            raise invalid(f"a {{\"feedback\": [...]}} body has unknown keys {sorted(set(body) - {'feedback'})}")
        if not isinstance(body["feedback"], list) or not body["feedback"]:
            raise invalid("\"feedback\" must be a non-empty list of {prediction_id, label}")
        results = []
        for item in body["feedback"]:
            try:
                results.append(_feedback_json(core, target.name, item))
            except ServingError as error:
                pid = item.get("prediction_id") if isinstance(item, dict) else None
                results.append({"prediction_id": pid, "error": error.message, "code": error.code})
        return jsonify({"results": results})
    answer = _feedback_json(core, target.name, body)
    track.version = answer["version"]
    return jsonify(answer)


def _feedback_json(core: ServingCore, model: str, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise invalid("feedback must be an object {prediction_id, label}")
    unknown = set(item) - {"prediction_id", "label"}
    if unknown:
        raise invalid(f"feedback has unknown keys {sorted(unknown)}")
    done = core.feedback(model, item.get("prediction_id"), item.get("label"))
    return {"prediction_id": done.prediction_id, "model": done.model, "version": done.version,
            "predicted_label": done.predicted_label, "label": done.true_label, "correct": done.correct}


def _examples(core: ServingCore) -> tuple[str | None, ExampleInput]:
    parsed = json_tensor.parse_examples(_json_body(core))
    return parsed.signature_name or None, ExampleInput(parsed.examples, parsed.context)


def _classify(core: ServingCore, target: ModelPath, track: metrics.RequestTrack) -> Response:
    """TF Serving's REST Classify: `examples` -> {"results": [[[label, score], ...], ...]}. On an
    image-contract model the default signature classifies each example's image_bytes feature."""
    signature, examples = _examples(core)
    result = core.classify(target.name, target.version, target.label, signature, examples)
    track.version = result.version
    return json_response(json_tensor.classification_json([item.predictions for item in result.items]))


def _regress(core: ServingCore, target: ModelPath, track: metrics.RequestTrack) -> Response:
    """TF Serving's REST Regress: `examples` -> {"results": [value, ...]}."""
    signature, examples = _examples(core)
    result = core.regress(target.name, target.version, target.label, signature, examples)
    track.version = result.version
    return json_response(json_tensor.regression_json(result.values))


VERBS: dict[str, tuple[str, Callable[[ServingCore, ModelPath, metrics.RequestTrack], Response]]] = {
    "predict": ("predict", _predict),
    "classify_image": ("classify_image", _classify_image),
    "feedback": ("feedback", _feedback),
    "classify": ("classify", _classify),
    "regress": ("regress", _regress),
}


def health_blueprint(core: ServingCore) -> Blueprint:
    """Liveness, readiness and the Prometheus scrape endpoint."""
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @bp.get("/readyz")
    def readyz() -> Response:
        models = {name: core.manager.available_versions(name) for name in core.model_names()}
        ready = core.ready()
        response = jsonify(ready=ready, draining=core.draining, models=models)
        response.status_code = 200 if ready else 503
        return response

    @bp.get("/metrics")
    @bp.get("/monitoring/prometheus/metrics")      # TF Serving's path (--monitoring_config_file)
    def prometheus() -> Response:
        return Response(metrics.exposition(), mimetype=metrics.CONTENT_TYPE_LATEST.split(";")[0],
                        headers={"Content-Type": metrics.CONTENT_TYPE_LATEST})

    return bp


class FiniteJSON(DefaultJSONProvider):
    """JSON without NaN or Infinity: Python writes them as bare tokens no JSON parser accepts.
    An answer holding them (a model's NaN output) becomes a clear 500 instead of a 200 with a
    body the client cannot read."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        try:
            return super().dumps(obj, allow_nan=False, **kwargs)
        except ValueError as error:
            if "Out of range float" not in str(error):
                raise
            raise not_finite() from None


def not_finite(output: str = "") -> ServingError:
    """INTERNAL for a model answer holding NaN or infinity (the issue is the model's, not the request's)."""
    where = f" ({output!r})" if output else ""
    return ServingError("INTERNAL", f"the model's answer holds NaN or infinity{where}, which JSON cannot "
                                    f"carry; check the model and its inputs")


def check_finite(outputs: dict[str, Any]) -> None:
    """Refuse to write NaN or infinity: TF Serving writes bare NaN tokens, which no JSON parser reads."""
    for name, value in outputs.items():
        if getattr(value, "dtype", None) is not None and value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise not_finite(name)


def create_app(core: ServingCore, extensions: Iterable[Any] = ()) -> Flask:
    """The Flask app: core blueprints, then each extension module's `blueprint(core, options)`."""
    app = Flask("serving", static_folder=None)   # no /static/<path> route: nothing to serve there
    app.json = FiniteJSON(app)
    app.config["MAX_CONTENT_LENGTH"] = core.options.max_request_bytes
    app.json.sort_keys = False
    app.register_blueprint(models_blueprint(core))
    app.register_blueprint(health_blueprint(core))
    for module in extensions:
        if hasattr(module, "blueprint"):
            app.register_blueprint(module.blueprint(core, core.options))

    @app.errorhandler(ServingError)
    def serving_error(error: ServingError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        if isinstance(error, RequestEntityTooLarge):
            message = f"request is over the limit of {core.options.max_request_bytes} bytes (--max-request-bytes)"
        else:
            message = f"{error.name}: {error.description}" if error.description else str(error.name)
        response = jsonify(error=message)
        response.status_code = error.code or 500
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)   # RFC 9110: a 405 names them
        return response

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = jsonify(error=f"internal error: {type(error).__name__}")
        response.status_code = 500
        return response

    return app
