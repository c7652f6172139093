"""The HTTP floor: our REST stack (Flask on one gunicorn gthread worker) with no model behind it.

It answers TF Serving's `:predict` as a server must before any model runs: read the body, parse
its JSON, decode the `{"b64": ...}` images, then answer a constant of the same shape as ours.
The CPU it spends per request, measured in the same run as everything else, is what a
Flask-on-gunicorn server pays on this machine before it does any work of its own; with the
model's CPU per image (the limit) and the load generator's, it bounds the share of the limit
that any server built this way can reach on these cores (bench/report.py, "ceiling").

Started by bench/systems.py with our server's worker settings (serving/server.py):
    .venv/bin/gunicorn --worker-class gthread --threads 32 ... 'bench.floor_server:create_app()'
"""
from __future__ import annotations

import json

import pybase64
from flask import Flask, jsonify, request

CLASSES = 10


def create_app() -> Flask:
    """The no-model `:predict` app (and `/healthz` for readiness)."""
    app = Flask(__name__)
    answer = {"probabilities": [1.0 / CLASSES] * CLASSES, "classes": 0, "labels": "class-0"}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/v1/models/<path:path>")
    def predict(path: str):
        instances = json.loads(request.get_data())["instances"]
        images = [pybase64.b64decode(row["b64"], validate=True) for row in instances]
        return jsonify(predictions=[answer for _ in images])

    return app
