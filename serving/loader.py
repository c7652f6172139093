"""Load one model version: SavedModel, the image contract if it has one, runtime, warm-up.

Any SavedModel (TF2 or TF1) loads. A version that follows our image contract (docs/model-format.md:
labels, the image signatures) is loaded with `tf.saved_model.load`, may run on LiteRT and gets
`:classify_image`, feedback and label metrics. Any other version is served as TF Serving serves it:
every signature through a session (serving.graph_runner), on TensorFlow.

Like TF Serving's loader, a failure is *reported*, never raised into the server: `load_version`
returns a `LoadResult` carrying either the servable or the reason, and the manager decides what
to do (retry with backoff, keep the previous version serving).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from model_format.contract import (
    DEFAULT_SIGNATURE, IMAGE_INPUT, LABELS_FILE, METADATA_FILE, PIXELS_INPUT, PIXELS_SIGNATURE, REQUIRED_SIGNATURES,
    SAVED_MODEL_FILE, WARMUP_PATH, read_labels, read_metadata,
)
from serving.config import BatchingOptions, RuntimeOptions
from serving.errors import ServingError
from serving.images import check_image
from serving.inference_runtime import RuntimeChoice, choose, generated_images

log = logging.getLogger(__name__)

MAX_WARMUP_RECORDS = 100
Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    """dtype and shape (None = any size) of one signature input or output."""
    dtype: np.dtype
    shape: tuple[int | None, ...] | None   # None: unknown rank

    def describe(self) -> str:
        dims = "?" if self.shape is None else "[" + ", ".join("-1" if d is None else str(d) for d in self.shape) + "]"
        return f"{tf.as_dtype(self.dtype).name if self.dtype != object else 'string'} {dims}"


@dataclass
class Signature:
    """One callable signature of a loaded version, with its input/output specs."""
    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    function: Callable[[Arrays], Arrays]        # numpy inputs by name -> numpy outputs by name
    allowed_batch_sizes: tuple[int, ...] = ()   # pad batches up to one of these (empty: any size)

    @property
    def batchable(self) -> bool:
        """Whether requests can be concatenated into one call: every input and output has a
        leading batch dimension of any size. A scalar output (a sum over the request) or a fixed
        first dimension cannot be split back per request, so such signatures run unbatched."""
        return all(spec.shape and spec.shape[0] is None
                   for spec in (*self.inputs.values(), *self.outputs.values()))

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the concrete function on a batch; outputs as numpy arrays.

        With allowed batch sizes the batch is padded (its last row repeated) up to the next allowed
        size and the outputs cut back, so the model sees a few shapes only (config.BatchingOptions).
        A signature that is not `batchable` is called as it is."""
        if not self.batchable or not inputs:
            return self.function(inputs)
        rows = len(next(iter(inputs.values())))
        padded = next((size for size in self.allowed_batch_sizes if size >= rows), rows)
        if padded > rows:
            inputs = {name: np.concatenate([value, np.repeat(value[-1:], padded - rows, axis=0)])
                      for name, value in inputs.items()}
        return {name: value[:rows] for name, value in self.function(inputs).items()}


def tensorflow_function(function: Callable[..., dict[str, tf.Tensor]],
                        specs: dict[str, TensorSpec]) -> Callable[[Arrays], Arrays]:
    """A SavedModel signature function with numpy in and out (Signature.function's contract)."""
    def call(inputs: Arrays) -> Arrays:
        tensors = {name: tf.convert_to_tensor(value, dtype=tf.string if specs[name].dtype == object
                                              else tf.as_dtype(specs[name].dtype))
                   for name, value in inputs.items()}
        return {name: value.numpy() for name, value in function(**tensors).items()}
    return call


