"""Benchmark datasets cut from data bundled in packages: disjoint folder-per-class splits."""
from __future__ import annotations

import pytest

from scripts.materials import MaterialsError, build_dataset


@pytest.mark.parametrize("name, classes", [("digits", 10), ("textures", 3), ("faces", 2)])
def test_bundled_dataset_becomes_disjoint_class_folders(tmp_path, name, classes):
    folders = build_dataset(name, tmp_path / name, (3, 2, 2))
    names = {role: sorted(p.name for p in folder.rglob("*.png")) for role, folder in folders.items()}
    assert [len(names[r]) for r in ("train", "val", "test")] == [3 * classes, 2 * classes, 2 * classes]
    assert not set(names["train"]) & set(names["val"]) and not set(names["val"]) & set(names["test"])
    assert len([d for d in folders["train"].iterdir() if d.is_dir()]) == classes


def test_unknown_dataset_is_a_one_line_error(tmp_path):
    with pytest.raises(MaterialsError, match="unknown dataset 'cifar'"):
        build_dataset("cifar", tmp_path)
