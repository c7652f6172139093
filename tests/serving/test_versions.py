"""Issue 16 item 3: one version-directory rule for trainer and server; a bad model or directory
never stalls the poll for the others; a missing base path is logged once."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from model_format.versions import existing_versions, parse_version
from serving.config import BatchingOptions, ModelConfig, RuntimeOptions
from serving.manager import ServableManager
from serving.source import Reported, scan
from tests.helpers import export_tiny


@pytest.mark.parametrize("name, version", [
    ("1", 1), ("12", 12), ("9223372036854775807", 2**63 - 1),
    ("0", None), ("01", None), ("²", None), ("١", None), ("+1", None), (" 1", None), ("1 ", None),
    ("-1", None), ("9223372036854775808", None), (".staging-1", None), ("v1", None), ("", None),
])
def test_one_canonical_name_per_version(name: str, version: int | None) -> None:
    assert parse_version(name) == version


def _config(name: str, base: Path) -> ModelConfig:
    """A model that loads fast: batch size 1 (one warm-up size), TensorFlow (no LiteRT conversion)."""
    return ModelConfig(name, base, batching=BatchingOptions(max_batch_size=1, num_batch_threads=1),
                       runtime=RuntimeOptions(runtime="tensorflow"))


def _fake_version(base: Path, name: str) -> None:
    (base / name).mkdir(parents=True)
    (base / name / "saved_model.pb").write_bytes(b"x")


def test_server_and_trainer_read_the_same_versions(tmp_path: Path) -> None:
    for name in ("1", "01", "²", "3", "007"):
        _fake_version(tmp_path, name)
    assert sorted(scan(tmp_path)) == existing_versions(tmp_path) == [1, 3]


def test_superscript_directory_does_not_stall_the_poll(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    export_tiny(first, seed=1)
    export_tiny(second, seed=2)
    _fake_version(first, "²")                       # isdigit() is True; int() raised ValueError
    manager = ServableManager((_config("a", first), _config("b", second)))
    manager.poll()
    assert [s.state for s in manager.status("a")] == ["AVAILABLE"]
    assert [s.state for s in manager.status("b")] == ["AVAILABLE"]
    manager.stop()


def test_an_exception_in_one_model_leaves_the_others_polling(tmp_path: Path, monkeypatch) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    export_tiny(first, seed=1)
    export_tiny(second, seed=2)
    manager = ServableManager((_config("a", first), _config("b", second)))
    real = ServableManager._converge

    def broken_for_a(self, model) -> None:
        if model.config.name == "a":
            raise RuntimeError("boom")
        real(self, model)

    monkeypatch.setattr(ServableManager, "_converge", broken_for_a)
    manager.poll()
    assert [s.state for s in manager.status("b")] == ["AVAILABLE"]
    manager.stop()


def test_missing_base_path_logged_once_and_again_after_it_returns(tmp_path: Path, caplog) -> None:
    base = tmp_path / "absent"
    reported = Reported()
    with caplog.at_level(logging.WARNING, logger="serving.source"):
        for _ in range(3):
            assert scan(base, reported) == {}
    assert [r.getMessage() for r in caplog.records if "does not exist" in r.getMessage()] == \
        [f"model base path {base} does not exist; no version can load until it does (checked every poll)"]
    caplog.clear()
    _fake_version(base, "1")
    _fake_version(base, "01")
    with caplog.at_level(logging.WARNING, logger="serving.source"):
        assert list(scan(base, reported)) == [1]
        scan(base, reported)
    assert len(caplog.records) == 1 and "01'" in caplog.records[0].getMessage()
    shutil.rmtree(base)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="serving.source"):
        scan(base, reported)
    assert len(caplog.records) == 1 and "does not exist" in caplog.records[0].getMessage()
