"""One training run end to end: data -> stage 1 -> stage 2 -> evaluation -> export of a new version.

`TrainConfig` is exactly what `python -m trainer train` parses; `run()` is what the CLI, the
benchmark and the tests call.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras

from trainer import data as datasets
from trainer import fast_forms, termination
from trainer.backbones import get_backbone
from trainer.checks import check_base_path, check_numbers
from trainer.config import TrainConfig
from trainer.devices import describe, select_strategy
from trainer.distributed import ClusterSpec, cluster_from_environment, export_base_path
from trainer.errors import TrainerError
from trainer.evaluate import comparison_table, evaluate
from trainer.export import export_version, warmup_image
from trainer.model import Classifier, build_classifier
from trainer.pipeline import image_dataset
from trainer.stages import StageRun, cached_feature_extraction, feature_extraction, fine_tuning

log = logging.getLogger(__name__)
CHECKPOINTS = ".checkpoints"
_NOT_STAGE1 = {"resume", "pushgateway", "verbose", "ft_epochs", "ft_learning_rate", "ft_schedule",
               "ft_warmup_epochs", "unfreeze_top", "patience", "devices"}


@dataclass
class TrainResult:
    version_dir: Path
    classifier: Classifier
    image_size: int
    class_names: list[str]
    evaluation: dict[str, dict[str, Any]]
    stages: dict[str, StageRun]
    skipped: list[str]
    exported_stage: str = "stage1"
    export_reason: str = ""


@dataclass
class Splits:
    class_names: list[str]
    train: datasets.Split
    val: datasets.Split
    test: datasets.Split
    skipped: list[str]


def load_splits(config: TrainConfig) -> Splits:
    """Validated train/val/test: a stratified split of --data, or --val-data/--test-data folders."""
    folder = datasets.validate(datasets.discover(config.data))
    skipped = list(folder.skipped)
    extra = {}
    for role, path in (("val", config.val_data), ("test", config.test_data)):
        if path:
            other = datasets.validate(datasets.discover(path, folder.class_names))
            skipped += other.skipped
            extra[role] = other.as_split()
    train, val, test = datasets.stratified_split(
        folder, config.seed, 0.0 if "val" in extra else config.val_fraction,
        0.0 if "test" in extra else config.test_fraction)
    return Splits(folder.class_names, train, extra.get("val", val), extra.get("test", test), skipped)


def _run_key(config: TrainConfig, fingerprint: str) -> str:
    """Identifies "the same run" for --resume: same data and the same stage-1 arguments (stage 2
    and reporting options may change between the interrupted run and its resumption)."""
    relevant = {k: v for k, v in dataclasses.asdict(config).items()
                if k not in _NOT_STAGE1 or (config.from_scratch and k == "ft_epochs")}
    return hashlib.sha256(json.dumps([relevant, fingerprint], sort_keys=True).encode()).hexdigest()[:16]


def _stage1(config: TrainConfig, classifier: Classifier, strategy, train_ds, val_ds, splits: Splits,
            image_size: int, checkpoint: Path) -> StageRun:
    """Stage 1, or its checkpoint when resuming; saves the checkpoint for a later --resume."""
    weights_file, record = checkpoint / "stage1.weights.h5", checkpoint / "stage1.json"
    if config.resume and weights_file.is_file() and record.is_file():
        classifier.model.load_weights(weights_file)
        log.info("resumed: stage 1 weights from %s", weights_file)
        return StageRun(**json.loads(record.read_text()))
    epochs = config.epochs + (config.ft_epochs if config.from_scratch else 0)
    if config.cache_features and not config.from_scratch:
        plain = image_dataset(splits.train, image_size, config.batch_size)
        run = cached_feature_extraction(classifier, strategy, plain, val_ds, epochs=epochs,
                                        learning_rate=config.learning_rate,
                                        batch_size=config.batch_size, verbose=config.verbose)
    else:
        run = feature_extraction(classifier, strategy, train_ds, val_ds, epochs=epochs,
                                 learning_rate=config.learning_rate, train_images=len(splits.train),
                                 verbose=config.verbose)
    checkpoint.mkdir(parents=True, exist_ok=True)
    classifier.model.save_weights(weights_file)
    record.write_text(json.dumps(run.as_dict()))
    return run


def _drop_checkpoint(checkpoint: Path) -> None:
    """The run is exported: its checkpoint (and the checkpoints dir, if now empty) go."""
    shutil.rmtree(checkpoint, ignore_errors=True)
    try:
        checkpoint.parent.rmdir()
    except OSError:
        pass  # other runs' checkpoints are still there


def _cluster(config: TrainConfig) -> ClusterSpec | None:
    """The multi-worker cluster from the environment (None: one machine), refusing the options
    that would let the workers' steps diverge (a cached-feature or resumed stage on one worker)."""
    try:
        cluster = cluster_from_environment()
    except ValueError as error:
        raise TrainerError(str(error)) from None
    if cluster and (config.cache_features or config.resume):
        raise TrainerError("--cache-features and --resume are not supported in multi-worker training")
    return cluster


