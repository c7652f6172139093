"""The peer: KServe's Python model server serving the same SavedModel over its V1 REST protocol.

Runs inside its own venv (bench/work/kserve-venv: kserve + tensorflow, protobuf < 7), never in the
project's, so it is a plain script that imports nothing from this repository. The model class is
written the way KServe's custom-model documentation shows (a `kserve.Model` with `load` and a
plain `predict`), on KServe's defaults (one uvicorn worker, no batcher: KServe's batching is a
separate Go sidecar in Kubernetes). Requests are TF Serving's `{"instances": [{"b64": ...}]}`,
the same bodies our `:predict` row sends.

    bench/work/kserve-venv/bin/python bench/peer_kserve.py --model_name bench \
        --model_dir bench/work/models/mobilenet_v2_160/1 --http_port 8080 --enable_grpc false
"""
from __future__ import annotations

import argparse
import base64
from typing import Any

import kserve
import tensorflow as tf
from kserve import model_server


class SavedModelClassifier(kserve.Model):
    """One TF SavedModel's `serving_default` signature behind KServe's V1 predict."""

    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self.signature = None

    def load(self) -> bool:
        self._loaded = tf.saved_model.load(self.model_dir)
        self.signature = self._loaded.signatures["serving_default"]
        self.ready = True
        return self.ready

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        images = [base64.b64decode(instance["b64"]) for instance in payload["instances"]]
        outputs = self.signature(image_bytes=tf.constant(images, dtype=tf.string))
        return {"predictions": [{"probabilities": p, "classes": int(c), "labels": label.decode()}
                                for p, c, label in zip(outputs["probabilities"].numpy().tolist(),
                                                       outputs["classes"].numpy(),
                                                       outputs["labels"].numpy())]}


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    model = SavedModelClassifier(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
