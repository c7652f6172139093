"""The serving core: the one API that REST, gRPC, feedback and retrain all call.

Protocol adapters translate their wire format into these calls and `ServingError`s back into
status codes (serving.errors); none of them touches a model. Everything a request must satisfy
(input names, dtypes, shapes, image bytes, pixel and size limits) is checked here, before a
request joins a batch, so both protocols enforce the same rules and a bad request cannot fail
its neighbours.

    core = ServingCore(options); core.start()
    version, outputs = core.predict("fashion", inputs={"image_bytes": np.array([jpeg], object)})
    result = core.classify_images("fashion", images=[jpeg], top_k=3)
    core.classify("hp2", signature="classify_x_to_y", examples=ExampleInput([example]))   # TF Serving's
    core.regress("hp2", signature="regress_x_to_y", examples=ExampleInput([example]))     # Classify/Regress
    version, defs = core.signature_defs("fashion")           # SignatureDefMap proto
    core.model_status("fashion")                             # [VersionStatus(version, state, error)]
    core.feedback("fashion", result.items[0].prediction_id, "shirt")
    core.ready(); core.begin_drain(); core.stop()
"""
from __future__ import annotations

import logging
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2

from model_format.contract import DEFAULT_SIGNATURE, IMAGE_INPUT
from serving import metrics
from serving.batcher import BatchQueue, BatchQueues, as_serving_error
from serving.config import ServerOptions
from serving.errors import ServingError, invalid, too_large, unavailable
from serving.examples import (CLASSIFY_METHOD, REGRESS_METHOD, ExampleInput, classifications,
                              example_input_name, regressions)
from serving.images import check_image
from serving.servable import Servable, Signature, TensorSpec
from serving.manager import ServableManager, VersionStatus
from serving.predictions import Feedback, PredictionStore

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class ImageResult:
    """One image of a classify call: its prediction id and top-k, or why it was refused."""
    prediction_id: str | None
    predictions: list[tuple[str, float]] = field(default_factory=list)
    error: ServingError | None = None


@dataclass(frozen=True)
class ClassifyResult:
    model: str
    version: int
    items: list[ImageResult]
    signature: str = DEFAULT_SIGNATURE


@dataclass(frozen=True)
class RegressResult:
    model: str
    version: int
    values: list[float]
    signature: str = DEFAULT_SIGNATURE


@dataclass(frozen=True)
class InferenceTask:
    """One task of MultiInference: which model/version/signature, and classify or regress."""
    model: str
    version: int | None
    label: str | None
    signature: str | None
    method: str


@contextmanager
def _about(servable: Servable) -> Iterator[None]:
    """Tag errors raised while a version was in use with that version (for metric labels)."""
    try:
        yield
    except ServingError as error:
        error.version = servable.version
        raise