@dataclass
class StageChoice:
    """Which stage's weights are exported, and why (metadata.json, the log, the job record)."""

    stage: str
    reason: str


def choose_stage(stages: dict[str, StageRun]) -> StageChoice:
    """The rule: stage 2 is exported only if its best validation loss beats the validation loss of
    the weights stage 1 ended with; otherwise stage 1's weights are restored and exported. Loss,
    not accuracy, because it also sees confidence: a collapsing model loses it first. Validation,
    never test, so the choice does not peek at the figures it is judged on."""
    first = stages["stage1"].final_val_loss
    if "stage2" not in stages:
        return StageChoice("stage1", "no stage 2 was run")
    second = stages["stage2"].final_val_loss
    if first is None or second is None:
        return StageChoice("stage2", "no validation loss to compare; stage 2 kept")
    if second < first:
        return StageChoice("stage2", f"stage 2's best validation loss {second:.4f} beat stage 1's "
                                     f"{first:.4f}")
    return StageChoice("stage1", f"stage 2's best validation loss {second:.4f} did not beat stage 1's "
                                 f"{first:.4f}; stage 1's weights restored")


def _stage2(config: TrainConfig, classifier: Classifier, strategy, train_ds, val_ds,
            splits: Splits) -> tuple[StageRun, list]:
    """Fine-tuning, returning its run and stage 1's weights (kept in memory to restore them)."""
    stage1_weights = classifier.model.get_weights()
    run = fine_tuning(classifier, strategy, train_ds, val_ds, epochs=config.ft_epochs,
                      unfreeze=config.unfreeze_top, learning_rate=config.ft_learning_rate,
                      patience=config.patience, train_images=len(splits.train),
                      schedule=config.ft_schedule, warmup_epochs=config.ft_warmup_epochs,
                      verbose=config.verbose)
    return run, stage1_weights


def _log_choice(choice: StageChoice, evaluation: dict[str, dict[str, Any]]) -> None:
    accuracy = ", ".join(f"{s} {100 * e['accuracy']:.1f}%" for s, e in evaluation.items())
    log.info("exported %s: %s (test accuracy %s)", choice.stage, choice.reason, accuracy)


