"""The API description: /openapi.json, and /docs, a page listing every call."""
import html

from flask import Blueprint, Response, jsonify

from ..openapi import CALLS, document

bp = Blueprint("docs", __name__)
_DOCUMENT = document()

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>hipush API</title><style>
body{{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4em;text-align:left;
vertical-align:top}}code{{background:#f4f4f4;padding:0 .2em}}.req{{font-weight:600}}
</style></head><body><h1>hipush API</h1>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1). Required parameters in bold.
Signing and the long-poll protocol are explained in the README.</p>
<table><tr><th>call</th><th>methods</th><th>what it does</th><th>parameters</th></tr>{rows}</table></body></html>"""


@bp.route("/openapi.json")
def openapi():
    return jsonify(_DOCUMENT)


@bp.route("/docs")
def docs():
    rows = []
    for path, (summary, methods, params, required, _) in CALLS.items():
        names = ", ".join(f'<code class="{"req" if n in required else ""}">{html.escape(n)}</code>' for n in params)
        rows.append(f"<tr><td><code>{path}</code></td><td>{methods}</td><td>{html.escape(summary)}</td>"
                    f"<td>{names}</td></tr>")
    return Response(_PAGE.format(rows="".join(rows)), mimetype="text/html")