@dataclass
class Servable:
    """A loaded version. Requests hold a reference (refcount) while they use it, so the manager
    can wait for in-flight requests before releasing the model."""
    model: str
    version: int
    path: Path
    signatures: dict[str, Signature]
    signature_defs: get_model_metadata_pb2.SignatureDefMap
    class_names: list[str]
    metadata: dict[str, Any]
    saved_model: Any = field(repr=False, default=None)
    runtime: RuntimeChoice = RuntimeChoice()
    image_contract: bool = True        # labels + image signatures: classify_image, feedback, LiteRT
    closer: Callable[[], None] | None = field(default=None, repr=False)   # frees a session runner
    queues: dict[str, Any] = field(default_factory=dict, repr=False)   # batch queue per signature (core)
    _refs: int = field(default=0, repr=False)
    _closed: bool = field(default=False, repr=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def retain(self) -> bool:
        """Count one more user; False once the servable is released (caller re-resolves)."""
        with self._lock:
            if self._closed:
                return False
            self._refs += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            self._lock.notify_all()

    @property
    def in_flight(self) -> int:
        return self._refs

    def close_when_idle(self, timeout: float | None = None) -> bool:
        """Wait until no request uses this version, then refuse new users and drop the model.
        Returns False if requests were still running after `timeout` (released anyway)."""
        with self._lock:
            idle = self._lock.wait_for(lambda: self._refs == 0, timeout)
            self._closed = True
        self.signatures = {}
        self.saved_model = None
        if self.closer is not None:
            self.closer()
            self.closer = None
        return idle


@dataclass(frozen=True)
class LoadResult:
    servable: Servable | None
    error: str | None
    duration: float


def _spec(info: Any) -> TensorSpec:
    dtype = tf.as_dtype(info.dtype)
    np_dtype = np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
    if info.tensor_shape.unknown_rank:
        return TensorSpec(np_dtype, None)
    return TensorSpec(np_dtype, tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim))


def read_signature_defs(path: Path) -> get_model_metadata_pb2.SignatureDefMap:
    """The SignatureDef map of the version's saved_model.pb (first MetaGraph, tag `serve`), with
    internal entries like `__saved_model_init_op` too: TF Serving's metadata prints them."""
    saved = saved_model_pb2.SavedModel.FromString((path / SAVED_MODEL_FILE).read_bytes())
    graphs = [g for g in saved.meta_graphs if "serve" in g.meta_info_def.tags] or list(saved.meta_graphs)
    if not graphs:
        raise ValueError("saved_model.pb holds no MetaGraph")
    result = get_model_metadata_pb2.SignatureDefMap()
    for name, definition in graphs[0].signature_def.items():
        result.signature_def[name].CopyFrom(definition)
    return result


def servable_signatures(defs: get_model_metadata_pb2.SignatureDefMap) -> dict[str, Any]:
    """The callable entries of a SignatureDef map (not internal ones like __saved_model_init_op)."""
    return {name: d for name, d in defs.signature_def.items() if not name.startswith("__")}


def contract_gap(defs: get_model_metadata_pb2.SignatureDefMap, class_names: list[str]) -> str:
    """Why the version does not follow the image contract, or "" when it does."""
    try:
        check_contract(defs, class_names)
    except ValueError as error:
        return str(error)
    return ""


def check_contract(defs: get_model_metadata_pb2.SignatureDefMap, class_names: list[str]) -> None:
    """Raise ValueError naming what is missing if the version does not follow the contract."""
    for name, (inputs, outputs) in REQUIRED_SIGNATURES.items():
        if name not in defs.signature_def:
            raise ValueError(f"signature {name!r} missing (has {sorted(defs.signature_def)})")
        definition = defs.signature_def[name]
        missing = (inputs - set(definition.inputs)) | (outputs - set(definition.outputs))
        if missing:
            raise ValueError(f"signature {name!r} lacks tensors {sorted(missing)}")
    image = defs.signature_def[DEFAULT_SIGNATURE].inputs[IMAGE_INPUT]
    if tf.as_dtype(image.dtype) != tf.string:
        raise ValueError(f"{DEFAULT_SIGNATURE} input {IMAGE_INPUT!r} must be a string tensor")
    probabilities = _spec(defs.signature_def[DEFAULT_SIGNATURE].outputs["probabilities"])
    if not class_names:
        raise ValueError(f"{LABELS_FILE} is missing or empty")
    if probabilities.shape and probabilities.shape[-1] not in (None, len(class_names)):
        raise ValueError(f"model has {probabilities.shape[-1]} classes but labels.txt lists {len(class_names)}")


WarmupRecord = tuple[str, Arrays]    # (signature name, inputs) of one recorded predict request


def read_warmup_records(path: Path, max_image_pixels: int) -> list[WarmupRecord]:
    """The predict requests of assets.extra/tf_serving_warmup_requests (TF Serving's format), at
    most MAX_WARMUP_RECORDS. A record whose image a request could not send (serving.images: not an
    image, over --max-image-pixels) is skipped with a warning: warm-up obeys the request limits."""
    from tensorflow_serving.apis import prediction_log_pb2

    file = path / WARMUP_PATH
    if not file.exists():
        return []
    records: list[WarmupRecord] = []
    for index, record in enumerate(tf.data.TFRecordDataset(str(file)).take(MAX_WARMUP_RECORDS)):
        entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if not entry.HasField("predict_log"):
            continue
        request = entry.predict_log.request
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        try:
            for item in inputs[IMAGE_INPUT].reshape(-1) if IMAGE_INPUT in inputs else ():
                check_image(item, max_image_pixels, f"warm-up record {index}")
        except ServingError as error:
            log.warning("%s: skipping %s", file, error.message)
            continue
        records.append((request.model_spec.signature_name or DEFAULT_SIGNATURE, inputs))
    return records


