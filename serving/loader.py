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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from model_format.contract import (
    DEFAULT_SIGNATURE, IMAGE_INPUT, LABELS_FILE, METADATA_FILE, PIXELS_SIGNATURE, REQUIRED_SIGNATURES, SAVED_MODEL_FILE,
    read_labels, read_metadata,
)
from serving.config import BatchingOptions, RuntimeOptions
from serving.inference_runtime import RuntimeChoice, choose
from serving.servable import Servable, Signature, TensorSpec, image_size, tensorflow_function
from serving.warmup import read_warmup_records, warm_up, warmup_images

log = logging.getLogger(__name__)


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
        servable.signatures[name] = Signature(name, signature.inputs, signature.outputs, function, batch_gain=False)
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
    (serving.warmup) before the manager marks it AVAILABLE, and the signatures pad to the allowed sizes."""
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
        images = warmup_images(servable, records)
        if servable.image_contract:
            _choose_runtime(servable, options, images)
        warmed = warm_up(servable, batching, records, images)
        log.info("model %s version %d loaded from %s on %s %s (%d warm-up calls) in %.2fs",
                 model, version, path, servable.runtime.runtime, servable.runtime.precision, warmed,
                 time.perf_counter() - started)
        return LoadResult(servable, None, time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001 - any failure of a version must not reach the server
        reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        log.error("model %s version %d failed to load from %s: %s", model, version, path, reason)
        return LoadResult(None, reason, time.perf_counter() - started)
