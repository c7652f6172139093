"""`python -m bench serve|smoke`: our server against the limit, a peer and the naive approach.

One run, one machine, one workload (bench/workload.py), one load generator (bench/loadgen.py):
1. the limit: the SavedModel signature in-process at batch 1 and at its best batch (bench/limit.py),
   right before and (full run) right after our rows, so that it brackets them in time;
2. ours: REST `:predict` b64, REST `:classify_image` raw, gRPC `Predict`, each at every concurrency,
   on the default runtime (`ours`), with `--runtime tensorflow` (`ours-tf`) and with
   `--precision int8` (`ours-int8`, when the version carries an int8 form);
3. memory: that server's RSS after its first load, after the traffic, then after N hot swaps;
4. floor: our REST stack with no model, at concurrency 16 (what HTTP alone costs per request);
5. naive: Flask on one gunicorn sync worker; 6. kserve: KServe's Python server (own venv).
Every row also records the server's CPU per image (its process tree's CPU time over the row).
Results go to a JSON file; the full run also draws the plot and rewrites the generated block of
`## Serving` in docs/benchmarks.md.

`smoke` is the same harness in seconds on the tiny test model (no kserve unless its venv is
already there, no docs): tests/bench/test_smoke.py runs it so the harness cannot rot.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench import report, systems
from bench.processes import ServerProcess
from bench.workload import REPO, WORK, Workload, mobilenet_workload, publish_copy, remove_versions_above, tiny_workload

MB = 1 << 20


def parse_args(argv: list[str]) -> argparse.Namespace:
    smoke = argv[0] == "smoke"
    parser = argparse.ArgumentParser(prog=f"python -m bench {argv[0]}", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=WORK / "smoke" / "serve.json" if smoke else REPO / "bench/results/serve.json")
    parser.add_argument("--concurrency", default="1,16" if smoke else "1,4,16,64")
    parser.add_argument("--seconds", type=float, default=0.5 if smoke else 8.0, help="measured window per row")
    parser.add_argument("--warmup", type=float, default=0.2 if smoke else 2.0, help="unmeasured lead-in per row")
    parser.add_argument("--swaps", type=int, default=3 if smoke else 20)
    parser.add_argument("--systems", default="ours,ours-tf,ours-int8,memory,floor,naive,kserve")
    parser.add_argument("--kserve", choices=["install", "existing", "skip"], default="existing" if smoke else "install",
                        help="install: create bench/work/kserve-venv if missing; existing: use it only if present")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra flag for `python -m serving` (repeat), e.g. --server-arg=--max-batch-size=32")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment variable for our server's process (repeat), e.g. MALLOC_ARENA_MAX=2")
    parser.add_argument("--docs", type=Path, default=None if smoke else REPO / "docs/benchmarks.md")
    parser.add_argument("--plot", type=Path, default=None if smoke else REPO / "docs/img/serving-benchmark.png")
    args = parser.parse_args(argv[1:])
    args.smoke = smoke
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.systems = set(args.systems.split(","))
    return args


Layout = tuple[str, str, int, int]     # runtime, precision, intra-op threads, callers


def limit_layouts(workload: Workload) -> list[Layout]:
    """TensorFlow with its defaults, and with one thread per call and one caller per CPU, as our
    server runs (serving/runtime.py); then each LiteRT form the version carries, one caller per
    CPU with one single-threaded interpreter each, as the server runs it."""
    from model_format.fast_form import FILES
    from serving.runtime import available_cpus

    cpus = available_cpus()
    forms = [("litert", precision, 1, cpus) for precision, name in FILES.items()
             if (workload.version_dir / name).exists()]
    return [("tensorflow", "fp32", 0, 1), ("tensorflow", "fp32", 1, cpus), *forms]


def run_limit(workload: Workload, smoke: bool, layout: Layout) -> dict:
    """The limit in one layout, measured in a fresh process of its own (thread pools are fixed
    when TensorFlow starts)."""
    runtime, precision, intra_op, callers = layout
    command = [sys.executable, "-m", "bench.limit", "--version-dir", str(workload.version_dir),
               "--image-count", str(len(workload.images)), "--intra-op", str(intra_op), "--callers", str(callers),
               "--runtime", runtime, "--precision", precision]
    command += ["--batch1-calls", "30", "--seconds", "0.2", "--batches", "1,8,32"] if smoke else []
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if done.returncode != 0:
        raise RuntimeError(f"bench.limit failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def measure_limit(workload: Workload, smoke: bool) -> list[dict]:
    """One run per layout, each printed as it ends."""
    runs = []
    for layout in limit_layouts(workload):
        run = run_limit(workload, smoke, layout)
        print(f"  limit, {run['layout']}: batch 1 p50 {run['batch1']['p50_ms']:.1f} ms; best batch "
              f"{run['best']['batch']}: {run['best']['images_per_s']:.1f} images/s", flush=True)
        runs.append(run)
    return runs


def _strictest(runs: list[dict]) -> dict:
    """The figures hardest for a server to meet: highest best-batch throughput, lowest batch-1 p50."""
    return {"best": max((run["best"] for run in runs), key=lambda row: row["images_per_s"]),
            "batch1": min((run["batch1"] for run in runs), key=lambda row: row["p50_ms"])}


def stricter_limit(runs: list[dict]) -> dict:
    """Every limit run (each layout and runtime, before and after our rows): the limit is the
    strictest figures of the fp32 runtimes, so neither a noisy neighbour, TensorFlow's default
    threading nor a slower runtime can flatter us. Each runtime's own strictest figures are kept
    too (`by_runtime`: tensorflow, litert-fp32, litert-int8), for the runtime targets."""
    from serving.runtime import available_cpus

    by_runtime: dict[str, list[dict]] = {}
    for run in runs:
        key = run.get("runtime", "tensorflow")
        by_runtime.setdefault(key if key == "tensorflow" else f"{key}-{run['precision']}", []).append(run)
    fp32 = [run for run in runs if run.get("precision", "fp32") == "fp32"]
    tensorflow = by_runtime.get("tensorflow", runs)
    model = {key: tensorflow[0][key] for key in ("model_rss_bytes", "sweep_rss_growth_bytes")}
    return {**model, "cpus": available_cpus(), **_strictest(fp32), "runs": runs,
            "by_runtime": {key: _strictest(group) for key, group in by_runtime.items()}}


def measure_rows(rows: list[systems.Row], args: argparse.Namespace, results: dict, server: ServerProcess,
                 concurrencies: list[int] | None = None) -> None:
    """Probe each row once (a wrong answer stops that row), then run it at every concurrency,
    with the server's CPU time per image over the run (warm-up included: a closed loop is
    steady, so its rate holds for the window)."""
    for row in rows:
        try:
            answer = row.probe()
        except Exception as error:  # a broken system is a finding to report, not a crash of the run
            results["failures"].append(f"{row.system} {row.api}: probe failed: {error}")
            print(f"  {row.system:7s} {row.api:28s} probe FAILED: {error}", flush=True)
            continue
        for concurrency in concurrencies or args.concurrency:
            cpu, wall = server.cpu_seconds(), time.perf_counter()
            result = row.run(concurrency, args.seconds, args.warmup).as_dict()
            cpu_rate = (server.cpu_seconds() - cpu) / (time.perf_counter() - wall)
            images_per_s = result["images_per_s"]
            result["server_cpu_ms_per_image"] = 1000 * cpu_rate / images_per_s if images_per_s else None
            results["rows"].append({"system": row.system, "api": row.api, "probe": answer, **result})
            print(f"  {row.system:7s} {row.api:28s} c={concurrency:<3d} {result['images_per_s']:7.1f} img/s  "
                  f"p50 {result['p50_ms']:7.1f} ms  p99 {result['p99_ms']:7.1f} ms  err {result['errors']}  "
                  f"server cpu {result['server_cpu_ms_per_image'] or 0:.2f} ms/img  "
                  f"client cpu {result['loadgen_cpu_pct']:.0f}%  load {result['load_avg_1m']:.2f}", flush=True)


def run_ours(workload: Workload, classes: int, args: argparse.Namespace, results: dict, logs: Path) -> None:
    """Every API of ours at every concurrency, the limit again (full run), then (if asked) the
    memory phase on the same server.

    Why the limit here and not at the end: the limit runs right before and right after our rows
    bracket them in time. On a VM whose speed drifts 20-30% within an hour (docs/benchmarks.md),
    a limit measured after the other systems and the swaps, minutes later, compared our rows with
    another minute's machine. The strictest figures of both runs are still the ones used."""
    env = dict(item.split("=", 1) for item in args.server_env)
    server, url, target = systems.start_ours(workload, logs, "throughput", args.server_arg, env)
    with server:
        time.sleep(1.0)
        results.setdefault("runtimes", {})["ours"] = systems.served_runtime(url, workload.name)
        first_load = {"tree": server.rss_bytes(), "worker": server.largest_process_rss()[1]}
        measure_rows(systems.our_rows(url, target, workload, classes), args, results, server)
        if not args.smoke:
            print("limit again, right after our rows (the strictest figures of all runs are used) ...", flush=True)
            results["limit"] = stricter_limit(results["limit"]["runs"] + measure_limit(workload, args.smoke))
        after_traffic = {"tree": server.rss_bytes(), "worker": server.largest_process_rss()[1]}
        results["memory"] = {"rss_first_load": first_load, "rss_after_traffic": after_traffic,
                             "peak_rss_after_traffic": server.peak_rss_bytes(), "swaps": 0}
        if "memory" in args.systems:
            hot_swaps(server, url, workload, classes, args.swaps, results["memory"])


