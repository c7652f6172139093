"""Server configuration: command-line flags, SERVING_* environment variables, YAML model config.

Every flag `--some-flag` can also come from `SERVING_SOME_FLAG` (flags win), as Kubernetes users
expect to configure a container through its environment. One model is served with
`--model-name/--model-base-path`; several with `--model-config-file`, a YAML file:

    models:
      - name: fashion
        base_path: /models/fashion          # relative paths are relative to the YAML file
        version_policy: {latest: 2}         # or: all | {specific: [3, 4]}
        version_labels: {stable: 3, canary: 4}
        batching: {max_batch_size: 32, batch_timeout_micros: 2000,
                   num_batch_threads: 2, max_enqueued_batches: 16,
                   allowed_batch_sizes: [1, 2, 4, 8, 16, 32],     # optional; default any size
                   warmup_batch_sizes: all}                         # or max (faster loads)
        runtime: auto                       # or tensorflow | litert (docs/serving.md "Runtimes")
        precision: fp32                     # or int8 (LiteRT, when its recorded accuracy holds)
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

import yaml

from serving.aspired_version_policy import VersionPolicy
from serving.inference_runtime import PRECISIONS, RUNTIMES
from serving.runtime import available_cpus

ENV_PREFIX = "SERVING_"
# Route modules of other areas (retrain, ...). Each may define `add_arguments(parser)` for its own
# flags (they arrive in ServerOptions.extra) and `blueprint(core, options) -> flask.Blueprint` for
# its routes. Adding a module here is the one-line hook; the predict code is never edited for it.
EXTENSIONS: tuple[str, ...] = ("serving.retrain_api", "serving.openapi", "serving.console")
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


ANY_PORT = -1
"""`--rest-port any`, `--grpc-port any`: bind a port the kernel picks (socket port 0), reported in
--port-file. A word and not 0: `--grpc-port 0` already means "no gRPC server" (TF Serving's
convention for a disabled port), and one spelling must mean the same for both flags. Asking the
kernel is the only race-free way to get a free port: one picked beforehand may be taken meanwhile."""

WARMUP_BATCH_SIZES = ("all", "max")
MAX_IMAGE_PIXELS = 25_000_000   # the server's limit and the one its warm-up records obey


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the offending setting."""


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's batching parameters for one model (defaults tuned on 2 CPU cores).

    `allowed_batch_sizes` (TF Serving's option; empty = any size): a batch is padded up to the next
    allowed size and the padding sliced off the results, so the model only ever sees these shapes.
    Each new shape costs TensorFlow memory (buffers, oneDNN primitives; docs/benchmarks.md "Memory"),
    and the warm-up runs every allowed size before a version goes live. The last must be
    max_batch_size.

    `num_batch_threads` defaults to the CPUs the process may use (serving.runtime): with one
    intra-op thread per model call, that many batches run side by side, one per core.

    `warmup_batch_sizes`: "all" warms the image signature at every batch size the batcher can form
    before a version goes live, so the memory that live traffic would add shape by shape is held
    from the start and no first batch of a new size pays for it; "max" warms max_batch_size only
    (or, with allowed_batch_sizes, each allowed size above 1): faster loads for big models. See
    serving.warmup and docs/serving.md "Warm-up"."""
    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    num_batch_threads: int = field(default_factory=available_cpus)
    max_enqueued_batches: int = 16
    allowed_batch_sizes: tuple[int, ...] = ()
    warmup_batch_sizes: str = "all"

    def __post_init__(self) -> None:
        if self.warmup_batch_sizes not in WARMUP_BATCH_SIZES:
            raise ConfigError(f"batching warmup_batch_sizes must be one of {list(WARMUP_BATCH_SIZES)}, "
                              f"got {self.warmup_batch_sizes!r}")
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("allowed_batch_sizes", "warmup_batch_sizes"):
                continue
            minimum = 0 if item.name == "batch_timeout_micros" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"batching {item.name} must be an integer >= {minimum}, got {value!r}")
        sizes = self.allowed_batch_sizes
        if sizes and (any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in sizes)
                      or list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise ConfigError(f"batching allowed_batch_sizes must be increasing positive integers ending "
                              f"with max_batch_size {self.max_batch_size}, got {list(sizes)!r}")


@dataclass(frozen=True)
class RuntimeOptions:
    """How one model's versions run (serving.inference_runtime): `runtime` auto (LiteRT when it
    agrees with the SavedModel, else TensorFlow), tensorflow or litert (LiteRT or a failed load);
    `precision` fp32 or int8 (LiteRT only, served when its recorded accuracy holds); and the
    image limit that warm-up records obey, as requests do."""
    runtime: str = "auto"
    precision: str = "fp32"
    max_image_pixels: int = MAX_IMAGE_PIXELS

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {list(RUNTIMES)}, got {self.runtime!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.precision != "fp32" and self.runtime == "tensorflow":
            raise ConfigError(f"precision {self.precision} needs a LiteRT runtime (auto or litert), "
                              f"not runtime tensorflow")


@dataclass(frozen=True)
class ModelConfig:
    """One served model: where its versions live and how to pick and batch them."""
    name: str
    base_path: Path
    version_policy: VersionPolicy = VersionPolicy()
    version_labels: dict[str, int] = field(default_factory=dict)
    batching: BatchingOptions = BatchingOptions()
    runtime: RuntimeOptions = RuntimeOptions()


@dataclass(frozen=True)
class ServerOptions:
    """Everything the process needs; built by `parse_args`. Each default is defined here (and in
    BatchingOptions, RuntimeOptions) only: `build_parser` reads the flags' defaults from them."""
    models: tuple[ModelConfig, ...]
    host: str = "0.0.0.0"
    rest_port: int = 8501                  # ANY_PORT: the kernel picks
    grpc_port: int = 8500                  # 0: no gRPC server; ANY_PORT: the kernel picks
    port_file: Path | None = None          # where the bound ports are written (serving.server)
    poll_interval: float = 2.0
    max_request_bytes: int = 10 * 1024 * 1024
    grpc_max_message_bytes: int = 0        # 0: same as max_request_bytes
    max_image_pixels: int = MAX_IMAGE_PIXELS
    threads: int = 32
    tensorflow_intra_op_parallelism: int = 1   # threads inside one op (0: TensorFlow picks)
    tensorflow_inter_op_parallelism: int = 0   # threads running independent ops (0: TensorFlow picks)
    graceful_timeout: float = 20.0
    load_retry_interval: float = 2.0
    max_load_retries: int = 5
    prediction_store_size: int = 10_000
    log_level: str = "info"
    verbose: bool = False                  # show TensorFlow's C++ start-up log
    extra: dict[str, Any] = field(default_factory=dict)   # flags added by extension modules


