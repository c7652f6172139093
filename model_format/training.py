"""Values of `python -m trainer train` flags that the server checks too, defined once.

A retrain request (serving.jobs.options) becomes trainer flags, and a version's metadata.json
records them as `training_args`; the server must accept exactly the choices the trainer does.
"""
from __future__ import annotations

FT_SCHEDULES = ("constant", "cosine")   # stage 2 learning rate schedules (trainer.stages.fine_tuning_rate)
