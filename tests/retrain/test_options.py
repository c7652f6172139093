"""Retrain options: the allow-list, types, ranges and the data-root confinement."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from serving.errors import ServingError
from serving.jobs.options import trainer_arguments, validate_options


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    (tmp_path / "data" / "pizza").mkdir(parents=True)
    (tmp_path / "data" / "weights.h5").write_bytes(b"w")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "w.h5").write_bytes(b"w")
    os.symlink(tmp_path / "outside", tmp_path / "data" / "escape")
    return tmp_path / "data"


def check(body: object, root: Path, must_exist: bool = True) -> dict:
    return validate_options(body, data_root=str(root), must_exist=must_exist)


def rejected(body: object, root: Path, must_exist: bool = True) -> str:
    with pytest.raises(ServingError) as info:
        check(body, root, must_exist)
    assert info.value.code == "INVALID_ARGUMENT"
    return info.value.message


def test_valid_options_become_trainer_flags(data_root: Path) -> None:
    options = check({"data": "pizza", "backbone": "mobilenet_v2", "weights": "none", "image_size": 96,
                     "epochs": 2, "ft_epochs": 0, "unfreeze_top": 20, "cache_features": True,
                     "learning_rate": 0.001, "ft_schedule": "constant"}, data_root)
    assert options["data"] == str(data_root / "pizza")
    args = trainer_arguments(options)
    assert args[:2] == ["--data", str(data_root / "pizza")]
    assert "--cache-features" in args and "--image-size" in args and args[args.index("--epochs") + 1] == "2"
    assert args[args.index("--lr") + 1] == "0.001"
    assert args[args.index("--ft-schedule") + 1] == "constant"
    assert args[args.index("--unfreeze-top") + 1] == "20"
    all_layers = trainer_arguments(check({"data": "pizza", "unfreeze_top": "all"}, data_root))
    assert all_layers[all_layers.index("--unfreeze-top") + 1] == "all"
    assert "--cache-features" not in trainer_arguments({"cache_features": False})


def test_absolute_path_inside_root_and_weights_file(data_root: Path) -> None:
    options = check({"data": str(data_root / "pizza"), "weights": "weights.h5"}, data_root)
    assert options["weights"] == str(data_root / "weights.h5")


@pytest.mark.parametrize("body, needle", [
    ({"data": "pizza", "command": "rm -rf /"}, "unknown option"),
    ({"epochs": 1}, "missing required"),
    ([1, 2], "JSON object"),
    ({"data": "pizza", "epochs": "3"}, "integer"),
    ({"data": "pizza", "epochs": True}, "integer"),
    ({"data": "pizza", "epochs": 100000}, "between"),
    ({"data": "pizza", "dropout": 2.5}, "between"),
    ({"data": "pizza", "learning_rate": float("nan")}, "between"),
    ({"data": "pizza", "backbone": "../x"}, "must match"),
    ({"data": "pizza", "cache_features": "yes"}, "true or false"),
    ({"data": "pizza", "ft_schedule": "linear"}, "one of ['constant', 'cosine']"),
    ({"data": "pizza", "unfreeze_top": "most"}, "an integer or 'all'"),
    ({"data": "pizza", "ft_schedule": ["cosine"]}, "one of"),
    ({"data": "../outside"}, "under the data root"),
    ({"data": "/etc"}, "under the data root"),
    ({"data": "escape"}, "under the data root"),          # symlink out of the root
    ({"data": "nope"}, "not a directory"),
    ({"data": ""}, "non-empty"),
    ({"data": "pizza", "weights": "escape/w.h5"}, "under the data root"),
    ({"data": "pizza", "weights": "missing.h5"}, "a file under the data root"),
])
def test_bad_options_are_rejected_with_the_reason(data_root: Path, body: object, needle: str) -> None:
    assert needle in rejected(body, data_root)


def test_without_local_data_only_lexical_checks_apply(data_root: Path) -> None:
    """The kubernetes backend cannot see the data volume: existence is not checked, traversal is."""
    assert check({"data": "not/here/yet"}, data_root, must_exist=False)["data"] == str(data_root / "not/here/yet")
    assert "under the data root" in rejected({"data": "a/../../etc"}, data_root, must_exist=False)
