"""serving.source: which complete versions a base path holds (the name rule: test_versions.py)."""
from __future__ import annotations

import time
from pathlib import Path

from serving.source import scan


def test_source_reports_only_complete_numeric_versions(tmp_path: Path) -> None:
    for name, complete in [("1", True), ("2", False), (".staging-ab12", True), ("3a", True),
                           ("0", True), ("10", True)]:
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / "saved_model.pb").write_bytes(b"x")
    (tmp_path / "7").write_text("a file, not a directory")
    assert sorted(scan(tmp_path)) == [1, 10]
    assert scan(tmp_path / "missing") == {}
    before = scan(tmp_path)[1].fingerprint
    time.sleep(0.01)
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"xy")
    assert scan(tmp_path)[1].fingerprint != before