RUNTIME_VARIANTS = {"ours-tf": ["--runtime", "tensorflow"], "ours-int8": ["--precision", "int8"]}


def run_variant(system: str, workload: Workload, classes: int, args: argparse.Namespace, results: dict,
                logs: Path) -> None:
    """Our server with one runtime setting changed (RUNTIME_VARIANTS), every API at every concurrency."""
    if system == "ours-int8" and not (workload.version_dir / "model_int8.tflite").exists():
        results["skipped"].append(f"{system}: the workload's version has no int8 form")
        return
    env = dict(item.split("=", 1) for item in args.server_env)
    server, url, target = systems.start_ours(workload, logs, system, [*args.server_arg, *RUNTIME_VARIANTS[system]], env)
    with server:
        time.sleep(1.0)
        results.setdefault("runtimes", {})[system] = systems.served_runtime(url, workload.name)
        print(f"  {system} serves on {results['runtimes'][system]}", flush=True)
        measure_rows(systems.our_rows(url, target, workload, classes, system), args, results, server)


def hot_swaps(server, url: str, workload: Workload, classes: int, swaps: int, memory: dict) -> None:
    """Publish `swaps` new versions one after another, each answering a request before the next."""
    series, started = [], time.monotonic()
    probe = systems.predict_row("ours", "REST :predict b64", url, workload, classes).probe
    for version in range(2, swaps + 2):
        publish_copy(workload, version)
        server.wait_ready(lambda: systems.version_states(url, workload.name).get(version) == "AVAILABLE", 120)
        probe()
        series.append(server.rss_bytes())
    newest = swaps + 1
    server.wait_ready(lambda: [v for v, s in systems.version_states(url, workload.name).items()
                               if s == "AVAILABLE"] == [newest], 60)
    time.sleep(2.0)
    memory.update(swaps=swaps, rss_series=series, swap_seconds=time.monotonic() - started,
                  rss_after_swaps={"tree": server.rss_bytes(), "worker": server.largest_process_rss()[1]},
                  peak_rss=server.peak_rss_bytes(),
                  final_states={str(v): s for v, s in systems.version_states(url, workload.name).items()})
    remove_versions_above(workload)
    print(f"  memory: first load {memory['rss_first_load']['tree'] / MB:.0f} MB, after traffic "
          f"{memory['rss_after_traffic']['tree'] / MB:.0f} MB, after {swaps} swaps "
          f"{memory['rss_after_swaps']['tree'] / MB:.0f} MB (process tree)", flush=True)