def _policy(raw: Any, where: str) -> VersionPolicy:
    try:
        if raw is None or raw == "latest":
            return VersionPolicy()
        if raw == "all" or raw == {"all": {}} or raw == {"all": None}:
            return VersionPolicy("all")
        if isinstance(raw, dict) and len(raw) == 1:
            (kind, value), = raw.items()
            if kind == "latest":
                count = value.get("num_versions", 1) if isinstance(value, dict) else value
                return VersionPolicy("latest", latest=int(count))
            if kind == "specific":
                versions = value.get("versions", []) if isinstance(value, dict) else value
                return VersionPolicy("specific", versions=tuple(int(v) for v in versions))
        raise ValueError(f"expected latest: n, all or specific: [..], got {raw!r}")
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where} version_policy: {error}") from None


def _labels(raw: Any, where: str) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} version_labels must be a mapping label -> version")
    labels: dict[str, int] = {}
    for label, version in raw.items():
        if not _LABEL.match(str(label)) or str(label).isdigit():
            raise ConfigError(f"{where} version label {label!r} is not a valid name")
        if not isinstance(version, int) or isinstance(version, bool) or version <= 0:
            raise ConfigError(f"{where} version label {label!r} must map to a positive integer")
        labels[str(label)] = version
    return labels


def _batching(raw: Any, defaults: BatchingOptions, where: str) -> BatchingOptions:
    if raw is None:
        return defaults
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} batching must be a mapping")
    unknown = set(raw) - {f.name for f in fields(BatchingOptions)}
    if unknown:
        raise ConfigError(f"{where} batching has unknown keys {sorted(unknown)}")
    if isinstance(raw.get("allowed_batch_sizes"), list):
        raw = {**raw, "allowed_batch_sizes": tuple(raw["allowed_batch_sizes"])}
    try:
        return replace(defaults, **raw)
    except ConfigError as error:
        raise ConfigError(f"{where} {error}") from None


