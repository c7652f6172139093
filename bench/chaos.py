"""Chaos run: version swaps, half-copied and corrupt versions, deletion and a restart under load.

A model server is judged on its worst minute. This drives the real server process (`python -m
serving`, gunicorn + gRPC) with continuous load at concurrency 8 (REST `:predict` with b64 images,
REST `:classify_image`, gRPC `PredictionService.Predict` through the official tensorflow_serving
stubs) while, in order:

1. `swaps`:   10 new versions land through the trainer's staging rename (`export_version`);
2. `cp -r`:   a copy of the serving version is written file by file, slowly, straight into its
              numeric directory (no staging: `saved_model.pb` first, the variables last);
3. `corrupt`: a version with a truncated `saved_model.pb` lands;
4. `delete`:  the serving version's directory is deleted (nothing loadable is left: the server
              must answer 503 until an operator lands a good version, which this run then does);
5. `restart`: SIGTERM to the server (as Kubernetes sends it), then a new process on the same ports.

Every request's outcome is recorded with its start and end time and classified:
  ok                      answered, and the answer equals the SavedModel's own output (called
                          in this process on the same bytes) for the version that answered;
  503 no version loaded   UNAVAILABLE while no version was loaded at all (the `delete` window);
  after shutdown began    any failure from SIGTERM until the restarted server is ready;
  UNEXPECTED              everything else, including a wrong answer. The run fails on any.
Memory: the worker's RSS (from /proc) with no model, after the first version, and after every
phase; "one model's size" is what loading the first version cost. After the swaps the RSS must be
within one model's size of where it started.

    python -m bench chaos            # MobileNetV2 160 px (bench/work cache), longer phases
    python -m bench chaos --short    # the test suite's tiny conv net (tests/chaos runs this)
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import requests

from bench.processes import ServingProcess, answering, start_serving
from model_format.publish import staging_dir

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work" / "chaos"
MODEL = "chaos"
OK, NO_VERSION, SHUTDOWN, UNEXPECTED = "ok", "503 no version loaded", "after shutdown began", "UNEXPECTED"
KINDS = ("rest_predict", "rest_classify_image", "grpc_predict")
ATOL = 1e-4
RECONNECT_BACKOFF = 1.0   # seconds: the load clients' grpc.max_reconnect_backoff_ms
EXTRA_ENV: dict[str, str] = {}


# ---- the model under test ------------------------------------------------------------------
@dataclass
class Flavour:
    """What the run serves: how to build a model per seed, its input size, labels and images."""
    name: str
    image_size: int
    labels: list[str]
    images: list[bytes]
    build: Callable[[int], Any]
    swap_pause: float      # seconds of load between two swaps
    copy_seconds: float    # how long the slow `cp -r` takes


def tiny_flavour() -> Flavour:
    from tests.helpers import TINY_LABELS, TINY_SIZE, image_bytes, tiny_model

    images = [image_bytes(seed, fmt) for seed, fmt in ((1, "JPEG"), (2, "PNG"), (3, "JPEG"), (4, "GIF"))]
    return Flavour("tiny conv net, 32 px (tests/helpers.py)", TINY_SIZE, TINY_LABELS, images,
                   lambda seed: tiny_model(seed), swap_pause=0.3, copy_seconds=2.0)


def mobilenet_flavour() -> Flavour:
    """MobileNetV2 160 px as in the serving benchmark; each seed gets its own classifier head."""
    from bench.workload import MOBILENET_LABELS, MOBILENET_SIZE, _mobilenet_model, fixed_jpegs

    model = _mobilenet_model()
    head = model.layers[-1]
    initial = [w.copy() for w in head.get_weights()]

    def build(seed: int) -> Any:
        rng = np.random.default_rng(seed)
        head.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in initial])
        return model

    return Flavour(f"MobileNetV2 alpha 1.0, {MOBILENET_SIZE} px, Dense({len(MOBILENET_LABELS)}) head per version",
                   MOBILENET_SIZE, MOBILENET_LABELS, fixed_jpegs(6), build, swap_pause=1.0, copy_seconds=6.0)


class Versions:
    """Exports versions and remembers each one's own output on the run's images (the oracle)."""

    def __init__(self, flavour: Flavour, base_path: Path) -> None:
        self.flavour, self.base_path = flavour, base_path
        self.expected: dict[int, np.ndarray] = {}   # version -> probabilities [images, classes]
        self._lock = threading.Lock()

    def export(self, seed: int) -> int:
        """A new version through the trainer's staging directory + atomic rename."""
        from trainer.export import export_version

        path = export_version(self.flavour.build(seed), self.base_path, model_name=MODEL,
                              labels=self.flavour.labels, image_size=self.flavour.image_size,
                              metadata={"backbone": "chaos", "seed": seed}, warmup_images=self.flavour.images[:1])
        version = int(path.name)
        self.remember(version, self.direct_output(path))
        return version

    def direct_output(self, path: Path) -> np.ndarray:
        """The SavedModel's own answer, called in this process on the same encoded bytes."""
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        result = loaded.signatures["serving_default"](image_bytes=tf.constant(self.flavour.images))
        return result["probabilities"].numpy()

    def remember(self, version: int, probabilities: np.ndarray) -> None:
        with self._lock:
            self.expected[version] = probabilities

    def check(self, version: int | None, image: int, probabilities: np.ndarray) -> str:
        """"" if the answer is the model's own (of `version`, or of any version when unknown)."""
        with self._lock:
            candidates = [self.expected[version]] if version in self.expected else (
                [] if version is not None else list(self.expected.values()))
        if version is not None and not candidates:
            return f"answered by version {version}, which never was a good version"
        if any(np.allclose(c[image], probabilities, atol=ATOL) for c in candidates):
            return ""
        return f"answer of version {version} differs from the SavedModel's own output for image {image}"


