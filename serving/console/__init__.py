"""The web console: GET / and its two static files, plain HTML, CSS and JavaScript.

Why no framework and no build step: the page must work offline from the server alone, with
nothing to compile or download, and stay small enough to read in one sitting. It only calls the
public REST API (status, :classify_image, :feedback, /metrics), so it can do nothing a curl user
cannot. It holds no secret: the retrain controls appear only after the user types the admin
token, which lives in a JavaScript variable (never in storage or a cookie) until the tab closes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, send_from_directory

HERE = Path(__file__).resolve().parent
# Only these files are served (an allow-list, so nothing else in the package can be fetched).
ASSETS = {"app.js": "text/javascript", "console.css": "text/css"}


def asset_names() -> list[str]:
    """The files under /console/ (also the enum of the OpenAPI document's {asset})."""
    return sorted(ASSETS)


def blueprint(core: Any = None, options: Any = None) -> Blueprint:
    """The extension hook of serving.config: the page and its assets."""
    bp = Blueprint("console", __name__)

    @bp.get("/")
    def page() -> Response:
        return _file("index.html", "text/html")

    @bp.get("/console/<asset>")
    def asset(asset: str) -> Response:
        if asset not in ASSETS:
            return Response("no such file\n", status=404, mimetype="text/plain")
        return _file(asset, ASSETS[asset])

    return bp


def _file(name: str, mimetype: str) -> Response:
    response = send_from_directory(HERE, name, mimetype=mimetype, max_age=0)
    # The page runs only its own files: no inline script, no other origin (defence in depth).
    response.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' blob: data:; "
                                                   "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
