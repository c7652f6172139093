"""The arguments of one training run, with their defaults: the single source the CLI, the
benchmark and the tests share. No TensorFlow import here, so `--help` and usage errors are fast."""
from __future__ import annotations

from dataclasses import dataclass

from model_format.training import FT_SCHEDULES

__all__ = ["ALL_LAYERS", "DEFAULTS", "DEVICE_MODES", "FAST_FORMS", "FT_SCHEDULES", "TrainConfig"]

FAST_FORMS = ("fp32", "int8")            # model_format.fast_form.PRECISIONS, without importing it
DEVICE_MODES = ("auto", "cpu", "mirrored")   # --devices (trainer.devices.select_strategy)
ALL_LAYERS = -1                          # --unfreeze-top all: every layer of the base, whatever the backbone


def layer_count(text: str) -> int:
    """`--unfreeze-top` value: a number of top layers, or `all` (ALL_LAYERS)."""
    if text.strip().lower() == "all":
        return ALL_LAYERS
    value = int(text)
    if value < 0:
        raise ValueError(f"expected a number of layers >= 0 or 'all', got {text!r}")
    return value


def describe_layers(count: int) -> str:
    """`--unfreeze-top` in words, for logs and reports: "all layers" or "top K layers"."""
    return "all layers" if count < 0 else f"top {count} layers"


@dataclass
class TrainConfig:
    """One field per `python -m trainer train` flag (stored in metadata.json as training_args).

    Stage 2 defaults: the whole base (`all`; BatchNorm stays frozen), Adam at 3e-4 decayed to 0
    by a cosine over the planned 20 epochs, early stopping with patience 5, and a linear warm-up
    of the rate over the first epoch (`ft_warmup_epochs` 1), so a short run cannot wreck the base.
    Whatever the schedule, the exported weights are the better stage on validation loss. The
    candidates and figures are in docs/trainer.md, "Stage 2: fine-tuning"."""

    data: str
    model_name: str
    model_base_path: str
    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"
    image_size: int | None = None
    epochs: int = 10
    ft_epochs: int = 20
    unfreeze_top: int = ALL_LAYERS
    learning_rate: float = 1e-3
    ft_learning_rate: float = 3e-4
    ft_schedule: str = "cosine"
    ft_warmup_epochs: int = 1
    patience: int = 5
    batch_size: int = 32
    dropout: float = 0.2
    hidden_units: int = 0
    cache_features: bool = False
    augment: bool = True
    seed: int = 42
    val_data: str | None = None
    test_data: str | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    devices: str = "auto"
    from_scratch: bool = False
    bn_momentum: float | None = None
    pushgateway: str | None = None
    resume: bool = False
    verbose: int = 2
    fast_forms: tuple[str, ...] = ("fp32", "int8")   # LiteRT forms exported beside the SavedModel


DEFAULTS = TrainConfig(data="", model_name="", model_base_path="")


def fast_form_list(text: str) -> tuple[str, ...]:
    """`--fast-forms` value: a comma list of FAST_FORMS, or `none`."""
    if text.strip().lower() == "none":
        return ()
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in FAST_FORMS]
    if unknown or not names:
        raise ValueError(f"expected a comma list of {list(FAST_FORMS)} or 'none', got {text!r}")
    return names
