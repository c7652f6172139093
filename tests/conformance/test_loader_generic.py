"""The loader on models without our image contract (in process, no server)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.config import RuntimeOptions
from serving.loader import load_version


def test_generic_model_loads_on_tensorflow_with_the_reason(model_root: Path) -> None:
    result = load_version("hp2", 123, model_root / "half_plus_two" / "123", options=RuntimeOptions())
    assert result.error is None
    servable = result.servable
    assert not servable.image_contract
    assert servable.runtime.runtime == "tensorflow" and "no image contract" in servable.runtime.note
    assert set(servable.signatures) == {"serving_default", "regress_x_to_y", "regress_x_to_y2",
                                        "regress_x2_to_y3", "classify_x_to_y", "classify_x2_to_y3"}
    assert "__saved_model_init_op" not in servable.signatures
    # shapes are not held to the SignatureDef's [-1, 1]: the graph decides, as in TF Serving
    outputs = servable.signatures["serving_default"].run({"x": np.array([1.0, 2.0], np.float32)})
    np.testing.assert_array_equal(outputs["y"], [2.5, 3.0])
    assert servable.close_when_idle(timeout=1)
    assert servable.closer is None


def test_scalar_output_signature_is_not_batched(model_root: Path) -> None:
    servable = load_version("scalar", 1, model_root / "scalar" / "1", options=RuntimeOptions()).servable
    signature = servable.signatures["serving_default"]
    assert not signature.batchable
    outputs = signature.run({"x": np.array([1.0, 2.0, 3.0], np.float32)})
    assert float(outputs["total"]) == 6.0 and outputs["total"].shape == ()
    tf2 = load_version("tf2", 123, model_root / "half_plus_two_tf2" / "123", options=RuntimeOptions()).servable
    assert tf2.signatures["serving_default"].batchable


def test_runtime_litert_refuses_a_model_without_the_contract(model_root: Path) -> None:
    """`--runtime litert` insists (serving.inference_runtime): no silent fallback to TensorFlow."""
    result = load_version("hp2", 123, model_root / "half_plus_two" / "123", options=RuntimeOptions(runtime="litert"))
    assert result.servable is None and "image-contract models only" in result.error