def run_naive(workload: Workload, classes: int, args: argparse.Namespace, results: dict, logs: Path) -> None:
    server, url = systems.start_naive(workload, logs)
    with server:
        measure_rows([systems.predict_row("naive", "REST :predict b64", url, workload, classes)], args, results, server)


def run_kserve(workload: Workload, classes: int, args: argparse.Namespace, results: dict, logs: Path) -> None:
    python = systems.kserve_python(install=args.kserve == "install")
    if python is None:
        results["skipped"].append("kserve: its venv (bench/work/kserve-venv) is not there; smoke never installs it")
        return
    server, url = systems.start_kserve(python, workload, logs)
    with server:
        row = systems.predict_row("kserve", "REST V1 :predict b64", url, workload, classes)
        measure_rows([row], args, results, server)


FLOOR_CONCURRENCY = 16   # the concurrency of the throughput targets


def run_floor(workload: Workload, classes: int, args: argparse.Namespace, results: dict, logs: Path) -> None:
    """The HTTP floor (bench/floor_server.py) under the same load as ours at concurrency 16."""
    server, url = systems.start_floor(logs)
    with server:
        measure_rows([systems.floor_row(url, workload)], args, results, server, [FLOOR_CONCURRENCY])


PHASES = (("ours", run_ours),
          *((name, lambda *a, name=name: run_variant(name, *a)) for name in RUNTIME_VARIANTS),
          ("floor", run_floor), ("naive", run_naive), ("kserve", run_kserve))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    workload = tiny_workload(WORK / "smoke") if args.smoke else mobilenet_workload()
    remove_versions_above(workload)
    classes = len((workload.version_dir / "assets" / "labels.txt").read_text().splitlines())
    logs = args.out.parent / "logs" if args.smoke else WORK / "logs"
    results: dict = {
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                 "load_avg_at_start": os.getloadavg()},
        "workload": {"description": workload.description, "images": len(workload.images),
                     "fast_forms": json.loads((workload.version_dir / "assets.extra" / "metadata.json").read_text()
                                              ).get("fast_forms", {}),
                     "mean_image_bytes": sum(map(len, workload.images)) / len(workload.images),
                     "model_bytes": workload.model_bytes},
        "settings": {"concurrency": args.concurrency, "seconds": args.seconds, "warmup": args.warmup,
                     "server_args": args.server_arg, "server_env": args.server_env},
        "rows": [], "failures": [], "skipped": [],
    }
    print(f"workload: {workload.description}; limit ...", flush=True)
    results["limit"] = stricter_limit(measure_limit(workload, args.smoke))
    for name, phase in PHASES:
        if name in args.systems:
            print(f"{name} ...", flush=True)
            try:
                phase(workload, classes, args, results, logs)
            except Exception as error:  # keep measuring the other systems; the failure is reported
                results["failures"].append(f"{name}: {type(error).__name__}: {error}")
                print(f"  {name} FAILED: {error}", flush=True)
    results["duration_s"] = time.monotonic() - started
    results["host"]["load_avg_at_end"] = os.getloadavg()
    results["targets"] = report.targets(results)
    write_outputs(results, args)
    return 1 if results["failures"] else 0


def write_outputs(results: dict, args: argparse.Namespace) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + report.table(results) + "\n\n" + report.verdicts(results) + "\n\n" + report.memory_text(results))
    print(f"\nwrote {args.out} in {results['duration_s']:.0f} s", flush=True)
    if args.plot:
        report.plot(results, args.plot)
        print(f"wrote {args.plot}")
    if args.docs:
        document = args.docs.read_text() if args.docs.exists() else ""
        plot = Path(os.path.relpath(args.plot, args.docs.parent)) if args.plot else None
        generated = report.generated_section(results, plot)
        args.docs.write_text(report.update_document(document, "Serving", generated))
        print(f"updated {args.docs}")
