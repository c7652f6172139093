"""Issue 16 items 6 and 8: bad numbers and an unusable model base path are refused before any
training, with exit code 2 and a message naming the flag."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.trainer.conftest import tiny_args
from trainer.cli import main


@pytest.mark.parametrize("extra, words", [
    (["--val-fraction", "0", "--test-fraction", "0"], ["--val-fraction 0", "--val-data"]),
    (["--test-fraction", "0"], ["--test-fraction 0", "--test-data"]),
    (["--val-fraction", "0.6", "--test-fraction", "0.5"], ["must be < 1", "1.1"]),
    (["--val-fraction", "-0.1"], ["--val-fraction", "[0, 1)"]),
    (["--image-size", "-5"], ["--image-size", ">= 1", "-5"]),
    (["--image-size", "0"], ["--image-size", ">= 1", "got 0"]),
    (["--batch-size", "0"], ["--batch-size", ">= 1"]),
    (["--epochs", "0"], ["--epochs", ">= 1"]),
    (["--lr", "0"], ["--lr", "> 0"]),
    (["--dropout", "1"], ["--dropout", "[0, 1)"]),
])
def test_bad_numbers_exit_2_naming_the_flag(tiny_data: Path, tmp_path: Path, capsys, extra, words) -> None:
    started = time.monotonic()
    assert main(tiny_args(tiny_data, tmp_path / "m", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and all(w in err for w in words), err
    assert time.monotonic() - started < 5 and not (tmp_path / "m").exists()


def test_image_size_below_backbone_minimum_exits_2(tiny_data: Path, tmp_path: Path, capsys) -> None:
    assert main(tiny_args(tiny_data, tmp_path / "m", "--image-size", "8")) == 2
    assert "--image-size 8 is below mobilenet_v2's minimum 32" in capsys.readouterr().err


@pytest.mark.parametrize("value, word", [("0", "--top-k must be >= 1"), ("-1", "--top-k must be >= 1")])
def test_predict_top_k_below_one(tmp_path: Path, capsys, value: str, word: str) -> None:
    assert main(["predict", "--model-base-path", str(tmp_path), "--images", str(tmp_path),
                 "--top-k", value]) == 2
    assert word in capsys.readouterr().err


def test_base_path_that_is_a_file(tiny_data: Path, tmp_path: Path, capsys) -> None:
    base = tmp_path / "file"
    base.write_text("not a directory")
    assert main(tiny_args(tiny_data, base)) == 2
    assert f"--model-base-path {base} exists and is not a directory" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_base_path(tiny_data: Path, tmp_path: Path, capsys) -> None:
    base = tmp_path / "ro"
    base.mkdir()
    base.chmod(0o555)
    try:
        assert main(tiny_args(tiny_data, base)) == 2
    finally:
        base.chmod(0o755)
    err = capsys.readouterr().err
    assert f"--model-base-path {base} is not writable" in err
    assert list(base.iterdir()) == []


def test_base_path_under_a_file(tiny_data: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    base = tmp_path / "file" / "models"
    assert main(tiny_args(tiny_data, base)) == 2
    assert f"--model-base-path {base} is not writable: Not a directory" in capsys.readouterr().err
