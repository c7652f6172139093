"""serving.predictions: the store of recent predictions that feedback refers to."""
from __future__ import annotations

import pytest

from serving.errors import ServingError
from serving.predictions import PredictionStore


def test_prediction_store_feedback_rules_and_eviction() -> None:
    store = PredictionStore(capacity=2)
    first = store.remember("m", 1, "cat", 0.9, ("cat", "dog"))
    second = store.remember("m", 1, "dog", 0.6, ("cat", "dog"))
    with pytest.raises(ServingError) as error:
        store.feedback("m", second, "horse")
    assert error.value.code == "INVALID_ARGUMENT"
    assert store.feedback("m", second, "cat").correct is False
    with pytest.raises(ServingError) as error:
        store.feedback("m", second, "cat")
    assert error.value.code == "ALREADY_EXISTS"
    store.remember("m", 1, "cat", 0.7, ("cat", "dog"))           # evicts `first`
    for pid, model in [(first, "m"), ("nope", "m"), (second, "other")]:
        with pytest.raises(ServingError) as error:
            store.feedback(model, pid, "cat")
        assert error.value.code == "NOT_FOUND"
