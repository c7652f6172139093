"""A real tiny training run end to end: export contract, metadata, versions, CLI train/predict."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
import tensorflow as tf

import model_format.publish
from model_format.contract import read_labels, read_metadata
from model_format.imaging import decode_and_resize
from tests.helpers import image_bytes, tiny_model
from tests.trainer.conftest import tiny_args, tinted_image
from trainer.backbones import BACKBONES, BackbonePreprocess, get_backbone
from trainer.cli import main
from trainer.errors import TrainerError
from trainer.export import export_version


def test_exported_model_matches_in_memory_model_on_jpeg_bytes(tiny_run):
    loaded = tf.saved_model.load(str(tiny_run.version_dir))
    encoded = [tinted_image(5000 + i, i % 3, "JPEG") for i in range(3)] + [image_bytes(1, "JPEG")]
    served = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded))
    pixels = tf.stack([decode_and_resize(tf.constant(b), tiny_run.image_size) for b in encoded])
    in_memory = tiny_run.classifier.model(pixels, training=False).numpy()
    np.testing.assert_allclose(served["probabilities"].numpy(), in_memory, atol=1e-4)
    assert served["labels"].numpy().tolist() == [
        tiny_run.class_names[i].encode() for i in np.argmax(in_memory, axis=1)]
    by_pixels = loaded.signatures["predict_pixels"](images=pixels)
    np.testing.assert_allclose(by_pixels["probabilities"].numpy(), in_memory, atol=1e-4)


def test_metadata_holds_both_stages_and_the_run(tiny_run):
    meta = read_metadata(tiny_run.version_dir)
    assert tiny_run.version_dir.name == "1"
    assert read_labels(tiny_run.version_dir) == ["blue", "green", "red"]
    assert set(meta["evaluation"]) == {"stage1", "stage2"}
    assert meta["exported_stage"] in ("stage1", "stage2") and meta["export_reason"]
    for stage in meta["evaluation"].values():
        assert 0.0 <= stage["accuracy"] <= 1.0
        assert set(stage["per_class"]["red"]) == {"precision", "recall", "f1", "support"}
        assert np.sum(stage["confusion_matrix"]) == meta["dataset"]["test"]
    assert meta["dataset"]["skipped_files"] == 2
    assert re.fullmatch(r"[0-9a-f]{64}", meta["dataset_fingerprint"])
    assert meta["backbone"] == "mobilenet_v2" and meta["training_args"]["epochs"] == 1
    assert meta["created_at"].endswith("+00:00")
    assert (tiny_run.version_dir / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    leftovers = [p.name for p in tiny_run.version_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no staging dir, no stage checkpoint after a finished run


def test_fast_forms_are_exported_and_measured_on_the_test_split(tiny_run):
    """model.tflite gives the SavedModel's probabilities; both forms carry test figures."""
    from model_format.litert import LiteRTModel

    meta = read_metadata(tiny_run.version_dir)
    assert set(meta["fast_forms"]) == {"fp32", "int8"}
    for precision, figures in meta["fast_forms"].items():
        assert 0.0 <= figures["accuracy"] <= 1.0 and figures["bytes"] > 0, precision
    assert meta["fast_forms"]["fp32"]["accuracy"] == meta["evaluation"]["stage2"]["accuracy"]
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    reference = tf.saved_model.load(str(tiny_run.version_dir)).signatures["predict_pixels"](images=pixels)
    fp32 = LiteRTModel((tiny_run.version_dir / "model.tflite").read_bytes())(pixels)
    np.testing.assert_allclose(fp32, reference["probabilities"].numpy(), atol=1e-5)
    int8 = LiteRTModel((tiny_run.version_dir / "model_int8.tflite").read_bytes())
    assert int8(pixels).shape == fp32.shape


def test_train_twice_gives_versions_1_and_2_and_staging_is_never_numeric(tiny_data, tmp_path,
                                                                         monkeypatch, capsys):
    """First run through run() with --cache-features (checks the assembled model), second through
    the CLI; every rename goes from a dot-named staging directory to the next number."""
    from trainer.config import TrainConfig
    from trainer.train import run

    renames = []
    real_rename = os.rename

    def recording_rename(src, dst):
        renames.append((os.path.basename(src), os.path.basename(dst)))
        return real_rename(src, dst)

    monkeypatch.setattr(model_format.publish.os, "rename", recording_rename)
    base = tmp_path / "models"
    first = run(TrainConfig(data=str(tiny_data), model_name="tiny", model_base_path=str(base),
                            weights="none", image_size=32, epochs=3, ft_epochs=0, batch_size=8,
                            cache_features=True, verbose=0))
    model = first.classifier.model
    assert first.classifier.head in model.layers  # the head trained on cached features is the model's
    assert isinstance(model.get_layer("preprocess"), BackbonePreprocess)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 3)
    assert first.stages["stage1"].epochs == 3
    assert set(read_metadata(base / "1")["evaluation"]) == {"stage1"}  # --ft-epochs 0 skips stage 2

    assert main(tiny_args(tiny_data, base, "--ft-epochs", "0", "--cache-features")) == 0
    assert str(base / "2") in capsys.readouterr().out.splitlines()
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]
    assert [dst for _, dst in renames] == ["1", "2"]
    for src, _ in renames:
        assert src.startswith(".staging-") and not src.isdigit()


