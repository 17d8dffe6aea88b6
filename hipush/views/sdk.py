"""The browser SDK (/sdk/hipush.js: the UMD file of the npm package hipush-js, clients/js) and its demo page
(/demo, from hipush/static)."""
from pathlib import Path

from flask import Blueprint, send_from_directory

bp = Blueprint("sdk", __name__)
ROOT = Path(__file__).resolve().parent.parent.parent
STATIC = ROOT / "hipush" / "static"
JS_KIT = ROOT / "clients" / "js"


def _static(directory: Path, name: str, mimetype: str):
    response = send_from_directory(directory, name, mimetype=mimetype, max_age=300)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/sdk/hipush.js", methods=["GET"])
def sdk():
    response = _static(JS_KIT, "hipush.js", "application/javascript")
    response.headers["Access-Control-Allow-Origin"] = "*"  # pages of any origin may load (or fetch) it
    return response


@bp.route("/demo", methods=["GET"])
def demo():
    return _static(STATIC, "demo.html", "text/html")
