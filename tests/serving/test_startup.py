"""Issue 16 item 2: configuration errors are refused before any model loads: exit 2, one line on
stderr naming the problem, no gunicorn "Worker failed to boot", no SIGTERM that never happened."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO


def _serve(base: Path, *flags: str, rest_port: int | str = "any", grpc_port: int = 0) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "serving", "--model-name", "tiny", "--model-base-path", str(base),
               "--host", "127.0.0.1", "--rest-port", str(rest_port), "--grpc-port", str(grpc_port), *flags]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVING_")}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def _assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert all(word in lines[0] for word in words), lines[0]
    assert "SIGTERM" not in result.stderr and "Worker failed" not in result.stderr


def test_admin_token_without_data_root(tiny_base: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret")
    started = time.monotonic()
    result = _serve(tiny_base, "--admin-token-file", str(token), "--jobs-dir", str(tmp_path))
    _assert_refused(result, "--admin-token-file", "--data-root")
    assert time.monotonic() - started < 20     # no model was loaded first


def test_local_backend_without_jobs_dir(tiny_base: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret")
    result = _serve(tiny_base, "--admin-token-file", str(token), "--data-root", str(tmp_path),
                    "--retrain-backend", "local")
    _assert_refused(result, "--retrain-backend local", "--jobs-dir")


@pytest.mark.parametrize("which", ["grpc", "rest"])
def test_port_in_use(tiny_base: Path, which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if which == "grpc":
            result = _serve(tiny_base, grpc_port=port)
        else:
            result = _serve(tiny_base, rest_port=port)
    _assert_refused(result, f"--{which}-port {port}", "already in use")


def test_same_port_for_rest_and_grpc(tiny_base: Path) -> None:
    port = 8501   # refused before anything is bound: the number need not be free
    _assert_refused(_serve(tiny_base, rest_port=port, grpc_port=port), "--grpc-port", "--rest-port")


def test_rest_port_0_is_refused_rest_cannot_be_disabled(tiny_base: Path) -> None:
    _assert_refused(_serve(tiny_base, rest_port=0), "--rest-port 0", "any")


def test_port_file_in_a_missing_directory(tiny_base: Path, tmp_path: Path) -> None:
    result = _serve(tiny_base, "--port-file", str(tmp_path / "nowhere" / "ports.json"))
    _assert_refused(result, "--port-file", "not a directory")