class ServingCore:
    """Models, batching and request checks behind every protocol (one model copy per process)."""

    def __init__(self, options: ServerOptions, manager: ServableManager | None = None) -> None:
        self.options = options
        self.manager = manager or ServableManager(
            options.models, poll_interval=options.poll_interval,
            load_retry_interval=options.load_retry_interval, max_load_retries=options.max_load_retries,
            on_available=self._attach, on_unloaded=self._detach)
        self.predictions = PredictionStore(options.prediction_store_size)
        self.queues = BatchQueues()
        metrics.serve_models(self.manager.model_names())
        self._draining = threading.Event()
        self._stopped = threading.Event()

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start polling the model base paths; versions load in the background."""
        self.manager.start()

    def begin_drain(self) -> None:
        """Shutdown step 1: report not ready, so load balancers stop sending. Requests that
        already reached the process are still served (the protocol servers stop accepting new
        connections / calls themselves); only `stop()` makes the core refuse work."""
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def stop(self) -> None:
        """Release every version (after its in-flight requests) and stop the batch threads."""
        self._draining.set()
        self._stopped.set()
        self.manager.stop()

    def ready(self) -> bool:
        """Every configured model has an available version and we are not shutting down."""
        return not self.draining and self.manager.ready()

    def model_names(self) -> list[str]:
        return self.manager.model_names()

    def _attach(self, servable: Servable) -> None:
        batching = self.manager.model_config(servable.model).batching
        self.queues.open(servable, batching)
        metrics.start_version_series(servable.model, servable.version)
        choice = servable.runtime
        metrics.RUNTIME_INFO.labels(servable.model, str(servable.version), choice.runtime, choice.precision).set(1)
        if choice.cause:
            metrics.RUNTIME_FALLBACKS.labels(servable.model, str(servable.version), choice.cause).inc()
        for stage, figures in (servable.metadata.get("evaluation") or {}).items():
            if isinstance(figures, dict) and isinstance(figures.get("accuracy"), (int, float)):
                metrics.EVAL_ACCURACY.labels(servable.model, str(servable.version), stage).set(figures["accuracy"])

    def _detach(self, servable: Servable) -> None:
        self.queues.close(servable)   # the queues hold the signature functions: let the model go
        choice = servable.runtime
        try:
            metrics.RUNTIME_INFO.remove(servable.model, str(servable.version), choice.runtime, choice.precision)
        except KeyError:
            pass
        for stage in (servable.metadata.get("evaluation") or {}):
            try:
                metrics.EVAL_ACCURACY.remove(servable.model, str(servable.version), stage)
            except KeyError:
                pass

    # ---- checks ----------------------------------------------------------------------------
    def _admit(self) -> None:
        if self._stopped.is_set():
            raise unavailable("server is shutting down; retry on another replica")

    def check_request_size(self, size: int) -> None:
        """RESOURCE_EXHAUSTED for a request body over --max-request-bytes (413 on REST)."""
        if size > self.options.max_request_bytes:
            raise too_large(f"request is {size} bytes, over the limit of {self.options.max_request_bytes} "
                            f"bytes (--max-request-bytes)")

    def check_image(self, data: bytes, what: str = "image") -> None:
        """INVALID_ARGUMENT for an image a model must not see (serving.images, --max-image-pixels)."""
        check_image(data, self.options.max_image_pixels, what)

    def _coerce(self, signature: Signature, inputs: dict[str, Any], strict_shapes: bool = True) -> Arrays:
        """Inputs as arrays of the signature's dtypes and shapes, or INVALID_ARGUMENT saying which."""
        if not isinstance(inputs, dict):
            if len(signature.inputs) != 1:
                raise invalid(f"signature {signature.name!r} has several inputs {sorted(signature.inputs)}: "
                              f"name them")
            inputs = {next(iter(signature.inputs)): inputs}
        expected, given = set(signature.inputs), set(inputs)
        if expected != given:
            raise invalid(f"signature {signature.name!r} takes inputs {sorted(expected)}, got {sorted(given)}"
                          + (f" (missing {sorted(expected - given)})" if expected - given else "")
                          + (f" (unknown {sorted(given - expected)})" if given - expected else ""))
        arrays = {name: _to_array(name, value, signature.inputs[name], strict_shapes)
                  for name, value in inputs.items()}
        for name, array in arrays.items():
            if array.dtype == object and name == IMAGE_INPUT:
                for index, item in enumerate(array.reshape(-1)):
                    self.check_image(item, f"{name}[{index}]")
        return arrays

    # ---- API -------------------------------------------------------------------------------
    def predict(self, model: str, version: int | None = None, label: str | None = None,
                signature: str | None = None, inputs: dict[str, Any] | Any = None,
                output_filter: Sequence[str] | None = None) -> tuple[int, Arrays]:
        """Run a signature on a batch of inputs (first dimension = instances).

        `inputs` maps input names to arrays (or nested lists); string inputs hold bytes. Anything
        other than a dict is the value of the signature's only input (TF Serving's REST rule).
        Returns (the version that answered, outputs by name). `output_filter` keeps only the
        named outputs (INVALID_ARGUMENT for names the signature does not have).
        """
        self._admit()
        with self.manager.acquire(model, version, label) as servable, _about(servable):
            chosen = _signature(servable, signature)
            arrays = self._coerce(chosen, {} if inputs is None else inputs, servable.image_contract)
            if output_filter:
                unknown = set(output_filter) - set(chosen.outputs)
                if unknown:
                    raise invalid(f"output_filter names unknown outputs {sorted(unknown)} "
                                  f"(signature {chosen.name!r} has {sorted(chosen.outputs)})")
            outputs = self._run(servable, chosen, arrays)
            self._observe(servable, outputs)
            if output_filter:
                outputs = {name: outputs[name] for name in output_filter}
            return servable.version, outputs

    def classify_images(self, model: str, version: int | None = None, label: str | None = None,
                        images: Sequence[bytes] = (), top_k: int = 5) -> ClassifyResult:
        """Top-k labels of encoded images. Each image gets a prediction id (for feedback).

        With one image its error is raised; with several, bad images get an error entry and the
        others are answered, unless every image is bad (the first error is raised).
        """
        self._admit()
        if not images:
            raise invalid("no image in the request")
        if not isinstance(top_k, int) or top_k < 1:
            raise invalid(f"top_k must be a positive integer, got {top_k!r}")
        errors: dict[int, ServingError] = {}
        for index, data in enumerate(images):
            try:
                self.check_image(data, "image" if len(images) == 1 else f"image {index}")
            except ServingError as error:
                errors[index] = error
        if len(errors) == len(images):
            raise errors[0]
        with self.manager.acquire(model, version, label) as servable, _about(servable):
            queue = self._queue(servable, DEFAULT_SIGNATURE)
            good = [i for i in range(len(images)) if i not in errors]
            try:
                outputs = queue.submit({IMAGE_INPUT: np.array([images[i] for i in good], dtype=object)})
            except ServingError as error:
                if len(good) == 1 or error.code != "INVALID_ARGUMENT":
                    raise
                return self._classify_one_by_one(servable, images, errors, top_k)
            self._observe(servable, outputs)
            answers = iter(self._top_k(servable, outputs["probabilities"], top_k))
            items = [ImageResult(None, error=errors[i]) if i in errors else next(answers)
                     for i in range(len(images))]
            return ClassifyResult(servable.model, servable.version, items)

    def input_dtypes(self, model: str, version: int | None = None, label: str | None = None,
                     signature: str | None = None) -> dict[str, np.dtype]:
        """The input dtypes of a signature (object = string), to type a REST request's JSON."""
        with self.manager.acquire(model, version, label) as servable, _about(servable):
            return {name: spec.dtype for name, spec in _signature(servable, signature).inputs.items()}

    def classify(self, model: str, version: int | None = None, label: str | None = None,
                 signature: str | None = None, examples: ExampleInput = ExampleInput(())) -> ClassifyResult:
        """TF Serving's Classify (REST `:classify`, gRPC `Classify`) on tf.Examples.

        A version with the image contract classifies on its image signature by default: each
        example's `image_bytes` feature, every class best first (and the first bad image fails the
        request, as TF Serving answers a request as a whole). Any other signature runs as TF
        Serving runs it: serialized Examples in, `classes`/`scores` out (serving.examples)."""
        self._admit()
        examples.check()
        with self.manager.acquire(model, version, label) as servable, _about(servable):
            if not (servable.image_contract and signature in (None, "", DEFAULT_SIGNATURE)):
                chosen = _signature(servable, signature)
                outputs = self._run_examples(servable, chosen, CLASSIFY_METHOD, examples)
                items = [ImageResult(None, pairs) for pairs in classifications(outputs, len(examples.examples))]
                return ClassifyResult(servable.model, servable.version, items, chosen.name)
        result = self.classify_images(model, version, label, examples.feature_bytes(IMAGE_INPUT), top_k=sys.maxsize)
        for item in result.items:
            if item.error is not None:
                item.error.version = result.version     # for the metric labels, as _about does
                raise item.error
        return result

    def regress(self, model: str, version: int | None = None, label: str | None = None,
                signature: str | None = None, examples: ExampleInput = ExampleInput(())) -> RegressResult:
        """TF Serving's Regress (REST `:regress`, gRPC `Regress`): one value per tf.Example."""
        self._admit()
        examples.check()
        with self.manager.acquire(model, version, label) as servable, _about(servable):
            chosen = _signature(servable, signature)
            outputs = self._run_examples(servable, chosen, REGRESS_METHOD, examples)
            return RegressResult(servable.model, servable.version, regressions(outputs, len(examples.examples)),
                                 chosen.name)

    def multi_inference(self, tasks: Sequence[InferenceTask],
                        examples: ExampleInput) -> list[ClassifyResult | RegressResult]:
        """TF Serving's MultiInference: several classify/regress signatures of one model on the
        same Examples. As in TF Serving, every task names the same model and a signature once."""
        if not tasks:
            raise invalid("MultiInferenceRequest must contain at least one task")
        if len({task.model for task in tasks}) != 1:
            raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        names = [task.signature or DEFAULT_SIGNATURE for task in tasks]
        if len(set(names)) != len(names):
            raise invalid("Duplicate evaluation of signature: " + next(n for n in names if names.count(n) > 1))
        run = {CLASSIFY_METHOD: self.classify, REGRESS_METHOD: self.regress}
        results: list[ClassifyResult | RegressResult] = []
        for task in tasks:
            if task.method not in run:
                raise invalid(f"Unsupported signature method_name: {task.method}")
            results.append(run[task.method](task.model, task.version, task.label, task.signature, examples))
        return results

    def _run_examples(self, servable: Servable, chosen: Signature, method: str, examples: ExampleInput) -> Arrays:
        """Serialized Examples into the signature's one string input; its outputs."""
        definition = servable.signature_defs.signature_def[chosen.name]
        name = example_input_name(chosen.name, method, definition.method_name, dict(chosen.inputs))
        if chosen.inputs[name].dtype != object:
            raise invalid(f"Input tensor {name!r} of signature {chosen.name!r} is not a string tensor of "
                          f"serialized tf.Examples")
        return self._run(servable, chosen, {name: examples.serialized()})

    def _queue(self, servable: Servable, signature: str) -> BatchQueue:
        queue = self.queues.get(servable, signature)
        if queue is None:
            raise unavailable(f"model {servable.model!r} version {servable.version} is being unloaded; retry")
        return queue

    def _run(self, servable: Servable, signature: Signature, arrays: Arrays) -> Arrays:
        """Through the signature's batch queue when requests can be joined (a batch dimension on
        every input and output, and the request has the signature's ranks); else called directly,
        as TF Serving runs an unbatched signature."""
        queue = self.queues.get(servable, signature.name)
        joinable = signature.batchable and all(
            spec.shape is not None and arrays[name].ndim == len(spec.shape) and arrays[name].ndim > 0
            for name, spec in signature.inputs.items() if name in arrays)
        if queue is not None and joinable and arrays:
            return queue.submit(arrays)
        try:
            return signature.function(arrays)
        except Exception as error:  # noqa: BLE001 - a model error is this request's error
            raise as_serving_error(error) from None

    def _classify_one_by_one(self, servable: Servable, images: Sequence[bytes],
                             errors: dict[int, ServingError], top_k: int) -> ClassifyResult:
        """A multi-image request the model refused as a whole: find the culprit(s) image by image."""
        items: list[ImageResult] = []
        for index, data in enumerate(images):
            if index in errors:
                items.append(ImageResult(None, error=errors[index]))
                continue
            try:
                outputs = self._queue(servable, DEFAULT_SIGNATURE).submit({IMAGE_INPUT: np.array([data], dtype=object)})
            except ServingError as error:
                items.append(ImageResult(None, error=invalid(f"image {index}: {error.message}")))
                continue
            self._observe(servable, outputs)
            items.extend(self._top_k(servable, outputs["probabilities"], top_k))
        return ClassifyResult(servable.model, servable.version, items)

    def _top_k(self, servable: Servable, probabilities: np.ndarray, top_k: int) -> Iterable[ImageResult]:
        names = tuple(servable.class_names)
        for row in probabilities:
            order = np.argsort(-row, kind="stable")[:top_k]
            ranked = [(names[i], float(row[i])) for i in order]
            prediction_id = self.predictions.remember(servable.model, servable.version, ranked[0][0],
                                                      ranked[0][1], names)
            yield ImageResult(prediction_id, ranked)

    def _observe(self, servable: Servable, outputs: Arrays) -> None:
        """Confidence histogram and predicted-label counter (drift panels)."""
        probabilities = outputs.get("probabilities")
        if probabilities is None or probabilities.ndim != 2 or not len(servable.class_names):
            return
        version = str(servable.version)
        confidence = metrics.CONFIDENCE.labels(servable.model, version)
        for index, score in zip(probabilities.argmax(axis=1), probabilities.max(axis=1)):
            confidence.observe(float(score))
            if index < len(servable.class_names):
                metrics.PREDICTED_LABEL.labels(servable.model, version, servable.class_names[index]).inc()

    def signature_defs(self, model: str, version: int | None = None,
                       label: str | None = None) -> tuple[int, get_model_metadata_pb2.SignatureDefMap]:
        """The version's SignatureDef map, as read from its saved_model.pb."""
        with self.manager.acquire(model, version, label) as servable:
            return servable.version, servable.signature_defs

    def model_status(self, model: str, version: int | None = None) -> list[VersionStatus]:
        """TF Serving's GetModelStatus: every known version (newest first) and its state."""
        return self.manager.status(model, version)

    def resolve_label(self, model: str, label: str) -> int:
        """The version a label points to (INVALID_ARGUMENT, TF Serving's text, for an unknown label)."""
        config = self.manager.model_config(model)
        if label not in config.version_labels:
            raise invalid(f"Unrecognized servable version label: {label} "
                          f"(model {model!r} has labels {sorted(config.version_labels)})")
        return config.version_labels[label]

    def feedback(self, model: str, prediction_id: str, label: str) -> Feedback:
        """Report the true label of an earlier classify_images prediction (see PredictionStore)."""
        self.manager.model_config(model)
        return self.predictions.feedback(model, prediction_id, label)


