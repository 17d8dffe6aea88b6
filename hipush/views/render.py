"""The answer envelopes (legacy `ok/result`; REST `status` later), JSONP and CORS."""
import json

from flask import Response, after_this_request, g, request

from ..services.apps import origin_allowed


def to_json(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def answer(body_json: str, status: int = 200, headers=None) -> Response:
    """JSON, or JSONP when the view accepted a `callback` (g.jsonp)."""
    callback = g.get("jsonp")
    if callback:
        response = Response(f"/**/{callback}({body_json});", status, mimetype="application/javascript")
    else:
        response = Response(body_json, status, mimetype="application/json")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.update(headers or {})
    return response


def ok(result) -> Response:
    return answer(to_json({"ok": True, "result": result}))


def legacy_error(error) -> Response:
    return answer(to_json({"error": error.code, "reason": error.reason}), error.http_status, error.headers)


def allow_origin(response: Response, app: dict) -> Response:
    """CORS for an origin the app allows (default: any)."""
    origin = request.headers.get("Origin")
    if origin and origin_allowed(app, origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


def allow_any_origin(response: Response) -> Response:
    """CORS for calls that reveal nothing of any app (which node to poll)."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def after_answer(work) -> None:
    """Runs work() once this call's answer has been written (the server closes the answer's body then), in
    the request's greenlet: a stopping worker waits for it as for any request in progress."""
    @after_this_request
    def run_on_close(response: Response) -> Response:
        response.call_on_close(work)
        return response
