"""The browser SDK (/sdk/hipush.js) and its demo page (/demo), static files from hipush/static."""
from pathlib import Path

from flask import Blueprint, send_from_directory

bp = Blueprint("sdk", __name__)
STATIC = Path(__file__).resolve().parent.parent / "static"


def _static(name: str, mimetype: str):
    response = send_from_directory(STATIC, name, mimetype=mimetype, max_age=300)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/sdk/hipush.js", methods=["GET"])
def sdk():
    response = _static("hipush.js", "application/javascript")
    response.headers["Access-Control-Allow-Origin"] = "*"  # pages of any origin may load (or fetch) it
    return response


@bp.route("/demo", methods=["GET"])
def demo():
    return _static("demo.html", "text/html")
