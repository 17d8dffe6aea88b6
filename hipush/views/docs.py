"""The API reference: /openapi.json (the document, hipush/openapi.py), and /docs, Swagger UI over it, where
each call can be tried against this server. Swagger UI's files come from the flask-swagger-ui package (PyPI)
and are served from here: the intranets hipush runs in have no CDN."""
import json
from importlib.resources import files

from flask import Blueprint, Response, send_from_directory

from ..openapi import document
from .sdk import STATIC

bp = Blueprint("docs", __name__)
_DOCUMENT = json.dumps(document(), ensure_ascii=False)  # keys in the tables' order, which /docs keeps
SWAGGER_UI = files("flask_swagger_ui") / "dist"


def _file(directory, name: str, mimetype=None):
    response = send_from_directory(directory, name, mimetype=mimetype, max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/openapi.json", methods=["GET"])
def openapi():
    return Response(_DOCUMENT, mimetype="application/json")


@bp.route("/docs", methods=["GET"])
def docs():
    return _file(STATIC, "docs.html", "text/html")


@bp.route("/docs/assets/<name>", methods=["GET"])
def swagger_ui(name):
    return _file(SWAGGER_UI, name)
