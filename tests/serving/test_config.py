"""serving.config: flags, SERVING_* environment, the YAML model config, and their defaults."""
from __future__ import annotations

from pathlib import Path

import pytest

from serving.aspired_version_policy import VersionPolicy
from serving.config import ANY_PORT, BatchingOptions, ConfigError, RuntimeOptions, ServerOptions, bind_port, parse_args


def test_flags_environment_and_yaml_config(tmp_path: Path) -> None:
    options = parse_args(["--model-name", "m", "--model-base-path", str(tmp_path), "--rest-port", "9001"],
                         {"SERVING_REST_PORT": "9000", "SERVING_GRPC_PORT": "0", "SERVING_MAX_BATCH_SIZE": "8",
                          "SERVING_WARMUP_BATCH_SIZES": "max"})
    assert (options.rest_port, options.grpc_port) == (9001, 0)     # flag beats environment
    assert options.models[0].batching.max_batch_size == 8
    assert options.models[0].batching.warmup_batch_sizes == "max"
    config = tmp_path / "models.yaml"
    config.write_text("""
models:
  - name: a
    base_path: a
    version_policy: {latest: 2}
    version_labels: {stable: 1, canary: 2}
    batching: {max_batch_size: 4, warmup_batch_sizes: max}
  - name: b
    base_path: /srv/b
    version_policy: all
  - name: c
    base_path: c
    version_policy: {specific: [3, 4]}
""")
    models = parse_args([], {"SERVING_MODEL_CONFIG_FILE": str(config)}).models
    assert [m.name for m in models] == ["a", "b", "c"]
    assert models[0].base_path == tmp_path / "a"
    assert models[0].version_policy == VersionPolicy("latest", latest=2)
    assert models[0].version_labels == {"stable": 1, "canary": 2}
    assert models[0].batching == BatchingOptions(max_batch_size=4, warmup_batch_sizes="max")
    assert models[1].batching.warmup_batch_sizes == "all"                # the default
    assert models[1].version_policy.kind == "all" and models[2].version_policy.versions == (3, 4)


def test_flag_defaults_are_the_options_defaults(tmp_path: Path) -> None:
    options = parse_args(["--model-name", "m", "--model-base-path", str(tmp_path)], {})
    assert options == ServerOptions(models=options.models, extra=options.extra)
    assert options.models[0].batching == BatchingOptions()
    assert options.models[0].runtime == RuntimeOptions()


@pytest.mark.parametrize("yaml_text, message", [
    ("models: []", "non-empty"),
    ("models: [{name: a}]", "base_path"),
    ("models: [{name: a, base_path: x, version_policy: {newest: 1}}]", "version_policy"),
    ("models: [{name: a, base_path: x, batching: {max_batch_size: 0}}]", "max_batch_size"),
    ("models: [{name: a, base_path: x, batching: {warmup_batch_sizes: some}}]", "warmup_batch_sizes"),
    ("models: [{name: a, base_path: x, version_labels: {stable: two}}]", "stable"),
    ("models: [{name: a, base_path: x, colour: red}]", "colour"),
])
def test_bad_model_config_names_the_problem(tmp_path: Path, yaml_text: str, message: str) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        parse_args(["--model-config-file", str(config)], {})


def test_port_any_zero_and_the_port_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = ["--model-name", "m", "--model-base-path", str(tmp_path)]
    options = parse_args([*model, "--rest-port", "any", "--port-file", "ports.json"], {"SERVING_GRPC_PORT": "ANY"})
    assert (options.rest_port, options.grpc_port) == (ANY_PORT, ANY_PORT)
    assert options.port_file == Path("ports.json").resolve()     # the worker writes it, not the caller's cwd
    assert bind_port(ANY_PORT) == 0 and bind_port(8500) == 8500
    assert parse_args([*model, "--grpc-port", "0"], {}).grpc_port == 0              # still: no gRPC server
    assert parse_args(model, {}).port_file is None
    with pytest.raises(ConfigError, match="--rest-port 0: REST cannot be disabled"):
        parse_args([*model, "--rest-port", "0"], {})
    for bad in ("65536", "-1", "free"):
        with pytest.raises(SystemExit):
            parse_args([*model, "--grpc-port", bad], {})
        assert "expected a port number 0-65535 or `any`" in capsys.readouterr().err
