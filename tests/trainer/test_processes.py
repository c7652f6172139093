"""Trainer runs that need their own process: a CPU split into two logical devices for
MirroredStrategy (must be set before TensorFlow initialises), and SIGTERM mid-training + --resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.conftest import REPO
from tests.trainer.conftest import tiny_args
from model_format.contract import read_metadata

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def test_mirrored_strategy_trains_on_a_cpu_split_in_two(tiny_data, tmp_path):
    base = tmp_path / "models"
    script = textwrap.dedent(f"""
        import sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
        from trainer.cli import main
        sys.exit(main({tiny_args(tiny_data, base, "--devices", "mirrored")!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, env=ENV, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = read_metadata(base / "1")
    assert meta["devices"] == {"strategy": "MirroredStrategy", "replicas": 2, "dtype_policy": "float32"}
    assert set(meta["evaluation"]) == {"stage1", "stage2"}
    assert meta["stages"]["stage2"]["epochs"] == 1


def test_sigterm_leaves_no_version_and_resume_continues_from_stage1(tiny_data, tmp_path):
    base = tmp_path / "models"
    args = tiny_args(tiny_data, base, "--ft-epochs", "500", "--patience", "500")
    args.remove("--quiet")
    proc = subprocess.Popen([sys.executable, "-m", "trainer", *args], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 180
    for line in proc.stderr:  # stage 2 is announced on the log (stderr); wait for it
        lines.append(line)
        if "stage 2:" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, "".join(lines) + rest
    assert "terminated: training stopped, no version exported" in rest
    assert "Traceback" not in rest
    assert [p.name for p in base.iterdir()] == [".checkpoints"]  # no version, no staging dir

    resumed = subprocess.run([sys.executable, "-m", "trainer",
                              *tiny_args(tiny_data, base, "--resume")],
                             cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed: stage 1 weights from" in resumed.stderr
    assert sorted(p.name for p in base.iterdir()) == ["1"]
    assert set(read_metadata(base / "1")["evaluation"]) == {"stage1", "stage2"}


def test_ctrl_c_prints_one_line_with_the_resume_hint(tiny_data, tmp_path):
    base = tmp_path / "models"
    args = tiny_args(tiny_data, base, "--ft-epochs", "500", "--patience", "500")
    args.remove("--quiet")
    proc = subprocess.Popen([sys.executable, "-m", "trainer", *args], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    for line in proc.stderr:  # stage 1's checkpoint is written before stage 2 is announced
        if "stage 2:" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest[-3000:]
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest[-3000:]
    assert rest.strip().splitlines()[-1] == ("interrupted: no version exported; stage 1 is saved: run the "
                                            "same command with --resume to continue from it")
    assert [p.name for p in base.iterdir()] == [".checkpoints"]


def test_ctrl_c_before_any_checkpoint_has_no_resume_hint(tiny_data, tmp_path, monkeypatch, capsys):
    import trainer.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.cli, "_train", interrupted)
    assert trainer.cli.main(tiny_args(tiny_data, tmp_path / "m")) == 130
    assert capsys.readouterr().err == "interrupted: no version exported\n"
