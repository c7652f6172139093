"""TensorProto <-> numpy for the gRPC adapter.

TensorFlow's own conversion (`tf.make_ndarray` / `tf.make_tensor_proto`) is used so every dtype and
encoding a TF Serving client may send (tensor_content, typed *_val fields, one value broadcast to
the whole shape) means exactly what it means to TensorFlow. One guard is added first: a proto may
*declare* any shape and carry a single value, which TensorFlow would broadcast into an array of
that size. A 40-byte message must not allocate gigabytes, so the declared size is checked against
what a message of the configured maximum size could really carry.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from serving.errors import invalid

_STRING_DTYPES = (object, np.bytes_, np.str_)


def _declared_elements(name: str, proto: tensor_pb2.TensorProto) -> int:
    if proto.tensor_shape.unknown_rank:
        raise invalid(f"input {name!r}: tensor_shape must have a known rank")
    count = 1
    for dim in proto.tensor_shape.dim:
        if dim.size < 0:
            raise invalid(f"input {name!r}: dimension {dim.size} is negative")
        count *= dim.size
    return count


def to_ndarray(name: str, proto: tensor_pb2.TensorProto, max_bytes: int) -> np.ndarray:
    """One request input as numpy; INVALID_ARGUMENT for anything TensorFlow cannot read."""
    if proto.dtype == types_pb2.DT_INVALID:
        raise invalid(f"input {name!r}: dtype is missing (DT_INVALID)")
    try:
        itemsize = 1 if proto.dtype == types_pb2.DT_STRING else tf.as_dtype(proto.dtype).size
    except TypeError:
        raise invalid(f"input {name!r}: unsupported dtype {proto.dtype}") from None
    elements = _declared_elements(name, proto)
    if elements * itemsize > max_bytes:
        raise invalid(f"input {name!r}: shape declares {elements} elements, more than a message of "
                      f"at most {max_bytes} bytes can carry")
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError, KeyError) as error:   # KeyError: DT_RESOURCE, DT_VARIANT, ...
        raise invalid(f"input {name!r}: cannot read tensor: {error}") from None


def to_ndarrays(inputs: Mapping[str, tensor_pb2.TensorProto], max_bytes: int) -> dict[str, np.ndarray]:
    return {name: to_ndarray(name, proto, max_bytes) for name, proto in inputs.items()}


# dtype -> the typed TensorProto field TF Serving fills (Tensor::AsProtoField), and the numpy view
_VALUE_FIELDS: dict[np.dtype, tuple[str, np.dtype | None]] = {
    np.dtype(np.float32): ("float_val", None), np.dtype(np.float64): ("double_val", None),
    np.dtype(np.int32): ("int_val", None), np.dtype(np.int16): ("int_val", np.dtype(np.int32)),
    np.dtype(np.int8): ("int_val", np.dtype(np.int32)), np.dtype(np.uint8): ("int_val", np.dtype(np.int32)),
    np.dtype(np.uint16): ("int_val", np.dtype(np.int32)), np.dtype(np.int64): ("int64_val", None),
    np.dtype(np.uint32): ("uint32_val", None), np.dtype(np.uint64): ("uint64_val", None),
    np.dtype(np.bool_): ("bool_val", None), np.dtype(np.float16): ("half_val", np.dtype(np.uint16)),
}


def to_tensor_proto(value: np.ndarray) -> tensor_pb2.TensorProto:
    """One output as a TensorProto with its values in the typed field (float_val, int_val,
    string_val, ...), as TF Serving answers: its tests and clients read `float_val` directly.
    Dtypes without such a field here (complex, bfloat16) fall back to tensor_content."""
    array = np.asarray(value)
    if array.dtype.type in _STRING_DTYPES or array.dtype == object:
        return tf.make_tensor_proto(array, dtype=tf.string)
    field = _VALUE_FIELDS.get(array.dtype)
    if field is None:
        return tf.make_tensor_proto(array)
    name, view = field
    proto = tensor_pb2.TensorProto(dtype=tf.as_dtype(array.dtype).as_datatype_enum)
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape)
    flat = array.reshape(-1)
    if view is not None:
        flat = flat.view(view) if view.itemsize == array.dtype.itemsize else flat.astype(view)
    getattr(proto, name).extend(flat.tolist())
    return proto