def test_failed_export_leaves_neither_version_nor_staging(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(model_format.publish, "fsync_tree", broken)
    with pytest.raises(OSError, match="disk full"):
        export_version(tiny_model(1), tmp_path, model_name="m", labels=["a", "b", "c"],
                       image_size=32, metadata={})
    assert list(tmp_path.iterdir()) == []


def test_predict_prints_top_k_from_the_newest_version(tiny_run, tiny_data, capsys):
    base = tiny_run.version_dir.parent
    assert main(["predict", "--model-base-path", str(base), "--images", str(tiny_data / "red"),
                 "--top-k", "2", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"model {tiny_run.version_dir} (version 1)"
    assert lines[1] == "garbage.png: unreadable, skipped"  # sorted first; the others still answer
    assert len(lines) == 4
    for line in lines[2:]:
        name, ranked = line.split(": ", 1)
        labels = [part.split()[0] for part in ranked.split(", ")]
        assert len(labels) == 2 and set(labels) <= {"blue", "green", "red"}


def test_predict_errors_are_one_line(tmp_path, capsys):
    assert main(["predict", "--model-base-path", str(tmp_path), "--images", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no model versions under {tmp_path}"


def test_missing_weights_file_and_unknown_backbone_are_user_errors(tiny_data, tmp_path, capsys):
    assert main(tiny_args(tiny_data, tmp_path, "--weights", str(tmp_path / "nope.h5"))) == 2
    assert main(tiny_args(tiny_data, tmp_path, "--backbone", "alexnet")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"error: --weights file not found: {tmp_path / 'nope.h5'} (give a weights file, 'imagenet' or 'none')"
    assert err[1].startswith("error: unknown backbone 'alexnet'; choose from mobilenet_v2, resnet50")


def test_imagenet_download_failure_names_weights_path(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(TrainerError, match=r"offline, pass a local file with --weights PATH"):
        get_backbone("mobilenet_v2").build(96, "imagenet")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_and_preprocesses_0_to_255_pixels(name):
    backbone = BACKBONES[name]
    size = backbone.min_size
    base = backbone.build(size, "none")
    assert base.output_shape[-1] > 0
    pixels = np.full((1, size, size, 3), 255.0, np.float32)
    pixels[..., 0] = 0.0
    out = np.asarray(backbone.preprocess()(pixels))
    expected = {"tf": [-1.0, 1.0, 1.0], "caffe": [255 - 103.939, 255 - 116.779, -123.68],
                "none": [0.0, 255.0, 255.0]}[backbone.preprocess_mode]
    np.testing.assert_allclose(out[0, 0, 0], expected, atol=1e-4)
    clone = BackbonePreprocess.from_config(backbone.preprocess().get_config())
    assert clone.mode == backbone.preprocess_mode


def test_pushgateway_receives_the_run_figures(tiny_run):
    import http.server
    import threading

    from trainer.config import TrainConfig
    from trainer.train import push_figures

    received = []

    class Gateway(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body.decode()))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = TrainConfig(data="", model_name="tiny", model_base_path="",
                             pushgateway=f"http://127.0.0.1:{server.server_port}")
        push_figures(config, tiny_run)
    finally:
        server.shutdown()
    [(path, body)] = received
    assert path == "/metrics/job/trainer/model/tiny"
    assert "trainer_last_version 1.0" in body
    stage1 = tiny_run.evaluation["stage1"]["accuracy"]
    assert f'trainer_stage_accuracy{{stage="stage1"}} {stage1!r}' in body or \
        f'trainer_stage_accuracy{{stage="stage1"}} {float(stage1)}' in body
    assert 'trainer_stage_duration_seconds{stage="stage2"}' in body


def test_warmup_records_hold_images_at_the_model_size(tiny_run):
    """Issue 16 item 1: the trainer writes warm-up images resized to the input size (32 px here),
    never the original training files."""
    import io

    from PIL import Image

    from serving.warmup import read_warmup_records, recorded_images

    images = recorded_images(read_warmup_records(tiny_run.version_dir, 25_000_000))
    assert len(images) == 3
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.size) == ("PNG", (32, 32))
