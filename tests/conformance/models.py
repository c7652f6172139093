"""TF Serving's test models, rebuilt at test time (no binaries in the repository).

TF Serving's own tests run against `half_plus_two` (y = 0.5 x + 2) and its friends, exported by
`tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two.py`. This module
writes equivalent SavedModels with the TensorFlow installed here:

- `write_half_plus_two_tf1`: a TF1 graph exported with SavedModelBuilder, as TF Serving's script
  does: a serialized-tf.Example placeholder parsed into `x` (float [1], required) and `x2`
  (float [1], default 0), outputs y = a*x + b, y2 = a*x + c, y3 = a2*x2 + c2 with variables a=0.5,
  b=2, c=3; signatures serving_default (predict x -> y), regress_x_to_y, regress_x_to_y2,
  regress_x2_to_y3, classify_x_to_y and classify_x2_to_y3; an asset file and a main op, like the
  original. This is the variant in TensorFlow's cc/saved_model/testdata/half_plus_two that
  http_rest_api_handler_test.cc serves: its metadata JSON
  (saved_model_half_plus_two_2_versions_metadata.json) shows the tf_example input of unknown
  rank and the classify_x2_to_y3 signature.
- `write_half_plus_three_tf1`: the same with b=3 (TF Serving's saved_model_half_plus_three).
- `write_half_plus_two_tf2`: a tf.Module saved with tf.saved_model.save, serving_default on a
  float [None, 1] input `x` and an output `y` (TF Serving's saved_model_half_plus_two_tf2_cpu).
- `write_scalar_model`: a TF2 model whose output has no batch dimension (a scalar), the case the
  issue saw answered INTERNAL.
"""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf


def _regression(inputs: tf.Tensor, outputs: tf.Tensor) -> object:
    v1 = tf.compat.v1
    return v1.saved_model.signature_def_utils.build_signature_def(
        {"inputs": v1.saved_model.utils.build_tensor_info(inputs)},
        {"outputs": v1.saved_model.utils.build_tensor_info(outputs)}, "tensorflow/serving/regress")


def _classification(inputs: tf.Tensor, scores: tf.Tensor) -> object:
    v1 = tf.compat.v1
    return v1.saved_model.signature_def_utils.build_signature_def(
        {"inputs": v1.saved_model.utils.build_tensor_info(inputs)},
        {"scores": v1.saved_model.utils.build_tensor_info(scores)}, "tensorflow/serving/classify")


def write_half_plus_two_tf1(export_dir: Path, intercept: float = 2.0) -> Path:
    """A TF1-style half_plus_two SavedModel at `export_dir` (a version directory)."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(intercept, name="b")
        c = v1.Variable(3.0, name="c")
        serialized = v1.placeholder(tf.string, name="tf_example")      # unknown rank, as in the original
        # parsed from a [-1] view, so x and x2 come out [-1, 1] as in the original's metadata
        parsed = v1.parse_example(tf.reshape(serialized, [-1]), {
            "x": v1.FixedLenFeature([1], tf.float32),
            "x2": v1.FixedLenFeature([1], tf.float32, default_value=[0.0])})
        x = tf.identity(parsed["x"], name="x")
        y = tf.identity(a * x + b, name="y")
        y2 = tf.identity(a * x + c, name="y2")
        x2 = tf.identity(parsed["x2"], name="x2")
        a2 = v1.Variable(0.5, name="a2")
        c2 = v1.Variable(3.0, name="c2")
        y3 = tf.identity(a2 * x2 + c2, name="y3")
        asset = export_dir.parent / f".{export_dir.name}-assets" / "foo.txt"
        asset.parent.mkdir(parents=True, exist_ok=True)
        asset.write_text("asset-file-contents")
        asset_path = tf.constant(str(asset))
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset_path)
        filename = v1.Variable("foo.txt", name="filename_tensor", trainable=False, collections=[])
        assign_filename = filename.assign("foo.txt")
        predict = v1.saved_model.signature_def_utils.build_signature_def(
            {"x": v1.saved_model.utils.build_tensor_info(x)},
            {"y": v1.saved_model.utils.build_tensor_info(y)}, "tensorflow/serving/predict")
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(export_dir))
        builder.add_meta_graph_and_variables(
            session, ["serve"],
            signature_def_map={"regress_x_to_y": _regression(serialized, y),
                               "regress_x_to_y2": _regression(serialized, y2),
                               "regress_x2_to_y3": _regression(x2, y3),
                               "classify_x_to_y": _classification(serialized, y),
                               "classify_x2_to_y3": _classification(x2, y3),
                               "serving_default": predict},
            assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
            main_op=tf.group(assign_filename))
        builder.save()
    return export_dir


def write_half_plus_three_tf1(export_dir: Path) -> Path:
    return write_half_plus_two_tf1(export_dir, intercept=3.0)


class _HalfPlusTwo(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = tf.Variable(0.5)
        self.b = tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": self.a * x + self.b}


def write_half_plus_two_tf2(export_dir: Path) -> Path:
    module = _HalfPlusTwo()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})
    return export_dir


class _Scalar(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"total": tf.reduce_sum(x), "doubled": 2.0 * x}


def write_scalar_model(export_dir: Path) -> Path:
    module = _Scalar()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})
    return export_dir
