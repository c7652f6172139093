"""The console page in a real browser: Debian's chromium, headless, driven by Playwright.

The server is the real one (gunicorn) on a tiny model exported by the trainer's export code with
the fashion demo's class names and stage 1 / stage 2 figures in its metadata. The test uploads a
held-out demo image (a generated one when the demo data is absent), checks the bars against the
SavedModel called directly, posts feedback and watches the online accuracy move, and checks the
retrain controls stay hidden until the admin token is typed. The screenshot goes to a temporary
directory (SCREENSHOT_DIR overrides it); docs/img/console.png was taken once by hand.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import requests
from playwright import sync_api as playwright_api
from playwright.sync_api import Page, expect

from tests.conftest import MATERIALS
from tests.helpers import TINY_SIZE, image_bytes, tiny_model
from tests.server_process import ServerHandle, start_server
from trainer.export import export_version

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LABELS = ["ankle_boot", "bag", "coat", "dress", "pullover", "sandal", "shirt", "sneaker", "trouser", "tshirt_top"]
TOKEN = "console-admin-token"
EVALUATION = {"stage1": {"accuracy": 0.812}, "stage2": {"accuracy": 0.874}}
TIMEOUT_MS = 30_000


def demo_image() -> bytes:
    """A held-out Fashion-MNIST image when the demo data is there, else a generated JPEG."""
    images = sorted((MATERIALS / "fashion-mnist" / "heldout").glob("*/*.png"))
    return images[0].read_bytes() if images else image_bytes(5)


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("console-models") / "fashion"
    return export_version(tiny_model(4, num_classes=len(LABELS)), base, model_name="fashion", labels=LABELS,
                          image_size=TINY_SIZE, metadata={"backbone": "tiny-test", "evaluation": EVALUATION},
                          warmup_images=[image_bytes(0)])


@pytest.fixture(scope="module")
def server(version_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    root = tmp_path_factory.mktemp("console-admin")
    (root / "token").write_text(TOKEN + "\n")
    (root / "data").mkdir()
    with start_server("--model-name", "fashion", "--model-base-path", str(version_dir.parent),
                      "--admin-token-file", str(root / "token"), "--data-root", str(root / "data"),
                      "--jobs-dir", str(root / "jobs"), grpc=False) as handle:
        yield handle


@pytest.fixture(scope="module")
def page(server: ServerHandle) -> Iterator[Page]:
    if not Path(CHROMIUM).exists():     # a failure, not a skip: make test installs it (Makefile DEBS)
        pytest.fail("Debian's chromium is missing: scripts/ensure-debs.sh chromium")
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
        tab = browser.new_page(viewport={"width": 1040, "height": 1100})
        tab.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        # Waits use expect(), not wait_for_function: its polling evaluates strings, which the page's
        # Content-Security-Policy (no 'unsafe-eval') rightly refuses.
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto(server.rest_url + "/")
        yield tab
        browser.close()
        assert errors == [], errors


def model_top1(version_dir: Path, data: bytes) -> str:
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    probabilities = signature(image_bytes=tf.constant([data]))["probabilities"].numpy()[0]
    return LABELS[int(np.argmax(probabilities))]


def feedback_total(server: ServerHandle) -> float:
    text = requests.get(server.rest_url + "/metrics", timeout=10).text
    match = re.search(r'^serving_feedback_total\{model="fashion",version="1"\} (\S+)$', text, re.M)
    return float(match[1]) if match else 0.0


def test_the_page_shows_the_model_its_runtime_and_accuracies(page: Page) -> None:
    row = page.locator('.model[data-model="fashion"] tr[data-version="1"]')
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[:2] == ["1", "AVAILABLE"]
    assert cells[2].split()[0] in ("tensorflow", "litert")
    assert cells[3:6] == ["81.2 %", "87.4 %", "–"]


def test_retrain_stays_hidden_without_the_token(page: Page, server: ServerHandle) -> None:
    assert page.locator("#retrain").is_hidden()
    assert TOKEN not in page.content()
    page.fill("#token", "wrong-token")
    page.click("#unlock button")
    expect(page.locator("#unlock-result")).to_contain_text("wrong bearer token", timeout=TIMEOUT_MS)
    assert page.locator("#retrain").is_hidden()


def test_upload_draws_the_models_top_classes_and_feedback_moves_online_accuracy(
        page: Page, server: ServerHandle, version_dir: Path, tmp_path: Path) -> None:
    data = demo_image()
    page.set_input_files("#file", files=[{"name": "demo.png", "mimeType": "image/png", "buffer": data}])
    page.locator("#bars li").first.wait_for()
    bars = page.locator("#bars li")
    assert bars.count() == 5
    assert bars.first.get_attribute("data-label") == model_top1(version_dir, data)
    assert page.inner_text("#answer-version") == "1"
    assert re.fullmatch(r"[0-9a-f]{32}", page.inner_text("#answer-id"))
    widths = [float(w) for w in page.eval_on_selector_all(
        "#bars .fill", "nodes => nodes.map(n => parseFloat(n.style.width))")]
    assert widths == sorted(widths, reverse=True) and widths[0] > 0

    before = feedback_total(server)
    wrong = next(label for label in LABELS if label != bars.first.get_attribute("data-label"))
    page.select_option("#true-label", wrong)
    page.click("#feedback button")
    expect(page.locator("#feedback-result")).to_contain_text("wrong", timeout=TIMEOUT_MS)
    online = page.locator('.model[data-model="fashion"] tr[data-version="1"] td.online')
    expect(online).to_have_text("0.0 % (1)", timeout=TIMEOUT_MS)
    assert feedback_total(server) == before + 1
    shots = Path(os.environ.get("SCREENSHOT_DIR", tmp_path))
    page.screenshot(path=str(shots / "console.png"), full_page=True)


def test_the_token_unlocks_retraining_and_is_kept_in_memory_only(page: Page) -> None:
    page.fill("#token", TOKEN)
    page.click("#unlock button")
    page.locator("#retrain").wait_for(state="visible")
    assert page.input_value("#token") == ""
    stored = page.evaluate("() => [localStorage.length, sessionStorage.length, document.cookie]")
    assert stored == [0, 0, ""]
    assert TOKEN not in page.content()
    # The form reaches the retrain API with the token (a folder that is not there: no trainer starts).
    page.fill("#retrain-data", "no-such-folder")
    page.click("#retrain-form button")
    expect(page.locator("#retrain-result")).to_contain_text("not a directory", timeout=TIMEOUT_MS)
