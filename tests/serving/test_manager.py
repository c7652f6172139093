"""The manager and core in-process: atomic swap with refcounts, labels, policies, status."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from serving.aspired_version_policy import VersionPolicy
from serving.config import ModelConfig, parse_args
from serving.core import ServingCore
from serving.errors import ServingError
from serving.manager import ServableManager
from tests.helpers import export_tiny, image_bytes


def _states(manager: ServableManager, name: str = "tiny") -> dict[int, str]:
    return {s.version: s.state for s in manager.status(name)}


def _wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_swap_waits_for_in_flight_requests_on_the_old_version(tmp_path: Path) -> None:
    base = tmp_path / "tiny"
    export_tiny(base, seed=1)
    manager = ServableManager((ModelConfig("tiny", base),))
    manager.poll()
    assert _states(manager) == {1: "AVAILABLE"}
    with manager.acquire("tiny") as held:                  # a request still using version 1
        assert held.version == 1
        export_tiny(base, seed=2)
        manager.poll()                                     # loads 2, then unloads 1
        with manager.acquire("tiny") as fresh:
            assert fresh.version == 2                      # new requests get version 2 at once
        time.sleep(0.2)
        assert _states(manager)[1] == "UNLOADING"          # ... but 1 stays loaded for `held`
        assert held.signatures                             # and still works
        out = held.signatures["serving_default"].run({"image_bytes": np.array([image_bytes(1)], object)})
        assert out["probabilities"].shape == (1, 3)
    _wait(lambda: _states(manager)[1] == "END")
    assert held.signatures == {} and not held.retain()     # released once the request ended
    manager.stop()
    assert _states(manager) == {1: "END", 2: "END"}


def test_labels_and_all_policy_route_to_their_versions(tmp_path: Path) -> None:
    base = tmp_path / "tiny"
    for seed in (1, 2, 3):
        export_tiny(base, seed=seed)
    config = ModelConfig("tiny", base, VersionPolicy("all"), {"stable": 1, "canary": 2, "next": 9})
    options = parse_args(["--model-name", "x", "--model-base-path", str(base)], {})
    core = ServingCore(replace(options, models=(config,)))
    core.manager.poll()
    image = {"image_bytes": [image_bytes(1)]}
    answers = {key: core.predict("tiny", version=v, label=l, inputs=image)
               for key, v, l in [("latest", None, None), ("stable", None, "stable"),
                                 ("canary", None, "canary"), ("v3", 3, None)]}
    assert {key: version for key, (version, _) in answers.items()} == {"latest": 3, "stable": 1, "canary": 2, "v3": 3}
    assert not np.allclose(answers["stable"][1]["probabilities"], answers["canary"][1]["probabilities"])
    # an unknown label is INVALID_ARGUMENT, as in TF Serving (http_rest_api_handler_test.cc)
    for kwargs, code in [({"label": "nope"}, "INVALID_ARGUMENT"), ({"label": "next"}, "NOT_FOUND"),
                         ({"version": 7}, "NOT_FOUND")]:
        with pytest.raises(ServingError) as error:
            core.predict("tiny", inputs=image, **kwargs)
        assert error.value.code == code
    assert [s.version for s in core.model_status("tiny")] == [3, 2, 1]
    core.stop()


def test_specific_policy_and_latest_n(tmp_path: Path) -> None:
    base = tmp_path / "tiny"
    for seed in (1, 2, 3):
        export_tiny(base, seed=seed)
    specific = ServableManager((ModelConfig("tiny", base, VersionPolicy("specific", versions=(2,))),))
    specific.poll()
    assert specific.available_versions("tiny") == [2] and set(_states(specific)) == {2}
    latest2 = ServableManager((ModelConfig("tiny", base, VersionPolicy("latest", latest=2)),))
    latest2.poll()
    assert latest2.available_versions("tiny") == [2, 3]
    specific.stop()
    latest2.stop()


def test_failed_load_keeps_last_good_version_and_retries_when_fixed(tmp_path: Path) -> None:
    base = tmp_path / "tiny"
    export_tiny(base, seed=1)
    manager = ServableManager((ModelConfig("tiny", base),), load_retry_interval=60, max_load_retries=1)
    manager.poll()
    good = export_tiny(base, seed=2)
    pb = good / "saved_model.pb"
    content = pb.read_bytes()
    pb.write_bytes(content[:100])
    manager.poll()
    status = {s.version: s for s in manager.status("tiny")}
    assert status[2].state == "END" and "load failed" in status[2].error
    assert manager.available_versions("tiny") == [1]
    manager.poll()                                         # in backoff: no new attempt
    assert manager.status("tiny", 2)[0].error == status[2].error
    time.sleep(0.01)
    pb.write_bytes(content)                                # the file is repaired: retried at once
    manager.poll()
    _wait(lambda: manager.available_versions("tiny") == [2])
    manager.stop()
