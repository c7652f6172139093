"""`python -m trainer train ...` and `python -m trainer predict ...`.

User errors (bad data folder, unknown backbone, missing weights) print one line and exit 2 with no
traceback. SIGTERM (a cancelled retrain job, a pod eviction) unwinds cleanly: the export's staging
directory is removed, no version appears, exit code 143. Ctrl-C (SIGINT) unwinds the same way and
prints one line, exit code 130, with a hint to `--resume` when a stage-1 checkpoint was kept.
TensorFlow is imported only after the data folder has been looked at, so layout errors come back
in a fraction of a second.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from model_format.tensorflow_logs import import_tensorflow
from trainer.config import DEFAULTS, DEVICE_MODES, FT_SCHEDULES, TrainConfig, fast_form_list, layer_count
from trainer.errors import Terminated, TrainerError

EXIT_USAGE = 2
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_INTERRUPTED = 128 + signal.SIGINT


def _weights(value: str) -> str:
    return value if value in ("imagenet", "none") else str(Path(value))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="two-stage transfer learning, exports a new version")
    add = train.add_argument
    add("--data", required=True, help="folder with one sub-folder of images per class")
    add("--model-name", required=True)
    add("--model-base-path", required=True, help="versions are written as BASE/<n>/")
    add("--backbone", default=DEFAULTS.backbone,
        help="mobilenet_v2 | resnet50 | efficientnet_b0 | vgg16 | inception_v3")
    add("--weights", type=_weights, default=DEFAULTS.weights,
        help="imagenet (Keras download) | PATH to a no-top weights file | none (random init)")
    add("--image-size", type=int, default=None, help="default: the backbone's own input size")
    add("--epochs", type=int, default=DEFAULTS.epochs, help="stage 1 (feature extraction) epochs")
    add("--ft-epochs", type=int, default=DEFAULTS.ft_epochs, help="stage 2 (fine-tuning) epochs; 0 skips stage 2")
    add("--unfreeze-top", type=layer_count, default=DEFAULTS.unfreeze_top, metavar="K|all",
        help="top base layers unfrozen in stage 2 (default: all)")
    add("--lr", dest="learning_rate", type=float, default=DEFAULTS.learning_rate, help="stage 1 learning rate")
    add("--ft-lr", dest="ft_learning_rate", type=float, default=DEFAULTS.ft_learning_rate,
        help="stage 2 (peak) learning rate (chosen by measurement, docs/trainer.md)")
    add("--ft-schedule", choices=FT_SCHEDULES, default=DEFAULTS.ft_schedule,
        help="stage 2 learning rate: constant, or cosine decay to 0 over the --ft-epochs steps")
    add("--ft-warmup-epochs", type=int, default=DEFAULTS.ft_warmup_epochs,
        help="stage 2 linear learning-rate warm-up epochs before the schedule (0: none)")
    add("--patience", type=int, default=DEFAULTS.patience, help="stage 2 early stopping patience (val loss)")
    add("--batch-size", type=int, default=DEFAULTS.batch_size)
    add("--dropout", type=float, default=DEFAULTS.dropout)
    add("--hidden-units", type=int, default=DEFAULTS.hidden_units, help="optional hidden Dense layer in the head")
    add("--cache-features", action="store_true",
        help="stage 1 on pooled features computed once (fast, no augmentation)")
    add("--no-augment", dest="augment", action="store_false", help="no flip/rotation/zoom")
    add("--seed", type=int, default=DEFAULTS.seed)
    add("--val-data", help="validation folder (same classes) instead of a split of --data")
    add("--test-data", help="test folder (same classes) instead of a split of --data")
    add("--val-fraction", type=float, default=DEFAULTS.val_fraction)
    add("--test-fraction", type=float, default=DEFAULTS.test_fraction)
    add("--devices", default=DEFAULTS.devices, choices=DEVICE_MODES,
        help="auto: MirroredStrategy + mixed precision on GPUs, else CPU")
    add("--from-scratch", action="store_true",
        help="baseline: train every layer from the start (use with --weights none)")
    add("--bn-momentum", type=float, default=None, help="override BatchNormalization momentum")
    add("--pushgateway", help="Prometheus Pushgateway URL for the run's figures")
    add("--resume", action="store_true", help="continue from this run's stage checkpoint")
    add("--quiet", action="store_true", help="no per-epoch lines")
    add("--fast-forms", type=fast_form_list, default=DEFAULTS.fast_forms, metavar="LIST|none",
        help="LiteRT forms exported beside the SavedModel and evaluated on the test split "
             "(default: fp32,int8; the server's --runtime/--precision pick among them)")
    add("--verbose", dest="tensorflow_logs", action="store_true",
        help="show TensorFlow's C++ start-up log (oneDNN, CUDA probing), hidden by default")

    predict = commands.add_parser("predict", help="top-k labels from an exported version")
    predict.add_argument("--model-base-path", required=True, type=Path)
    predict.add_argument("--images", required=True, type=Path, help="an image file or a folder")
    predict.add_argument("--version", type=int, default=None, help="default: the newest")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--limit", type=int, default=None, help="at most this many images")
    predict.add_argument("--verbose", dest="tensorflow_logs", action="store_true",
                         help="show TensorFlow's C++ start-up log, hidden by default")
    return parser


def _train(args: argparse.Namespace) -> int:
    from trainer.checks import check_base_path, check_numbers
    from trainer.data import discover

    check_numbers(args)
    discover(args.data)  # layout errors before the seconds-long TensorFlow import
    check_base_path(args.model_base_path)
    import_tensorflow(args.tensorflow_logs)
    from trainer.train import run

    options = {k: v for k, v in vars(args).items() if k not in ("command", "quiet", "tensorflow_logs")}
    result = run(TrainConfig(**options, verbose=0 if args.quiet else 2))
    if result.skipped:
        print(f"skipped {len(result.skipped)} files (each named, with the reason, in the log above)",
              file=sys.stderr)
    print(result.version_dir)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from trainer.checks import check_top_k

    check_top_k(args.top_k, args.limit)
    import_tensorflow(args.tensorflow_logs)
    from trainer.predict import print_predictions

    print_predictions(args.model_base_path, args.images, args.version, args.top_k, args.limit)
    return 0


def _interrupted(args: argparse.Namespace) -> int:
    """One line for Ctrl-C instead of a traceback; the way back in if a checkpoint is there."""
    message = "interrupted: no version exported"
    checkpoints = Path(args.model_base_path) / ".checkpoints" if args.command == "train" else None
    if checkpoints is not None and any(checkpoints.glob("*/stage1.weights.h5")):
        message += "; stage 1 is saved: run the same command with --resume to continue from it"
    print(message, file=sys.stderr)
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from trainer import termination

    previous = termination.install()
    try:
        return _train(args) if args.command == "train" else _predict(args)
    except TrainerError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        print("terminated: training stopped, no version exported", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        return _interrupted(args)
    finally:
        termination.restore(previous)
