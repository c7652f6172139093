"""Suite-wide settings: quiet TensorFlow, and the repository root for subprocesses."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYTHONHASHSEED", "0")

REPO = Path(__file__).resolve().parent.parent
MATERIALS = REPO / "materials"
