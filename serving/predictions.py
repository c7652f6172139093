"""Recent predictions, remembered so that the truth can be reported back later (feedback).

Online accuracy needs to join "what we predicted" with "what it really was", which arrives later
from a person or a downstream system. The store is bounded (oldest evicted first), so memory
stays flat however long the server runs; feedback for an evicted id is NOT_FOUND.
"""
from __future__ import annotations

import collections
import threading
import uuid
from dataclasses import dataclass

from serving.errors import ServingError, invalid, not_found
from serving.metrics import FEEDBACK, FEEDBACK_CORRECT


@dataclass
class Prediction:
    """One remembered top-1 prediction."""
    prediction_id: str
    model: str
    version: int
    label: str
    confidence: float
    class_names: tuple[str, ...]
    true_label: str | None = None


@dataclass(frozen=True)
class Feedback:
    """The outcome of one feedback call."""
    prediction_id: str
    model: str
    version: int
    predicted_label: str
    true_label: str
    correct: bool


class PredictionStore:
    """Bounded, thread-safe map prediction id -> Prediction."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: collections.OrderedDict[str, Prediction] = collections.OrderedDict()
        self._lock = threading.Lock()

    def remember(self, model: str, version: int, label: str, confidence: float,
                 class_names: tuple[str, ...]) -> str:
        """Store a prediction and return its new id."""
        prediction_id = uuid.uuid4().hex
        with self._lock:
            self._items[prediction_id] = Prediction(prediction_id, model, version, label, confidence, class_names)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return prediction_id

    def get(self, prediction_id: str) -> Prediction | None:
        with self._lock:
            return self._items.get(prediction_id)

    def __len__(self) -> int:
        return len(self._items)

    def feedback(self, model: str, prediction_id: str, true_label: str) -> Feedback:
        """Record the true label of a prediction once; counts it for online accuracy.

        NOT_FOUND for an unknown/evicted id (or one of another model), ALREADY_EXISTS for a second
        report, INVALID_ARGUMENT for a label the predicting version does not know.
        """
        if not isinstance(prediction_id, str) or not prediction_id:
            raise invalid("feedback needs a prediction_id string")
        if not isinstance(true_label, str) or not true_label:
            raise invalid("feedback needs a label string")
        with self._lock:
            item = self._items.get(prediction_id)
            if item is None or item.model != model:
                raise not_found(f"prediction {prediction_id!r} of model {model!r} is unknown or expired")
            if item.true_label is not None:
                raise ServingError("ALREADY_EXISTS", f"prediction {prediction_id!r} already has feedback "
                                                     f"({item.true_label!r})")
            if true_label not in item.class_names:
                raise invalid(f"label {true_label!r} is not a class of model {model!r} version "
                              f"{item.version} (classes: {list(item.class_names)})")
            item.true_label = true_label
        correct = true_label == item.label
        FEEDBACK.labels(model, str(item.version)).inc()
        FEEDBACK_CORRECT.labels(model, str(item.version)).inc(1 if correct else 0)  # series exists from 0
        return Feedback(prediction_id, model, item.version, item.label, true_label, correct)
