"""The landing page (/) that links the demo, the API reference and the console, and the favicon."""
from pathlib import Path

from flask import Blueprint, Response, render_template

bp = Blueprint("landing", __name__)
FAVICON = (Path(__file__).resolve().parent.parent / "static" / "favicon.svg").read_bytes()


@bp.route("/")
def landing():
    return render_template("landing.html")


@bp.route("/favicon.ico")
def favicon():
    """An SVG: every browser that shows favicons takes one, whatever the path's extension."""
    return Response(FAVICON, mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})