def _runtime(entry: dict[str, Any], defaults: RuntimeOptions, where: str) -> RuntimeOptions:
    try:
        return replace(defaults, runtime=str(entry.get("runtime", defaults.runtime)),
                       precision=str(entry.get("precision", defaults.precision)))
    except ConfigError as error:
        raise ConfigError(f"{where} {error}") from None


def load_model_config(path: Path, batching: BatchingOptions,
                      runtime: RuntimeOptions = RuntimeOptions()) -> tuple[ModelConfig, ...]:
    """Parse the YAML model config file (see the module docstring)."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read model config {path}: {error}") from None
    entries = document.get("models") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"model config {path} needs a non-empty `models:` list")
    models = []
    for index, entry in enumerate(entries):
        where = f"{path} models[{index}]"
        if not isinstance(entry, dict) or "name" not in entry or "base_path" not in entry:
            raise ConfigError(f"{where} needs `name` and `base_path`")
        unknown = set(entry) - {"name", "base_path", "version_policy", "version_labels", "batching",
                                "runtime", "precision"}
        if unknown:
            raise ConfigError(f"{where} has unknown keys {sorted(unknown)}")
        models.append(ModelConfig(
            name=_model_name(str(entry["name"]), where),
            base_path=(path.parent / str(entry["base_path"])).resolve(),
            version_policy=_policy(entry.get("version_policy"), where),
            version_labels=_labels(entry.get("version_labels"), where),
            batching=_batching(entry.get("batching"), batching, where),
            runtime=_runtime(entry, runtime, where),
        ))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model config {path} names a model twice")
    return tuple(models)


def _model_name(name: str, where: str) -> str:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise ConfigError(f"{where}: model name {name!r} may only hold letters, digits, _ . -")
    return name


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise ConfigError(f"--allowed-batch-sizes must be comma-separated integers, got {text!r}") from None


def parse_port(text: str) -> int:
    """A --rest-port/--grpc-port value (argparse type): 0-65535, or `any` -> ANY_PORT. Anything
    else is refused by argparse with this message, before any model loads."""
    if text.strip().lower() == "any":
        return ANY_PORT
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535 or `any`, got {text!r}")
    return number


def bind_port(port: int) -> int:
    """The number to bind for a configured port: ANY_PORT binds 0, which asks the kernel."""
    return 0 if port == ANY_PORT else port


def build_parser() -> argparse.ArgumentParser:
    """All flags; each one's default may come from its SERVING_* environment variable."""
    p = argparse.ArgumentParser(prog="python -m serving", description=__doc__.split("\n")[0])
    p.add_argument("--model-name", help="name of the single served model")
    p.add_argument("--model-base-path", help="directory holding the model's numeric version dirs")
    p.add_argument("--model-config-file", help="YAML config for several models (see docs/serving.md)")
    server, batching, runtime = ServerOptions(models=()), BatchingOptions(), RuntimeOptions()
    p.add_argument("--host", default=server.host, help="address to bind REST and gRPC to")
    p.add_argument("--rest-port", type=parse_port, default=server.rest_port,
                   help="REST (and /metrics) port; any: one the kernel picks (see --port-file)")
    p.add_argument("--grpc-port", type=parse_port, default=server.grpc_port,
                   help="gRPC port; 0 disables gRPC; any: one the kernel picks (see --port-file)")
    p.add_argument("--port-file", type=Path, default=server.port_file,
                   help='write {"rest_port": N, "grpc_port": M} here (atomically) once both are bound; '
                        "how a caller of --rest-port/--grpc-port any learns the ports")
    p.add_argument("--poll-interval", type=float, default=server.poll_interval, help="seconds between base-path scans")
    p.add_argument("--max-request-bytes", type=int, default=server.max_request_bytes,
                   help="largest REST body (413 above)")
    p.add_argument("--grpc-max-message-bytes", type=int, default=server.grpc_max_message_bytes,
                   help="largest gRPC request message (RESOURCE_EXHAUSTED above); 0: --max-request-bytes")
    p.add_argument("--max-image-pixels", type=int, default=server.max_image_pixels,
                   help="width*height above which an image is refused (decompression bombs)")
    p.add_argument("--threads", type=int, default=server.threads, help="gunicorn gthread threads (concurrent requests)")
    p.add_argument("--tensorflow-intra-op-parallelism", type=int, default=server.tensorflow_intra_op_parallelism,
                   help="threads one TensorFlow op may use (TF Serving's flag); 1 lets "
                        "--num-batch-threads model calls run side by side, one per core; 0: all cores")
    p.add_argument("--tensorflow-inter-op-parallelism", type=int, default=server.tensorflow_inter_op_parallelism,
                   help="threads running independent TensorFlow ops, shared by all model calls; "
                        "0: TensorFlow picks (one per core)")
    p.add_argument("--graceful-timeout", type=float, default=server.graceful_timeout,
                   help="seconds in-flight requests get to finish after SIGTERM")
    p.add_argument("--load-retry-interval", type=float, default=server.load_retry_interval,
                   help="first retry delay of a failed load (doubles per attempt, max 60 s)")
    p.add_argument("--max-load-retries", type=int, default=server.max_load_retries,
                   help="retries of a failed load before giving up (until its files change)")
    p.add_argument("--prediction-store-size", type=int, default=server.prediction_store_size,
                   help="recent predictions remembered for feedback (oldest evicted)")
    p.add_argument("--log-level", default=server.log_level, choices=["debug", "info", "warning", "error"])
    p.add_argument("--verbose", action="store_true", default=server.verbose,
                   help="show TensorFlow's C++ start-up log (oneDNN, CUDA probing), hidden by default")
    p.add_argument("--max-batch-size", type=int, default=batching.max_batch_size,
                   help="most items (images/rows) in one model call")
    p.add_argument("--batch-timeout-micros", type=int, default=batching.batch_timeout_micros,
                   help="longest wait of the oldest queued request for a fuller batch (TensorFlow; "
                        "LiteRT queues never wait: a bigger batch saves it nothing)")
    p.add_argument("--num-batch-threads", type=int, default=batching.num_batch_threads,
                   help="model calls that may run at once per version and signature "
                        "(default: the CPUs this process may use)")
    p.add_argument("--max-enqueued-batches", type=int, default=batching.max_enqueued_batches,
                   help="queue bound in batches; a full queue answers 503/UNAVAILABLE at once")
    p.add_argument("--allowed-batch-sizes", default=",".join(map(str, batching.allowed_batch_sizes)),
                   help="comma-separated batch sizes the model may see, ending with --max-batch-size "
                        "(batches are padded up to the next one); empty: any size")
    p.add_argument("--warmup-batch-sizes", choices=WARMUP_BATCH_SIZES, default=batching.warmup_batch_sizes,
                   help="warm the image signature at every batch size the batcher can form (all: memory "
                        "held from the start, no slow first batch per size) or at --max-batch-size only (max: "
                        "faster loads; with --allowed-batch-sizes, each allowed size)")
    p.add_argument("--runtime", choices=RUNTIMES, default=runtime.runtime,
                   help="what runs the image models: auto (LiteRT when it agrees with the SavedModel on "
                        "the warm-up and generated images, else TensorFlow), tensorflow, or litert (LiteRT or "
                        "the version fails to load); "
                        "per model: `runtime` in the YAML config")
    p.add_argument("--precision", choices=PRECISIONS, default=runtime.precision,
                   help="LiteRT precision: int8 serves the trainer's quantized form when its recorded "
                        "test accuracy is within 0.5 points of fp32 (else fp32); per model: `precision`")
    for module in extension_modules():
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
    return p