def recorded_images(records: list[WarmupRecord]) -> list[bytes]:
    """The encoded images the warm-up records send to the image signature."""
    return [item for name, inputs in records if name == DEFAULT_SIGNATURE and IMAGE_INPUT in inputs
            for item in inputs[IMAGE_INPUT].reshape(-1).tolist()]


def _warm_up(servable: Servable, batching: BatchingOptions, records: list[WarmupRecord],
             images: list[bytes]) -> int:
    """Replay the warm-up records, then run full batches of `images` (the recorded images, or
    generated ones at the model's size when the version has none); returns the calls made.

    On TensorFlow the image signature runs at every batch size the batcher can form
    (`warmup_batch_sizes: all`, the default) and every signature at the full sizes
    (max_batch_size, or each allowed size above 1; with `max` the image signature gets only
    these too), each from `num_batch_threads` threads at once. The first call at a batch size
    allocates its activations and builds oneDNN primitives for that shape, and TensorFlow keeps
    them: done here, before the version is AVAILABLE, no batch of live traffic pays for a new
    shape and the RSS at readiness is the RSS under load. The primitives are cached per op shape
    and shared between signatures, so the others need the full sizes only.
    On LiteRT every call is a batch-1 invoke (serving.litert), so the full sizes alone suffice:
    they create one interpreter per batch thread.
    """
    for name, inputs in records:
        if name in servable.signatures:
            servable.signatures[name].run(inputs)
    calls = len(records)
    full = [size for size in batching.allowed_batch_sizes or (batching.max_batch_size,) if size > 1]
    every = list(batching.allowed_batch_sizes) or list(range(1, batching.max_batch_size + 1))
    on_tensorflow = servable.runtime.runtime == "tensorflow"
    image_sizes = every if batching.warmup_batch_sizes == "all" and on_tensorflow else full
    for size in sorted(set(image_sizes) | set(full), reverse=True) if images else ():
        names = {DEFAULT_SIGNATURE} if size in image_sizes else set()
        names |= set(servable.signatures) if size in full else set()
        for name, inputs in _full_batches(servable, images, size, names).items():
            calls += _run_side_by_side(servable.signatures[name], inputs, batching.num_batch_threads)
    return calls


