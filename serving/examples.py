"""TF Serving's Classify and Regress on tf.Examples: input, signature checks and results.

Why its own module: both protocols send the same thing (a list of tf.Examples, maybe with a
context Example) and the core runs it the way TF Serving's classifier and regressor do:
- the Examples are serialized into the signature's one string input (the context first and the
  example after it, so that parsing merges them and an example's own feature wins);
- Classify reads the `classes` (string) and/or `scores` (float) outputs, [batch, classes];
  without `classes` every label is "" (half_plus_two's classify_x_to_y answers [["", 3.0]]);
- Regress reads the `outputs` output, [batch] or [batch, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import input_pb2

from serving.errors import invalid

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PREDICT_METHOD = "tensorflow/serving/predict"


@dataclass(frozen=True)
class ExampleInput:
    """The Examples of a Classify/Regress/MultiInference request (TF Serving's `Input`)."""
    examples: Sequence[example_pb2.Example]
    context: example_pb2.Example | None = None

    @classmethod
    def from_proto(cls, message: input_pb2.Input) -> "ExampleInput":
        kind = message.WhichOneof("kind")
        if kind == "example_list":
            return cls(list(message.example_list.examples))
        if kind == "example_list_with_context":
            return cls(list(message.example_list_with_context.examples), message.example_list_with_context.context)
        raise invalid("Input is empty")

    def check(self) -> None:
        if not self.examples:
            raise invalid("Input is empty")

    def serialized(self) -> np.ndarray:
        """One string per example, the context's features merged in (TF Serving's encoding)."""
        prefix = self.context.SerializeToString() if self.context is not None else b""
        return np.array([prefix + example.SerializeToString() for example in self.examples], dtype=object)

    def feature_bytes(self, name: str) -> list[bytes]:
        """The single bytes value of feature `name` in each example (from the context if absent)."""
        values = []
        for index, example in enumerate(self.examples):
            features = example.features.feature
            if name not in features and self.context is not None:
                features = self.context.features.feature
            found = list(features[name].bytes_list.value) if name in features else []
            if len(found) != 1:
                raise invalid(f"example {index} needs exactly one value in the bytes feature {name!r}, "
                              f"found {len(found)}")
            values.append(found[0])
        return values


def example_input_name(signature: str, method: str, actual: str, inputs: dict[str, object]) -> str:
    """The signature's one input, after TF Serving's method check."""
    if actual != method:
        raise invalid(f"Expected {method.rsplit('/', 1)[-1]} signature method_name to be {method}. Was: {actual} "
                      f"(signature {signature!r})")
    if len(inputs) != 1:
        raise invalid(f"Expected one input Tensor in signature {signature!r}, found {len(inputs)}")
    return next(iter(inputs))


def classifications(outputs: dict[str, np.ndarray], rows: int) -> list[list[tuple[str, float]]]:
    """Per example, its (label, score) pairs in the model's order, as TF Serving answers them."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    if classes is None and scores is None:
        raise invalid("Expected classification signature outputs to contain at least one of 'classes' or "
                      "'scores'")
    reference = scores if scores is not None else classes
    reference = reference.reshape(rows, -1) if reference.size else reference.reshape(rows, 0)
    labels = classes.reshape(rows, -1) if classes is not None else np.full(reference.shape, b"", dtype=object)
    values = scores.reshape(rows, -1) if scores is not None else np.zeros(reference.shape, dtype=np.float32)
    return [[(_text(label), float(score)) for label, score in zip(label_row, score_row)]
            for label_row, score_row in zip(labels, values)]


def regressions(outputs: dict[str, np.ndarray], rows: int) -> list[float]:
    """Per example, its regression value (the `outputs` output)."""
    values = outputs.get("outputs")
    if values is None:
        raise invalid("No output Tensor with name 'outputs' found in the regression signature")
    if values.size != rows:
        raise invalid(f"Expected output Tensor shape to be [{rows}] or [{rows}, 1], got {list(values.shape)}")
    return [float(value) for value in values.reshape(-1)]


def _text(label: object) -> str:
    return label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
