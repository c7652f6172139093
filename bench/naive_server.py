"""The naive approach from tutorials: Flask on one gunicorn sync worker, one model call per request.

No batcher, no threads: each request decodes its JSON, calls the signature on its one image and
answers, while the next request waits in the socket backlog. It speaks the same TF Serving
`:predict` body as our server's b64 row, so the same load generator drives it.

    NAIVE_MODEL_DIR=bench/work/models/mobilenet_v2_160/1 \
        .venv/bin/gunicorn --workers 1 --bind 127.0.0.1:8600 'bench.naive_server:create_app()'
"""
from __future__ import annotations

import base64
import os

import tensorflow as tf
from flask import Flask, jsonify, request


def create_app(model_dir: str | None = None) -> Flask:
    """A Flask app serving the `serving_default` signature of one SavedModel version directory."""
    loaded = tf.saved_model.load(model_dir or os.environ["NAIVE_MODEL_DIR"])
    signature = loaded.signatures["serving_default"]
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/v1/models/<name>:predict")
    def predict(name: str):
        images = [base64.b64decode(row["b64"]) for row in request.get_json()["instances"]]
        outputs = signature(image_bytes=tf.constant(images, dtype=tf.string))
        return jsonify(predictions=[
            {"probabilities": p, "classes": int(c), "labels": label.decode()}
            for p, c, label in zip(outputs["probabilities"].numpy().tolist(), outputs["classes"].numpy(),
                                   outputs["labels"].numpy())])

    app.config["saved_model"] = loaded  # keep the trackable alive with the app
    return app