def extension_modules() -> list[Any]:
    return [importlib.import_module(name) for name in EXTENSIONS]


def _apply_environment(parser: argparse.ArgumentParser, environ: dict[str, str]) -> None:
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        key = ENV_PREFIX + action.dest.upper()
        if key in environ:
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                action.default = environ[key].strip().lower() in ("1", "true", "yes", "on")
            else:
                action.default = environ[key]   # argparse converts string defaults with `type`


def parse_args(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> ServerOptions:
    """Flags > SERVING_* environment > defaults. Raises ConfigError with a one-line reason."""
    parser = build_parser()
    _apply_environment(parser, dict(os.environ if environ is None else environ))
    args = parser.parse_args(argv)
    batching = BatchingOptions(**{**_fields_of(BatchingOptions, args),
                                  "allowed_batch_sizes": _sizes(args.allowed_batch_sizes)})
    runtime = RuntimeOptions(**_fields_of(RuntimeOptions, args))
    if args.model_config_file:
        if args.model_name or args.model_base_path:
            raise ConfigError("give either --model-config-file or --model-name/--model-base-path, not both")
        models = load_model_config(Path(args.model_config_file), batching, runtime)
    elif args.model_name and args.model_base_path:
        models = (ModelConfig(_model_name(args.model_name, "--model-name"),
                              Path(args.model_base_path).resolve(), batching=batching, runtime=runtime),)
    else:
        raise ConfigError("a model is needed: --model-name and --model-base-path, or --model-config-file")
    for name, value in (("--poll-interval", args.poll_interval), ("--max-request-bytes", args.max_request_bytes),
                        ("--max-image-pixels", args.max_image_pixels), ("--threads", args.threads),
                        ("--prediction-store-size", args.prediction_store_size)):
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")
    if args.rest_port == 0:
        raise ConfigError("--rest-port 0: REST cannot be disabled; `--rest-port any` binds a port "
                          "the kernel picks")
    for name, value in (("--tensorflow-intra-op-parallelism", args.tensorflow_intra_op_parallelism),
                        ("--tensorflow-inter-op-parallelism", args.tensorflow_inter_op_parallelism)):
        if value < 0:
            raise ConfigError(f"{name} must be >= 0 (0: TensorFlow picks), got {value}")
    known = {f.name for f in fields(ServerOptions)} | {f.name for f in fields(BatchingOptions)}
    known |= {f.name for f in fields(RuntimeOptions)}
    known |= {"model_name", "model_base_path", "model_config_file"}
    extra = {k: v for k, v in vars(args).items() if k not in known}
    server = {k: v for k, v in _fields_of(ServerOptions, args).items() if k not in ("models", "extra")}
    if args.port_file is not None:
        server["port_file"] = args.port_file.resolve()   # the file is written by the worker, later
    return ServerOptions(models=models, extra=extra, **server)


def _fields_of(options: type, args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags named like the fields of an options dataclass (a flag per field)."""
    return {f.name: getattr(args, f.name) for f in fields(options) if hasattr(args, f.name)}
