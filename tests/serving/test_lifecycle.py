"""Versions coming and going under a running server, with a client running throughout.

Version 2 written -> served within a few poll intervals, no failed request; a broken version 3
(truncated saved_model.pb) -> reported, counted, retried, version 2 keeps serving; a deleted
version -> unloaded, the next one serves. Plus: no version yet -> 503, and graceful SIGTERM.
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import export_tiny, image_bytes
from tests.server_process import ClassifyLoop, start_server

POLL = 0.5


def _metric(url: str, name: str, **labels: str) -> float:
    text = requests.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def _status(url: str) -> dict[str, dict]:
    return {s["version"]: s for s in requests.get(f"{url}/v1/models/tiny").json()["model_version_status"]}


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _broken_version(base: Path, source: Path, version: int) -> None:
    """A copy of a good version with saved_model.pb cut in half, published by rename."""
    staging = base / f".staging-broken{version}"
    shutil.copytree(source, staging)
    pb = staging / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    os.rename(staging, base / str(version))


def test_hot_swap_broken_version_and_deletion_with_no_failed_request(tmp_path: Path, serving_runtime: str) -> None:
    base = tmp_path / "tiny"
    export_tiny(base, seed=1)
    with start_server("--model-name", "tiny", "--model-base-path", str(base), "--poll-interval", str(POLL),
                      "--load-retry-interval", "0.5", "--runtime", serving_runtime) as server:
        url = server.rest_url
        client = ClassifyLoop(url, image_bytes(3))
        client.start()
        client.wait_for_version(1, 10)

        # version 2 goes live on its own; version 1 is unloaded after it
        export_tiny(base, seed=2)
        took = client.wait_for_version(2, 40 * POLL)     # generous for a loaded CI machine
        print(f"version 2 served {took:.2f}s after its export")
        _wait(lambda: _status(url)["1"]["state"] == "END", 30, "version 1 to be unloaded")
        assert _status(url)["2"]["state"] == "AVAILABLE"
        assert _status(url)["2"]["runtime"]["name"] == serving_runtime

        # a broken version 3: reported, counted, retried with backoff; version 2 keeps serving
        _broken_version(base, base / "2", 3)
        _wait(lambda: _status(url).get("3", {}).get("status", {}).get("error_message"), 30, "version 3's error")
        status3 = _status(url)["3"]
        assert status3["state"] == "END" and "load failed" in status3["status"]["error_message"]
        _wait(lambda: _metric(url, "serving_model_load_failures_total", model="tiny", version="3") >= 2, 30,
              "a retry of version 3")
        served_before = len(client.versions)
        time.sleep(4 * POLL)
        assert len(client.versions) > served_before and set(client.versions[served_before:]) == {2}
        assert requests.get(f"{url}/readyz").status_code == 200
        assert "version 3" in server.log() and "failed to load" in server.log()

        # deleting versions 3 and 2 from disk: 2 is unloaded, 1 (now the latest on disk) serves again
        shutil.rmtree(base / "3")
        shutil.rmtree(base / "2")
        client.wait_for_version(1, 40 * POLL)
        _wait(lambda: _status(url)["2"]["state"] == "END", 30, "version 2 to be unloaded")

        client.stop_flag.set()
        client.join()
        assert len(client.statuses) > 20
        assert client.failures == [], client.failures[:3]
        assert _metric(url, "serving_model_version_state", model="tiny", version="2", state="END") == 1.0


def test_no_version_yet_answers_503_then_serves(tmp_path: Path) -> None:
    base = tmp_path / "tiny"
    with start_server("--model-name", "tiny", "--model-base-path", str(base), "--poll-interval", str(POLL),
                      grpc=False, wait_ready=False) as server:
        url = server.rest_url
        assert requests.get(f"{url}/readyz").status_code == 503
        answer = requests.post(f"{url}/v1/models/tiny:classify_image", data=image_bytes(1),
                               headers={"Content-Type": "image/jpeg"})
        assert answer.status_code == 503 and "no version" in answer.json()["error"]
        export_tiny(base, seed=1)
        server.wait_ok("/readyz", 20)
        assert requests.post(f"{url}/v1/models/tiny:classify_image", data=image_bytes(1),
                             headers={"Content-Type": "image/jpeg"}).status_code == 200


def _large_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((2500, 2500), 60).convert("RGB").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_sigterm_finishes_in_flight_requests_and_exits_cleanly(tiny_base: Path) -> None:
    # --max-batch-size 1: the requests run one after another, so when the first answer is back the
    # others are still in flight (a version is warmed up for its max batch: one batch would be quick).
    # On TensorFlow: this tests the shutdown, and LiteRT answered the first of the 12 large images so
    # fast that a loaded machine had not yet sent the last request (a fresh-clone CI run: 11 of 12).
    server = start_server("--model-name", "tiny", "--model-base-path", str(tiny_base), "--runtime", "tensorflow",
                          "--graceful-timeout", "15", "--max-batch-size", "1", grpc=False)
    url, image = server.rest_url, _large_jpeg()
    probe = requests.Session()
    assert probe.get(f"{url}/readyz").status_code == 200           # a kept-alive connection
    results: list[int] = []
    finished: list[float] = []
    def classify() -> None:
        try:
            results.append(requests.post(f"{url}/v1/models/tiny:classify_image", data=image,
                                         headers={"Content-Type": "image/jpeg"}, timeout=30).status_code)
        except requests.RequestException as error:        # reported by the assertion below
            results.append(repr(error))
        finished.append(time.monotonic())
    threads = [threading.Thread(target=classify) for _ in range(12)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while not finished and time.monotonic() < deadline:              # the first answer is back
        time.sleep(0.002)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert 0 < len(finished) < 12                                    # the rest are in flight
    time.sleep(0.3)
    draining = probe.get(f"{url}/readyz")                            # readiness false first
    assert draining.status_code == 503 and draining.json()["draining"] is True
    for thread in threads:
        thread.join()
    assert results == [200] * 12
    assert max(finished) > started           # some were still running when SIGTERM arrived
    assert server.proc.wait(20) == 0 and time.monotonic() - started < 15
    assert "SIGTERM: draining" in server.log()
    assert "TensorFlow threads: intra-op 1, inter-op auto" in server.log()   # the worker's defaults