def _signature(servable: Servable, name: str | None) -> Signature:
    name = name or DEFAULT_SIGNATURE
    if name not in servable.signatures:
        raise invalid(f"Serving signature name: \"{name}\" not found in signature def (model {servable.model!r} "
                      f"version {servable.version} has {sorted(servable.signatures)})")
    return servable.signatures[name]


def _to_array(name: str, value: Any, spec: TensorSpec, strict_shapes: bool = True) -> np.ndarray:
    if spec.dtype == object:
        array = np.array(value, dtype=object) if not isinstance(value, np.ndarray) else value
        flat = array.reshape(-1)
        for index, item in enumerate(flat):
            if isinstance(item, str):
                flat[index] = item.encode()
            elif not isinstance(item, (bytes, bytearray)):
                raise invalid(f"input {name!r} expects strings/bytes, item {index} is {type(item).__name__}")
        array = flat.reshape(array.shape) if array.shape else flat
    else:
        try:
            array = np.asarray(value, dtype=spec.dtype)
        except (TypeError, ValueError) as error:
            raise invalid(f"input {name!r} expects {spec.describe()} values: {error}") from None
    if not strict_shapes:
        return array        # TF Serving does not hold requests to the signature's static shapes
    if spec.shape is not None:
        if array.ndim != len(spec.shape) or any(d is not None and d != a for d, a in zip(spec.shape, array.shape)):
            raise invalid(f"input {name!r} has shape {list(array.shape)}, the signature expects {spec.describe()}")
    if array.ndim == 0 or array.shape[0] == 0:
        raise invalid(f"input {name!r} holds no instances (shape {list(array.shape)})")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        where = [int(i) for i in np.argwhere(~np.isfinite(array))[0]]
        raise invalid(f"input {name!r} holds NaN or infinity (first at index {where}); "
                      f"pixels must be finite numbers")
    return array
