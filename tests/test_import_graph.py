"""The package layering: model_format is the contract both sides import; serving never imports
the trainer (the serving image need not carry it), and model_format imports neither side."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {"serving": {"trainer"}, "model_format": {"serving", "trainer"}}


def imported_packages(path: Path, at_import: bool = False) -> set[str]:
    """Top-level packages a module imports, inside functions too unless `at_import`."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in tree.body if at_import else ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    modules = [p for p in (REPO / package).rglob("*.py") if "protos" not in p.parts]
    assert modules
    wrong = {str(p.relative_to(REPO)): sorted(imported_packages(p) & FORBIDDEN[package]) for p in modules}
    assert {path: names for path, names in wrong.items() if names} == {}


def test_model_format_needs_no_tensorflow_at_import_but_for_the_decoding_ops() -> None:
    importing = [p.name for p in (REPO / "model_format").glob("*.py") if "tensorflow" in imported_packages(p, True)]
    assert importing == ["imaging.py"]
