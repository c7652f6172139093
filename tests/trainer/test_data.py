"""Folder discovery, validation of broken files, the stratified split, and one-line CLI errors."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.trainer.conftest import make_dataset, tinted_image
from trainer.data import discover, stratified_split, validate
from trainer.errors import TrainerError


def test_discovery_finds_classes_and_all_four_formats(tiny_data):
    folder = discover(tiny_data)
    assert folder.class_names == ["blue", "green", "red"]
    suffixes = {p.suffix for paths in folder.files.values() for p in paths}
    assert suffixes == {".jpg", ".png", ".gif", ".bmp"}


def test_corrupt_files_are_skipped_and_counted(tiny_data):
    folder = validate(discover(tiny_data))
    assert sorted(p.rsplit("/", 1)[1] for p in folder.skipped) == ["garbage.png", "truncated.jpg"]
    assert len(folder.files["red"]) == 12 and len(folder.files["green"]) == 12


def test_split_is_stratified_disjoint_and_deterministic(tiny_data):
    folder = validate(discover(tiny_data))
    train, val, test = stratified_split(folder, seed=7, val_fraction=0.25, test_fraction=0.25)
    assert len(set(train.paths) | set(val.paths) | set(test.paths)) == 36
    for split in (val, test):
        assert sorted(split.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    again = stratified_split(folder, seed=7, val_fraction=0.25, test_fraction=0.25)
    other = stratified_split(folder, seed=8, val_fraction=0.25, test_fraction=0.25)
    assert again[2].paths == test.paths
    assert other[2].paths != test.paths


@pytest.mark.parametrize("layout, message", [
    ("missing", "data folder not found"),
    ("one-class", "need at least 2 class folders"),
    ("empty-class", "has no images"),
    ("all-corrupt", "has no readable images"),
])
def test_bad_layouts_stop_with_one_line_error(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout != "missing":
        (root / "a").mkdir(parents=True)
        (root / "a" / "x.png").write_bytes(tinted_image(1, 0))
    if layout == "empty-class":
        (root / "b").mkdir()
    if layout == "all-corrupt":
        (root / "b").mkdir()
        (root / "b" / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(TrainerError, match=message):
        validate(discover(root))


def test_cli_error_is_one_line_exit_2_without_traceback(tmp_path):
    make_dataset(tmp_path / "data", per_class=3, corrupt=False)
    (tmp_path / "data" / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "trainer", "train", "--data", str(tmp_path / "data"),
                           "--model-name", "m", "--model-base-path", str(tmp_path / "models")],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: class folder {tmp_path / 'data' / 'empty'} "
                                                "has no images (.jpg .png .gif .bmp)"]
    assert not (tmp_path / "models").exists()


def test_split_without_validation_share_keeps_those_images_for_training(tiny_data):
    """With --val-data given, no image of --data is held back for a validation split."""
    folder = validate(discover(tiny_data))
    train, val, test = stratified_split(folder, seed=1, val_fraction=0.0, test_fraction=0.25)
    assert len(val) == 0 and len(test) == 9 and len(train) == 27


def test_val_and_test_folders_replace_the_split(tiny_data, tmp_path):
    from trainer.config import TrainConfig
    from trainer.train import load_splits

    val, test = make_dataset(tmp_path / "val", 2, corrupt=False), make_dataset(tmp_path / "test", 3, corrupt=False)
    splits = load_splits(TrainConfig(data=str(tiny_data), model_name="m", model_base_path="",
                                     val_data=str(val), test_data=str(test)))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (36, 6, 9)
    assert all(p.startswith(str(test)) for p in splits.test.paths)
    (tmp_path / "test" / "purple").mkdir()  # extra folders there are ignored; missing ones are not
    shutil.rmtree(tmp_path / "test" / "red")
    with pytest.raises(TrainerError, match=r"lacks class folders \['red'\]"):
        load_splits(TrainConfig(data=str(tiny_data), model_name="m", model_base_path="",
                                test_data=str(test)))


def _two_classes(root):
    for channel, name in enumerate(["a", "b"]):
        (root / name).mkdir(parents=True)
        for n in range(3):
            (root / name / f"{n}.png").write_bytes(tinted_image(n, channel))
    return root


def test_dot_files_and_dot_folders_are_not_data(tmp_path):
    root = _two_classes(tmp_path / "data")
    (root / "a" / ".thumbs").mkdir()
    (root / "a" / ".thumbs" / "x.png").write_bytes(tinted_image(9, 0))
    (root / "a" / "._0.png").write_bytes(b"AppleDouble resource fork")
    folder = validate(discover(root))
    assert [p.name for p in folder.files["a"]] == ["0.png", "1.png", "2.png"] and folder.skipped == []


@pytest.mark.parametrize("name, what", [("cat\ndog", r"'\\n'"), ("tab\there", r"'\\t'"), ("cat ", "trailing")])
def test_class_folder_with_control_character_is_refused(tmp_path, name, what):
    root = _two_classes(tmp_path / "data")
    (root / "a").rename(root / name)
    with pytest.raises(TrainerError, match=f"class folder .*{what}"):
        discover(root)


def test_skipped_files_are_named_with_their_reason(tmp_path, caplog):
    from PIL import Image

    root = _two_classes(tmp_path / "data")
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "a" / "photo.webp", "WEBP")
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)   # index 1 is pure red
    palette.save(root / "a" / "paletted.bmp", "BMP")
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    with caplog.at_level("WARNING", logger="trainer.data"):
        folder = validate(discover(root))
    text = caplog.text
    assert len(folder.skipped) == 3
    assert f"skipped {root / 'a' / 'photo.webp'}: WebP is not decodable" in text
    assert f"skipped {root / 'a' / 'paletted.bmp'}: 8-bit palette BMP" in text
    assert f"skipped {root / 'b' / 'broken.jpg'}: unreadable or corrupt" in text
    assert [p.name for p in folder.files["a"]] == ["0.png", "1.png", "2.png"]


def test_predict_skips_dot_files_too(tmp_path):
    from trainer.predict import image_files

    root = _two_classes(tmp_path / "images")
    (root / ".thumbs").mkdir()
    (root / ".thumbs" / "x.png").write_bytes(tinted_image(9, 0))
    (root / "a" / "._0.png").write_bytes(b"AppleDouble resource fork")
    assert [p.relative_to(root).as_posix() for p in image_files(root, None)] == \
        ["a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png", "b/2.png"]
