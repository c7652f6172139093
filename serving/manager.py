"""The servable manager: which versions are loaded, and moving them between states safely.

Modelled on TF Serving's AspiredVersionsManager with the availability-preserving policy:
- each poll asks the source what is on disk and the version policy what is aspired;
- new versions are loaded (and warmed up) *before* old ones are unloaded, and the map that
  requests read is replaced as a whole (atomic swap, no lock on the request path);
- an unloaded version is released only after the requests that still hold it have finished
  (refcount on the servable), so a swap never drops a request;
- a failed load is logged, counted, retried with exponential backoff (up to `max_load_retries`,
  again whenever its saved_model.pb changes), and the previous version keeps serving.
States are TF Serving's: START -> LOADING -> AVAILABLE -> UNLOADING -> END (END with an error
message after a failed load).
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from serving import metrics
from serving.aspired_version_policy import plan
from serving.config import ModelConfig
from serving.errors import invalid, not_found, unavailable
from serving.inference_runtime import RuntimeChoice
from serving.loader import LoadResult, load_version
from serving.runtime import compact_heap
from serving.servable import Servable
from serving.source import Reported, VersionOnDisk, scan

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 60.0
UNLOAD_WAIT = 300.0


@dataclass
class VersionStatus:
    """What GetModelStatus reports for a version."""
    version: int
    state: str
    error: str = ""
    runtime: RuntimeChoice | None = None     # set once the version is AVAILABLE


@dataclass
class _Record:
    state: str = "START"
    error: str = ""
    attempts: int = 0
    retry_at: float = 0.0
    fingerprint: tuple[int, int] | None = None
    runtime: RuntimeChoice | None = None


@dataclass
class _Model:
    config: ModelConfig
    available: dict[int, Servable] = field(default_factory=dict)   # replaced, never mutated
    records: dict[int, _Record] = field(default_factory=dict)
    reported: Reported = field(default_factory=Reported)   # base-path problems already logged


class ServableManager:
    """Holds every model's versions; `poll()` converges them toward what is aspired."""

    def __init__(self, models: tuple[ModelConfig, ...], *, poll_interval: float = 2.0,
                 load_retry_interval: float = 2.0, max_load_retries: int = 5,
                 on_available: Callable[[Servable], None] | None = None,
                 on_unloaded: Callable[[Servable], None] | None = None) -> None:
        self._models = {config.name: _Model(config) for config in models}
        self._poll_interval = poll_interval
        self._retry_interval = load_retry_interval
        self._max_retries = max_load_retries
        self._on_available = on_available or (lambda servable: None)
        self._on_unloaded = on_unloaded or (lambda servable: None)
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unloaders: list[threading.Thread] = []

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Poll in a background thread (first poll at once), so the process is up while loading."""
        self._thread = threading.Thread(target=self._poll_loop, name="servable-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and release every version (after its in-flight requests)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)
        with self._poll_lock:
            for name, model in self._models.items():
                for version in sorted(model.available):
                    self._unload(model, version)
        for thread in self._unloaders:
            thread.join(timeout=UNLOAD_WAIT)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the poller must survive anything
                log.exception("servable manager poll failed")
            self._stop.wait(self._poll_interval)

    # ---- convergence -----------------------------------------------------------------------
    def poll(self) -> None:
        """One pass: scan every base path, load what is aspired, unload what is no longer."""
        with self._poll_lock:
            for model in self._models.values():
                if self._stop.is_set():
                    return
                self._converge_guarded(model)

    def _converge_guarded(self, model: _Model) -> None:
        """One model's pass; whatever it raises is logged and the poll goes on to the next model,
        so one bad base path or version directory never stalls the others."""
        try:
            self._converge(model)
        except Exception:  # noqa: BLE001 - isolate each model from the others' failures
            log.exception("model %s: poll of %s failed; other models go on", model.config.name,
                          model.config.base_path)

    def _converge(self, model: _Model) -> None:
        on_disk = scan(model.config.base_path, model.reported)
        aspired = model.config.version_policy.select(on_disk)
        for version in aspired:
            record = model.records.setdefault(version, _Record())
            if record.fingerprint is not None and record.fingerprint != on_disk[version].fingerprint \
                    and version not in model.available:
                log.info("model %s version %d changed on disk; retrying its load", model.config.name, version)
                model.records[version] = _Record()
            metrics.set_version_state(model.config.name, version, model.records[version].state)
        now = time.monotonic()
        loadable = {v for v in aspired if self._may_try(model.records[v], now)}
        for version in plan(aspired, set(on_disk), set(model.available), loadable).load:
            if self._stop.is_set():
                return
            self._load(model, on_disk[version])
        for version in plan(aspired, set(on_disk), set(model.available), set()).unload:
            self._unload(model, version)

    def _may_try(self, record: _Record, now: float) -> bool:
        """START, or END after an unload, may load now; a failed load only when its backoff is over."""
        if record.state == "START" or (record.state == "END" and not record.error):
            return True
        return record.state == "END" and record.attempts <= self._max_retries and now >= record.retry_at

    def _set_state(self, model: _Model, version: int, state: str, error: str = "") -> _Record:
        record = model.records.setdefault(version, _Record())
        record.state, record.error = state, error
        metrics.set_version_state(model.config.name, version, state)
        return record

    def _load(self, model: _Model, candidate: VersionOnDisk) -> None:
        name, version = model.config.name, candidate.version
        self._set_state(model, version, "LOADING")
        result: LoadResult = load_version(name, version, candidate.path, model.config.batching,
                                          model.config.runtime)
        metrics.LOAD_DURATION.labels(name, str(version)).observe(result.duration)
        if result.servable is None:
            self._load_failed(model, candidate, result.error or "unknown error")
            return
        self._on_available(result.servable)
        compact_heap()                       # the new version's objects out of the collector's way
        model.available = {**model.available, version: result.servable}   # atomic swap
        record = self._set_state(model, version, "AVAILABLE")
        record.fingerprint, record.attempts = candidate.fingerprint, 0
        record.runtime = result.servable.runtime

    def _load_failed(self, model: _Model, candidate: VersionOnDisk, reason: str) -> None:
        name, version = model.config.name, candidate.version
        metrics.LOAD_FAILURES.labels(name, str(version)).inc()
        record = self._set_state(model, version, "END", f"load failed: {reason}")
        record.attempts += 1
        record.fingerprint = candidate.fingerprint
        if record.attempts <= self._max_retries:
            delay = min(self._retry_interval * 2 ** (record.attempts - 1), MAX_RETRY_DELAY)
            record.retry_at = time.monotonic() + delay
            log.warning("model %s version %d: attempt %d failed (%s); retry in %.0fs; serving %s",
                        name, version, record.attempts, reason, delay, sorted(model.available) or "nothing")
        else:
            log.error("model %s version %d: giving up after %d attempts until its files change",
                      name, version, record.attempts)

    def _unload(self, model: _Model, version: int) -> None:
        servable = model.available[version]
        model.available = {v: s for v, s in model.available.items() if v != version}   # atomic swap
        self._set_state(model, version, "UNLOADING")
        log.info("model %s version %d unloading (%d requests in flight)",
                 model.config.name, version, servable.in_flight)

        def finish() -> None:
            if not servable.close_when_idle(UNLOAD_WAIT):
                log.warning("model %s version %d: released with requests still running",
                            model.config.name, version)
            self._on_unloaded(servable)
            compact_heap()                   # TensorFlow objects sit in reference cycles
            self._set_state(model, version, "END")
            log.info("model %s version %d unloaded", model.config.name, version)

        thread = threading.Thread(target=finish, name=f"unload-{model.config.name}-{version}", daemon=True)
        self._unloaders = [t for t in self._unloaders if t.is_alive()] + [thread]
        thread.start()

    # ---- request path ----------------------------------------------------------------------
    def model_config(self, name: str) -> ModelConfig:
        model = self._models.get(name)
        if model is None:
            # "Servable not found for request" first: TF Serving's clients look for it
            shown = name if len(name) <= 100 else f"{name[:100]}..."     # the message must fit a gRPC trailer
            raise not_found(f"Servable not found for request: Latest({shown}): model {shown!r} is not served "
                            f"here (serving: {sorted(self._models)})")
        return model.config

    def _resolve(self, name: str, version: int | None, label: str | None) -> Servable:
        config = self.model_config(name)
        model = self._models[name]
        available = model.available
        if label is not None:
            if label not in config.version_labels:
                # TF Serving's text and code (INVALID_ARGUMENT): http_rest_api_handler_test.cc
                raise invalid(f"Unrecognized servable version label: {label} "
                              f"(model {name!r} has labels {sorted(config.version_labels)})")
            version = config.version_labels[label]
        if version is None:
            if not available:
                raise unavailable(f"model {name!r} has no version loaded yet")
            return available[max(available)]
        if version in available:
            return available[version]
        record = model.records.get(version)
        if record is not None and record.state in ("START", "LOADING"):
            raise unavailable(f"model {name!r} version {version} is still loading")
        raise not_found(f"Servable not found for request: Specific({name}, {version}): "
                        f"model {name!r} version {version} is not available "
                        f"(available: {sorted(available) or 'none'})")

    @contextmanager
    def acquire(self, name: str, version: int | None = None, label: str | None = None) -> Iterator[Servable]:
        """Hold a servable for one request: it stays loaded until the block ends."""
        for _ in range(100):
            servable = self._resolve(name, version, label)
            if servable.retain():
                break
        else:
            raise unavailable(f"model {name!r} is being swapped; retry")
        try:
            yield servable
        finally:
            servable.release()

    # ---- status ----------------------------------------------------------------------------
    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Every known version's state (newest first), or just `version` (NOT_FOUND if unknown)."""
        model = self._models.get(name)
        if model is None:
            raise not_found(f"model {name!r} is not served here")
        records = dict(model.records)
        if version is not None:
            if version not in records:
                raise not_found(f"model {name!r} has no version {version}")
            records = {version: records[version]}
        return [VersionStatus(v, r.state, r.error, r.runtime) for v, r in sorted(records.items(), reverse=True)]

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def available_versions(self, name: str) -> list[int]:
        self.model_config(name)
        return sorted(self._models[name].available)

    def ready(self) -> bool:
        """True when every configured model has at least one available version."""
        return all(model.available for model in self._models.values())
