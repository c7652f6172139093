"""One real server (REST + gRPC) on TF Serving's test models, regenerated at test time.

Models, as TF Serving's tests name them:
- `saved_model_half_plus_two_2_versions`: half_plus_two version 123, label Version_Label -> 123
  (http_rest_api_handler_test.cc);
- `default`: the same model (tensorflow_model_server_test.py runs `--model_name=default`);
- `half_plus_two`, `half_plus_three`: the two models of its good_model_config (a YAML model config
  here: our server reads YAML, not TF Serving's text proto);
- `half_plus_two_tf2`, `scalar`: a TF2 SavedModel and a model with a scalar output (the issue's
  own cases: any TF2 model, scalar outputs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.conformance import models
from tests.server_process import ServerHandle, start_server

HTTP_MODEL = "saved_model_half_plus_two_2_versions"
VERSION = 123
VERSION_LABEL = "Version_Label"


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tfs_models")
    models.write_half_plus_two_tf1(root / "half_plus_two" / str(VERSION))
    models.write_half_plus_three_tf1(root / "half_plus_three" / str(VERSION))
    models.write_half_plus_two_tf2(root / "half_plus_two_tf2" / str(VERSION))
    models.write_scalar_model(root / "scalar" / "1")
    return root


@pytest.fixture(scope="session")
def tfs_server(model_root: Path) -> Iterator[ServerHandle]:
    served = {HTTP_MODEL: "half_plus_two", "default": "half_plus_two", "half_plus_two": "half_plus_two",
              "half_plus_three": "half_plus_three", "half_plus_two_tf2": "half_plus_two_tf2", "scalar": "scalar"}
    config = {"models": [{"name": name, "base_path": str(model_root / folder),
                          **({"version_labels": {VERSION_LABEL: VERSION}} if name == HTTP_MODEL else {})}
                         for name, folder in served.items()]}
    path = model_root / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with start_server("--model-config-file", str(path), timeout=180.0) as server:
        yield server


@pytest.fixture(scope="session")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """The server on one of our image models (a real trainer export), for the cases of TF
    Serving's tests that do not depend on half_plus_two."""
    from tests.helpers import export_tiny

    base = tmp_path_factory.mktemp("image_models") / "tiny"
    export_tiny(base, seed=1, model_name="tiny")
    with start_server("--model-name", "tiny", "--model-base-path", str(base), grpc=False) as server:
        yield server
