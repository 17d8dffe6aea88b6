"""Per-call guards shared by the views: rate limits and idempotent publishing."""
from flask import Response, request

from .. import limits as L
from ..services import services


def limit_app(app: dict, kind: str) -> None:
    """kind: "publish" or "subscribe"; the app's own rate, else the server default."""
    rate = app.get(f"{kind}_rate")
    if rate is None:
        rate = getattr(services().config, f"{kind}_rate")
    services().rate_limiter.hit(f"app:{app['id']}:{kind}", rate)


def limit_client_ip() -> None:
    services().rate_limiter.hit(f"ip:{request.remote_addr}", services().config.client_ip_rate, window=10)


def idempotent(app: dict, params, call) -> Response:
    """Runs call() once per idempotency_key (when given); a repeat gets the first answer again.
    Keys are kept per API (the call's blueprint: legacy admin or REST), whose answers differ."""
    key = params.get("idempotency_key")
    if key is None:
        return call()
    L.check_length("idempotency_key", key, L.NAME_CHARS)
    L.require("idempotency_key", key)
    store, api = services().idempotency, request.blueprint
    first = store.begin(api, app["id"], key)
    if first is not None:
        status, body = first
        return Response(body, status, mimetype="application/json", headers={"X-Content-Type-Options": "nosniff"})
    try:
        response = call()
    except Exception:
        store.abandon(api, app["id"], key)
        raise
    store.finish(api, app["id"], key, response.status_code, response.get_data(as_text=True))
    return response