def _run_side_by_side(signature: Signature, inputs: dict[str, np.ndarray], copies: int) -> int:
    """Run one batch from `copies` threads at once, as the batch threads will; errors propagate."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            signature.run(inputs)
        except BaseException as error:  # noqa: BLE001 - re-raised in the loading thread below
            errors.append(error)

    threads = [threading.Thread(target=run, name=f"warmup-{i}") for i in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return copies


def image_size(servable: Servable) -> int | None:
    """The side of the square pixel input of predict_pixels, if the version has one."""
    pixels = servable.signatures.get(PIXELS_SIGNATURE)
    spec = pixels.inputs.get(PIXELS_INPUT) if pixels else None
    if spec is not None and spec.shape is not None and len(spec.shape) == 4 and spec.shape[1]:
        return int(spec.shape[1])
    return None


def _full_batches(servable: Servable, images: list[bytes], batch_size: int,
                  names: set[str]) -> dict[str, dict[str, np.ndarray]]:
    """One `batch_size` batch for each contract signature in `names`, from the warm-up images
    replicated: the image signature gets the encoded bytes, predict_pixels the same images
    decoded and resized with the trainer's own ops (the pixel input a client of that signature
    would send)."""
    from model_format.imaging import decode_batch

    encoded = np.array([images[i % len(images)] for i in range(batch_size)], dtype=object)
    batches = {DEFAULT_SIGNATURE: {IMAGE_INPUT: encoded}} if DEFAULT_SIGNATURE in names else {}
    size = image_size(servable) if PIXELS_SIGNATURE in names else None
    if size:
        batches[PIXELS_SIGNATURE] = {PIXELS_INPUT: decode_batch(tf.constant(encoded), size).numpy()}
    return batches


def _read_class_names(path: Path) -> list[str]:
    """The labels, or none: a version without them is served without the image contract."""
    return read_labels(path) if (path / LABELS_FILE).exists() else []


def _read_metadata(path: Path) -> dict[str, Any]:
    """The metadata, or {} when absent or unreadable (a warning): it informs, it never blocks."""
    if not (path / METADATA_FILE).exists():
        return {}
    try:
        return read_metadata(path)
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable %s: %s", path / METADATA_FILE, error)
        return {}


def _choose_runtime(servable: Servable, options: RuntimeOptions, images: list[bytes]) -> None:
    """Put the contract signatures on the chosen runtime; drop the SavedModel when nothing of it
    serves any more (its memory goes back before the version is AVAILABLE)."""
    size = image_size(servable)
    reference = servable.signatures[PIXELS_SIGNATURE].run if size else None
    servable.runtime, functions = choose(servable.path, servable.saved_model, reference, options.runtime,
                                         options.precision, servable.metadata, servable.class_names, size,
                                         images)
    for name, function in functions.items():
        signature = servable.signatures[name]
        servable.signatures[name] = Signature(name, signature.inputs, signature.outputs, function)
    if functions and set(functions) >= set(servable.signatures):
        servable.saved_model = None


def _load_contract(model: str, version: int, path: Path, defs: get_model_metadata_pb2.SignatureDefMap,
                   class_names: list[str], batching: BatchingOptions) -> Servable:
    """An image-contract version: tf.saved_model.load, signatures as concrete functions."""
    saved_model = tf.saved_model.load(str(path))
    signatures = {
        name: Signature(name, specs_in, {k: _spec(v) for k, v in d.outputs.items()},
                        tensorflow_function(saved_model.signatures[name], specs_in),
                        batching.allowed_batch_sizes)
        for name, d in servable_signatures(defs).items() if name in saved_model.signatures
        for specs_in in [{k: _spec(v) for k, v in d.inputs.items()}]
    }
    return Servable(model, version, path, signatures, defs, class_names, _read_metadata(path), saved_model)


def _load_generic(model: str, version: int, path: Path, defs: get_model_metadata_pb2.SignatureDefMap,
                  class_names: list[str], batching: BatchingOptions, options: RuntimeOptions,
                  gap: str) -> Servable:
    """Any other SavedModel, served as TF Serving serves it: every signature through a session."""
    from serving.graph_runner import GraphSession

    wanted = options.runtime
    if wanted == "litert":      # `litert` insists (serving.inference_runtime): no silent TensorFlow
        raise ValueError(f"--runtime litert serves image-contract models only; this version has no image "
                         f"contract ({gap})")
    runner = GraphSession(path)
    signatures = {name: Signature(name, {k: _spec(v) for k, v in d.inputs.items()},
                                  {k: _spec(v) for k, v in d.outputs.items()}, runner.function(name),
                                  batching.allowed_batch_sizes)
                  for name, d in servable_signatures(defs).items()}
    choice = RuntimeChoice(note=f"no image contract ({gap}): TensorFlow serves every signature",
                           cause="" if wanted == "tensorflow" else "no_contract")
    return Servable(model, version, path, signatures, defs, class_names, _read_metadata(path),
                    runtime=choice, image_contract=False, closer=runner.close)


def load_version(model: str, version: int, path: Path,
                 batching: BatchingOptions = BatchingOptions(max_batch_size=1),
                 options: RuntimeOptions = RuntimeOptions()) -> LoadResult:
    """Load, check, pick the runtime of and warm up one version. Never raises: failures come
    back as `error`.

    `batching` is how the version will be batched: the warm-up runs the batch sizes it will see
    (`_warm_up`) before the manager marks it AVAILABLE, and the signatures pad to the allowed sizes."""
    started = time.perf_counter()
    try:
        defs = read_signature_defs(path)
        class_names = _read_class_names(path)
        gap = contract_gap(defs, class_names)
        if gap:
            servable = _load_generic(model, version, path, defs, class_names, batching, options, gap)
        else:
            servable = _load_contract(model, version, path, defs, class_names, batching)
        records = read_warmup_records(path, options.max_image_pixels)
        size = image_size(servable) if servable.image_contract else None
        images = recorded_images(records) or (generated_images(size) if size else [])
        if servable.image_contract:
            _choose_runtime(servable, options, images)
        warmed = _warm_up(servable, batching, records, images)
        log.info("model %s version %d loaded from %s on %s %s (%d warm-up calls) in %.2fs",
                 model, version, path, servable.runtime.runtime, servable.runtime.precision, warmed,
                 time.perf_counter() - started)
        return LoadResult(servable, None, time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001 - any failure of a version must not reach the server
        reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        log.error("model %s version %d failed to load from %s: %s", model, version, path, reason)
        return LoadResult(None, reason, time.perf_counter() - started)