def run(config: TrainConfig) -> TrainResult:
    """Train, evaluate after each stage, export the next version; returns what was made."""
    check_numbers(config)
    cluster = _cluster(config)
    strategy = select_strategy(config.devices, cluster)  # first TF op: multi-worker requires it
    base_path = export_base_path(Path(config.model_base_path), cluster)  # scratch on non-chiefs
    check_base_path(base_path)   # before stage 1, whose work an unwritable path would lose
    backbone = get_backbone(config.backbone)
    image_size = backbone.default_size if config.image_size is None else config.image_size
    if image_size < backbone.min_size:
        raise TrainerError(f"--image-size {image_size} is below {backbone.name}'s minimum {backbone.min_size}")
    splits = load_splits(config)
    fingerprint = datasets.fingerprint([splits.train, splits.val, splits.test], splits.class_names)
    log.info("data: %d classes, train %d / val %d / test %d images, %d skipped",
             len(splits.class_names), len(splits.train), len(splits.val), len(splits.test),
             len(splits.skipped))
    keras.utils.set_random_seed(config.seed)
    train_ds = image_dataset(splits.train, image_size, config.batch_size, training=True,
                             augment=config.augment, seed=config.seed)
    val_ds = image_dataset(splits.val, image_size, config.batch_size)
    test_ds = image_dataset(splits.test, image_size, config.batch_size)
    with strategy.scope():
        classifier = build_classifier(backbone, len(splits.class_names), image_size, config.weights,
                                      dropout=config.dropout, hidden_units=config.hidden_units,
                                      from_scratch=config.from_scratch, bn_momentum=config.bn_momentum)
    checkpoint = base_path / CHECKPOINTS / _run_key(config, fingerprint)
    stages = {"stage1": _stage1(config, classifier, strategy, train_ds, val_ds, splits, image_size,
                                checkpoint)}
    evaluation = {"stage1": evaluate(classifier.model, test_ds, splits.class_names)}
    stage1_weights = None
    if config.ft_epochs > 0 and not config.from_scratch:
        stages["stage2"], stage1_weights = _stage2(config, classifier, strategy, train_ds, val_ds,
                                                   splits)
        evaluation["stage2"] = evaluate(classifier.model, test_ds, splits.class_names)
    choice = choose_stage(stages)
    if choice.stage == "stage1" and stage1_weights is not None:
        classifier.model.set_weights(stage1_weights)
    print(comparison_table(evaluation, splits.class_names), flush=True)
    _log_choice(choice, evaluation)
    metadata = {
        "backbone": config.backbone, "weights": config.weights,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_args": dataclasses.asdict(config), "dataset_fingerprint": fingerprint,
        "dataset": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test),
                    "skipped_files": len(splits.skipped)},
        "devices": describe(strategy),
        "stages": {name: stage.as_dict() for name, stage in stages.items()},
        "evaluation": evaluation,
        "exported_stage": choice.stage,
        "export_reason": choice.reason,
    }
    files, metadata["fast_forms"] = fast_forms.build(
        classifier.model, image_size, config.fast_forms, image_dataset(splits.train, image_size, config.batch_size),
        test_ds, splits.class_names)
    termination.check()  # a SIGTERM swallowed during evaluation still stops the run here
    warmup = [warmup_image(Path(p).read_bytes(), image_size) for p in splits.test.paths[:3]]
    version_dir = export_version(classifier.model, base_path, model_name=config.model_name,
                                 labels=splits.class_names, image_size=image_size, metadata=metadata,
                                 warmup_images=warmup, files=files)
    _drop_checkpoint(checkpoint)
    result = TrainResult(version_dir, classifier, image_size, splits.class_names, evaluation, stages,
                         splits.skipped, choice.stage, choice.reason)
    if config.pushgateway:
        push_figures(config, result)
    return result


def run_figures(result: TrainResult) -> dict[str, Any]:
    """What a run reports to monitoring: accuracies, durations, throughput, version."""
    return {
        "stage_accuracy": {s: e["accuracy"] for s, e in result.evaluation.items()},
        "stage_duration_seconds": {s: r.seconds for s, r in result.stages.items()},
        "images_per_second": {s: r.images_per_second for s, r in result.stages.items()},
        "version": int(result.version_dir.name),
        "finished_at": time.time(),
    }


def push_figures(config: TrainConfig, result: TrainResult) -> None:
    """Push to a Pushgateway; the module is imported only when asked for (monitoring owns it)."""
    from trainer.pushmetrics import push_run_metrics

    push_run_metrics(config.pushgateway, config.model_name, run_figures(result))