# ---- the server process --------------------------------------------------------------------
class Server:
    """The real server. The first start binds ports the kernel picks; a restart asks for the same
    ones, so it comes back where the clients look (as a restarted pod behind its Service)."""

    def __init__(self, base_path: Path, logs: Path, graceful: float) -> None:
        self.base_path, self.logs, self.graceful = base_path, logs, graceful
        self.process: ServingProcess | None = None
        self.starts = 0

    @property
    def rest_url(self) -> str:
        assert self.process is not None
        return self.process.rest_url

    @property
    def grpc_target(self) -> str:
        assert self.process is not None
        return self.process.grpc_target

    def start(self, ready_path: str, timeout: float = 300.0) -> None:
        """A new server process (on the last one's ports, if any), once GET ready_path answers 200."""
        self.starts += 1
        ports = (self.process.rest_port, self.process.grpc_port) if self.process is not None else None
        args = ["--model-name", MODEL, "--model-base-path", str(self.base_path),
                "--poll-interval", "0.5", "--load-retry-interval", "0.5", "--max-load-retries", "8",
                "--graceful-timeout", str(self.graceful), "--log-level", "info"]
        self.process = start_serving(args, self.logs / f"server-{self.starts}.log", ready=answering(ready_path),
                                     timeout=timeout, ports=ports, env=EXTRA_ENV)

    def wait(self, path: str, timeout: float = 300.0) -> None:
        assert self.process is not None
        self.process.wait_ok(path, timeout)

    def worker_rss(self) -> int:
        assert self.process is not None
        return self.process.worker_rss_bytes()

    def sigterm(self, timeout: float) -> tuple[float, int | None]:
        """SIGTERM to the main process only (what Kubernetes does); seconds until exit, exit code."""
        assert self.process is not None
        started = time.monotonic()
        self.process.proc.send_signal(signal.SIGTERM)
        try:
            code = self.process.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        elapsed = time.monotonic() - started
        self.process.stop()
        return elapsed, code

    def wait_grpc_serving(self, timeout: float = 60.0) -> None:
        """Until the gRPC health service reports the whole server SERVING."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.grpc_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == \
                            health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError("gRPC health never reported SERVING")

    def version_state(self, version: int) -> tuple[str, str]:
        """(state, error message) of one version as the server reports it; ("", "") if unknown."""
        try:
            answer = requests.get(f"{self.rest_url}/v1/models/{MODEL}/versions/{version}", timeout=5)
        except requests.RequestException:
            return "", ""
        if answer.status_code != 200:
            return "", ""
        status = answer.json()["model_version_status"][0]
        return status["state"], status["status"]["error_message"]

    def wait_state(self, version: int, predicate: Callable[[str, str], bool], timeout: float) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.version_state(version)
            if predicate(*state):
                return state
            time.sleep(0.1)
        raise TimeoutError(f"version {version} never reached the expected state; last {state}; "
                           f"log tail:\n{self.process.log_tail() if self.process else ''}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# ---- load and the record of every request ----------------------------------------------------
@dataclass
class Outcome:
    kind: str
    start: float
    end: float
    code: str            # "200"/"503"/... for REST, a grpc.StatusCode name, or an exception name
    detail: str = ""
    version: int | None = None
    image: int = 0
    probabilities: np.ndarray | None = field(default=None, repr=False)
    wrong: str = ""      # set (after the run) when an OK answer is not the model's own output
    cause: str = ""

    @property
    def succeeded(self) -> bool:
        return self.code in ("200", "OK") and not self.wrong


class Load:
    """Concurrency-8 closed-loop load on both protocols; every request becomes an Outcome."""

    def __init__(self, server: Server, versions: Versions, concurrency: int = 8) -> None:
        self.server, self.versions = server, versions
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._worker, args=(KINDS[i % len(KINDS)], i), daemon=True,
                                          name=f"load-{i}") for i in range(concurrency)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(60)

    def _worker(self, kind: str, index: int) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        session = requests.Session()
        # A client that reconnects within a second of the server coming back (gRPC's default
        # backoff grows to 2 minutes, which would count the client's sleep against the server).
        channel = grpc.insecure_channel(self.server.grpc_target, options=[
            ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", int(RECONNECT_BACKOFF * 1000))])
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        images = self.versions.flavour.images
        count = index
        while not self._stop.is_set():
            image = count % len(images)
            count += 1
            started = time.monotonic()
            try:
                outcome = getattr(self, f"_{kind}")(session, stub, image, images[image])
            except grpc.RpcError as error:
                outcome = Outcome(kind, 0, 0, error.code().name, error.details() or "")
            except requests.RequestException as error:
                outcome = Outcome(kind, 0, 0, type(error).__name__, str(error)[:200])
            except Exception as error:   # a malformed answer is a failure to report, not a crash
                outcome = Outcome(kind, 0, 0, type(error).__name__, str(error)[:200])
            outcome.start, outcome.end = started, time.monotonic()
            self.outcomes.append(outcome)
            if not outcome.succeeded:
                time.sleep(0.02)   # a refusing server is not hammered in a tight loop
        channel.close()

    def _rest_predict(self, session: requests.Session, stub: Any, image: int, data: bytes) -> Outcome:
        body = {"instances": [{"image_bytes": {"b64": base64.b64encode(data).decode()}}]}
        answer = session.post(f"{self.server.rest_url}/v1/models/{MODEL}:predict", json=body, timeout=30)
        if answer.status_code != 200:
            return Outcome("rest_predict", 0, 0, str(answer.status_code), _error(answer))
        probabilities = np.array(answer.json()["predictions"][0]["probabilities"], dtype=np.float32)
        return Outcome("rest_predict", 0, 0, "200", image=image, probabilities=probabilities)

    def _rest_classify_image(self, session: requests.Session, stub: Any, image: int, data: bytes) -> Outcome:
        answer = session.post(f"{self.server.rest_url}/v1/models/{MODEL}:classify_image?top_k=1000", data=data,
                              headers={"Content-Type": "application/octet-stream"}, timeout=30)
        if answer.status_code != 200:
            return Outcome("rest_classify_image", 0, 0, str(answer.status_code), _error(answer))
        reply = answer.json()
        labels = self.versions.flavour.labels
        probabilities = np.zeros(len(labels), np.float32)
        for item in reply["predictions"]:
            probabilities[labels.index(item["label"])] = item["score"]
        version = int(reply["version"])
        return Outcome("rest_classify_image", 0, 0, "200", version=version, image=image,
                       probabilities=probabilities)

    def _grpc_predict(self, session: requests.Session, stub: Any, image: int, data: bytes) -> Outcome:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.model_spec.signature_name = "serving_default"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string))
        reply = stub.Predict(request, timeout=30)
        probabilities = tf.make_ndarray(reply.outputs["probabilities"])[0]
        version = reply.model_spec.version.value
        return Outcome("grpc_predict", 0, 0, "OK", version=version, image=image, probabilities=probabilities)


def _error(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("error", ""))[:200]
    except ValueError:
        return answer.text[:200]


# ---- the run -------------------------------------------------------------------------------
@dataclass
class Report:
    """Everything the run measured; `unexpected == 0` is the pass criterion."""
    flavour: str
    outcomes: list[Outcome]
    phases: list[tuple[str, float, float, str]]          # name, start, end, note
    memory: list[tuple[str, int]]                        # label, worker RSS bytes
    model_bytes_disk: int
    model_rss: int
    shutdown_seconds: float
    shutdown_exit_code: int | None
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    swaps_rss: list[int] = field(default_factory=list)                # after each of the 10 swaps

    @property
    def by_cause(self) -> Counter:
        return Counter(o.cause for o in self.outcomes)

    @property
    def unexpected(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.cause == UNEXPECTED]

    def rss(self, label: str) -> int:
        return dict(self.memory)[label]

    @property
    def memory_ok(self) -> bool:
        start = self.rss("start (v1 loaded, warm)")
        return self.rss("after 10 swaps") - start <= self.model_rss


def classify(outcomes: list[Outcome], windows: dict[str, tuple[float, float]], versions: Versions) -> None:
    """Give every outcome its cause (see the module docstring). Answers are checked against the
    oracle only now, because a version may answer before this process has computed its output."""
    no_start, no_end = windows["no version"]
    down_start, down_end = windows["shutdown"]
    for outcome in outcomes:
        if outcome.probabilities is not None:
            outcome.wrong = versions.check(outcome.version, outcome.image, outcome.probabilities)
        if outcome.succeeded:
            outcome.cause = OK
        elif down_start <= outcome.end and outcome.start <= down_end:
            outcome.cause = SHUTDOWN
        elif (outcome.code in ("503", "UNAVAILABLE") and no_start <= outcome.end and outcome.start <= no_end
              and "no version" in outcome.detail):
            outcome.cause = NO_VERSION
        else:
            outcome.cause = UNEXPECTED


def slow_copy(source: Path, target: Path, seconds: float) -> None:
    """A user's `cp -r` into the numeric directory, worst order: saved_model.pb first, in pieces."""
    files = sorted((p for p in source.rglob("*") if p.is_file()),
                   key=lambda p: (p.name != "saved_model.pb", "variables" in p.parts, str(p)))
    chunks = 8
    pause = seconds / (len(files) * chunks)
    target.mkdir()
    for path in files:
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        step = max(1, -(-len(data) // chunks))
        with open(destination, "wb") as out:
            for offset in range(0, max(len(data), 1), step):
                out.write(data[offset:offset + step])
                out.flush()
                time.sleep(pause)


def land_corrupt(source: Path, base_path: Path, version: int) -> Path:
    """A complete-looking version whose saved_model.pb is cut in half (staged, then renamed)."""
    staging = staging_dir(base_path, f"chaos-{version}")
    shutil.copytree(source, staging)
    graph = staging / "saved_model.pb"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    target = base_path / str(version)
    os.rename(staging, target)
    return target


def run(short: bool, work: Path = WORK, log: Callable[[str], None] = print) -> Report:
    """The whole scenario; returns the report (nothing is asserted here)."""
    flavour = tiny_flavour() if short else mobilenet_flavour()
    work = work / ("short" if short else "full")
    shutil.rmtree(work, ignore_errors=True)
    base_path, logs = work / "models" / MODEL, work / "logs"
    base_path.mkdir(parents=True)
    versions = Versions(flavour, base_path)
    server = Server(base_path, logs, graceful=10.0)
    phases: list[tuple[str, float, float, str]] = []
    memory: list[tuple[str, int]] = []
    swaps_rss: list[int] = []
    windows: dict[str, tuple[float, float]] = {}
    load = Load(server, versions)
    seed = iter(range(1, 1000))

    def phase(name: str, started: float, note: str = "") -> None:
        phases.append((name, started, time.monotonic(), note))
        log(f"  {name}: {time.monotonic() - started:.1f} s {note}")

    def serving_version(version: int, timeout: float = 120.0) -> None:
        server.wait_state(version, lambda state, _: state == "AVAILABLE", timeout)

    log(f"chaos: {flavour.name}; server logs in {logs}")
    try:
        server.start("/healthz")
        time.sleep(1.0)
        memory.append(("no model loaded", server.worker_rss()))
        first = versions.export(next(seed))
        server.wait("/readyz")
        load.start()
        time.sleep(2.0 if short else 5.0)
        memory.append(("start (v1 loaded, warm)", server.worker_rss()))
        model_rss = max(memory[1][1] - memory[0][1], 0)
        disk = sum(p.stat().st_size for p in (base_path / str(first)).rglob("*") if p.is_file())

        started = time.monotonic()
        latest = first
        for swap in range(1, 11):
            latest = versions.export(next(seed))
            serving_version(latest)
            time.sleep(flavour.swap_pause)
            swaps_rss.append(server.worker_rss())
        memory.append(("after 10 swaps", server.worker_rss()))
        phase("10 versions via staging rename", started, f"(now serving {latest})")

        started = time.monotonic()
        copied = latest + 1
        versions.remember(copied, versions.expected[latest])
        slow_copy(base_path / str(latest), base_path / str(copied), flavour.copy_seconds)
        serving_version(copied, 60)
        memory.append(("after slow cp -r", server.worker_rss()))
        phase("slow cp -r without staging", started, f"(version {copied})")

        started = time.monotonic()
        corrupt = copied + 1
        land_corrupt(base_path / str(copied), base_path, corrupt)
        _, error = server.wait_state(corrupt, lambda state, error: state == "END" and bool(error), 30)
        time.sleep(1.0)
        memory.append(("after corrupt version", server.worker_rss()))
        phase("corrupt version lands", started, f"(version {corrupt}: {error[:60]})")

        started = time.monotonic()
        shutil.rmtree(base_path / str(copied))
        server.wait_state(copied, lambda state, _: state in ("UNLOADING", "END"), 30)
        time.sleep(2.0)   # the no-version window, under load
        recovery = versions.export(next(seed))
        serving_version(recovery)
        windows["no version"] = (started, time.monotonic())
        memory.append(("after delete + recovery", server.worker_rss()))
        phase("serving version deleted", started, f"(then version {recovery} landed)")

        started = time.monotonic()
        shutdown_seconds, exit_code = server.sigterm(timeout=server.graceful + 15)
        server.start("/readyz")
        server.wait_grpc_serving()
        # The window closes when both protocols are ready plus the clients' longest reconnect
        # backoff (gRPC jitters it by up to 20 %): a channel in backoff has not tried the new server.
        windows["shutdown"] = (started, time.monotonic() + RECONNECT_BACKOFF * 1.2)
        time.sleep(2.0 if short else 5.0)
        memory.append(("after restart", server.worker_rss()))
        phase("SIGTERM + restart", started, f"(exit code {exit_code} after {shutdown_seconds:.1f} s)")
    finally:
        try:
            load.stop()
        finally:
            server.stop()
    windows.setdefault("no version", (0.0, 0.0))
    windows.setdefault("shutdown", (float("inf"), float("inf")))
    classify(load.outcomes, windows, versions)
    return Report(flavour.name, load.outcomes, phases, memory, disk, model_rss, shutdown_seconds,
                  exit_code, windows, swaps_rss)


def table(report: Report) -> str:
    """The outcome table and the memory figures, for people."""
    mb = 1 / 2 ** 20
    lines = [f"model: {report.flavour}", "",
             f"{'outcome':<24}" + "".join(f"{kind:>22}" for kind in KINDS) + f"{'total':>10}"]
    for cause in (OK, NO_VERSION, SHUTDOWN, UNEXPECTED):
        row = [sum(1 for o in report.outcomes if o.cause == cause and o.kind == kind) for kind in KINDS]
        lines.append(f"{cause:<24}" + "".join(f"{n:>22}" for n in row) + f"{sum(row):>10}")
    row = [sum(1 for o in report.outcomes if o.kind == kind) for kind in KINDS]
    lines.append(f"{'requests sent':<24}" + "".join(f"{n:>22}" for n in row) + f"{sum(row):>10}")
    failed = [o for o in report.outcomes if o.cause != OK]
    lines += ["", f"failed {len(failed)} of {len(report.outcomes)}; by answer:"]
    for (cause, code, detail), n in Counter((o.cause, o.code, (o.wrong or o.detail)[:70]) for o in failed).most_common(12):
        lines.append(f"  {n:>6}  {cause:<22} {code:<22} {detail}")
    lines += ["", "phases:"]
    t0 = report.phases[0][1] if report.phases else 0.0
    for name, start, end, note in report.phases:
        lines.append(f"  {start - t0:7.1f} s .. {end - t0:7.1f} s  {name} {note}")
    lines += ["", f"SIGTERM: exit code {report.shutdown_exit_code} after {report.shutdown_seconds:.1f} s",
              "", "memory (gunicorn worker RSS):"]
    for label, rss in report.memory:
        lines.append(f"  {label:<28} {rss * mb:9.1f} MB")
    lines.append("  after each swap (MB): " + " ".join(f"{rss * mb:.0f}" for rss in report.swaps_rss))
    start = report.rss("start (v1 loaded, warm)")
    growth = report.rss("after 10 swaps") - start
    lines += [f"  one model's size: {report.model_rss * mb:.1f} MB resident (loading v1 into an empty server), "
              f"{report.model_bytes_disk * mb:.1f} MB on disk",
              f"  growth over 10 swaps: {growth * mb:+.1f} MB -> {'within' if report.memory_ok else 'OVER'} "
              f"one model's size",
              "", f"UNEXPECTED failures: {len(report.unexpected)}"]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="tiny model and short phases (the test's form)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv[1:] if argv and argv[0] == "chaos" else argv)   # `python -m bench chaos ...`
    report = run(args.short)
    print(table(report), flush=True)
    out = args.out or (WORK / f"chaos-{'short' if args.short else 'full'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "model": report.flavour, "requests": len(report.outcomes), "by_cause": dict(report.by_cause),
        "by_kind_and_cause": {f"{k}/{c}": n for (k, c), n in Counter((o.kind, o.cause) for o in report.outcomes).items()},
        "unexpected": [vars(o) for o in report.unexpected[:50]],
        "memory_bytes": dict(report.memory), "model_rss_bytes": report.model_rss,
        "model_disk_bytes": report.model_bytes_disk, "memory_ok": report.memory_ok,
        "shutdown_seconds": report.shutdown_seconds, "shutdown_exit_code": report.shutdown_exit_code,
    }, indent=2))
    print(f"figures: {out}")
    return 0 if not report.unexpected and report.memory_ok else 1
