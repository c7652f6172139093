"""Validation of the trainer options a retrain request may carry.

The request body becomes command-line arguments of `python -m trainer train` (locally or in a
Kubernetes Job), so it is checked against an allow-list: unknown keys, wrong types, values out of
range and data paths outside the data root are rejected with INVALID_ARGUMENT before anything runs.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from model_format.training import FT_SCHEDULES
from serving.errors import ServingError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Option:
    """One allowed key: how to check its value and which trainer flag it becomes."""

    flag: str
    kind: str  # "path" | "int" | "layers" | "float" | "name" | "weights" | "flag" | "choice"
    low: float = 0
    high: float = 0
    choices: tuple[str, ...] = ()


ALLOWED: dict[str, Option] = {
    "data": Option("--data", "path"),
    "val_data": Option("--val-data", "path"),
    "test_data": Option("--test-data", "path"),
    "backbone": Option("--backbone", "name"),
    "weights": Option("--weights", "weights"),
    "image_size": Option("--image-size", "int", 32, 1024),
    "epochs": Option("--epochs", "int", 0, 1000),
    "ft_epochs": Option("--ft-epochs", "int", 0, 1000),
    "unfreeze_top": Option("--unfreeze-top", "layers", 0, 1000),
    "batch_size": Option("--batch-size", "int", 1, 4096),
    "learning_rate": Option("--lr", "float", 1e-7, 1.0),
    "ft_learning_rate": Option("--ft-lr", "float", 1e-8, 1.0),
    "ft_schedule": Option("--ft-schedule", "choice", choices=FT_SCHEDULES),
    "ft_warmup_epochs": Option("--ft-warmup-epochs", "int", 0, 1000),
    "patience": Option("--patience", "int", 0, 100),
    "dropout": Option("--dropout", "float", 0.0, 0.9),
    "seed": Option("--seed", "int", 0, 2**31 - 1),
    "cache_features": Option("--cache-features", "flag"),
}
REQUIRED = ("data",)


def _invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def resolve_data_path(data_root: str, value: Any, *, key: str, must_exist: bool) -> str:
    """A path given relative to (or absolute inside) data_root, with symlinks and `..` resolved.

    Rejects anything that ends up outside the root, so a retrain cannot read arbitrary files.
    must_exist is false for the kubernetes backend: the data lives on a volume the server may not
    mount, so only the lexical check applies there.
    """
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _invalid(f"option {key!r} must be a non-empty path string")
    root = os.path.realpath(data_root)
    candidate = value if os.path.isabs(value) else os.path.join(root, value)
    resolved = os.path.realpath(candidate) if must_exist else os.path.normpath(candidate)
    if resolved != root and not resolved.startswith(root.rstrip("/") + "/"):
        raise _invalid(f"option {key!r} must be a path under the data root {data_root}")
    if must_exist and not os.path.isdir(resolved):
        raise _invalid(f"option {key!r}: {value} is not a directory under the data root")
    return resolved


def _check_int(key: str, value: Any, spec: Option) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"option {key!r} must be an integer" + (" or 'all'" if spec.kind == "layers" else ""))
    if not spec.low <= value <= spec.high:
        raise _invalid(f"option {key!r} must be between {spec.low} and {spec.high}")
    return value


def _check_float(key: str, value: Any, spec: Option) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(f"option {key!r} must be a number")
    if not spec.low <= value <= spec.high:
        raise _invalid(f"option {key!r} must be between {spec.low} and {spec.high}")
    return float(value)


def _check_name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise _invalid(f"option {key!r} must match {_NAME.pattern}")
    return value


def validate_options(body: Any, *, data_root: str, must_exist: bool) -> dict[str, Any]:
    """The normalized options (data paths resolved) or INVALID_ARGUMENT naming the bad key."""
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object of trainer options")
    unknown = sorted(set(body) - set(ALLOWED))
    if unknown:
        raise _invalid(f"unknown option(s) {unknown}; allowed: {sorted(ALLOWED)}")
    missing = [k for k in REQUIRED if k not in body]
    if missing:
        raise _invalid(f"missing required option(s) {missing}")
    return {key: _check(key, value, data_root, must_exist) for key, value in body.items()}


def _check(key: str, value: Any, data_root: str, must_exist: bool) -> Any:
    spec = ALLOWED[key]
    if spec.kind == "path":
        return resolve_data_path(data_root, value, key=key, must_exist=must_exist)
    if spec.kind == "int":
        return _check_int(key, value, spec)
    if spec.kind == "layers":
        return value if value == "all" else _check_int(key, value, spec)   # all: the whole base
    if spec.kind == "float":
        return _check_float(key, value, spec)
    if spec.kind == "name":
        return _check_name(key, value)
    if spec.kind == "weights":
        return value if value in ("imagenet", "none") else resolve_weights(data_root, value, must_exist)
    if spec.kind == "choice":
        if value not in spec.choices:
            raise _invalid(f"option {key!r} must be one of {list(spec.choices)}, got {value!r}")
        return value
    if not isinstance(value, bool):
        raise _invalid(f"option {key!r} must be true or false")
    return value


def resolve_weights(data_root: str, value: Any, must_exist: bool) -> str:
    """Weights are "imagenet", "none", or a weights file under the data root."""
    path = resolve_data_path(data_root, value, key="weights", must_exist=False)
    if must_exist:
        path = resolve_data_path(data_root, os.path.realpath(path), key="weights", must_exist=False)
        if not os.path.isfile(path):
            raise _invalid("option 'weights' must be 'imagenet', 'none' or a file under the data root")
    return path


def trainer_arguments(options: dict[str, Any]) -> list[str]:
    """Validated options as `python -m trainer train` flags (model name and base path excluded)."""
    args: list[str] = []
    for key, value in options.items():
        spec = ALLOWED[key]
        if spec.kind == "flag":
            args += [spec.flag] if value else []
        else:
            args += [spec.flag, str(value)]
    return args
