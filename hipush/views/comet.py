"""The comet endpoints (SPEC §5): the long poll, the SSE stream and its acknowledgements."""
from flask import Blueprint, Response, g

from .. import limits as L
from ..errors import ApiError, auth_failed
from ..services import services
from .params import request_params
from .render import allow_origin, answer, ok
from .web import check_jsonp, client_params

bp = Blueprint("comet", __name__)


def _client(params) -> tuple:
    """(client id, token epoch) of a client call; 401 / 1028 without a valid token."""
    client_id, token = params.get("client_id"), params.get("token")
    if not client_id or not token:
        raise auth_failed("client_id and token are required")
    return client_id, services().clients.token_epoch(client_id, token)


@bp.route("/comet/poll", methods=["GET"])
def poll():
    params = client_params()
    client_id, epoch = _client(params)
    clients = services().clients
    if g.jsonp:  # only a JSONP poll needs its app first: refused, it must not answer or ack anything
        check_jsonp(services().apps.by_id(clients.authenticate(client_id, params.get("token"))))
    config = services().config
    try:
        ack = params.get("ack") or None
        if ack is not None:
            L.parse_id("ack", ack)
        timeout = L.parse_int("timeout", params.get("timeout"), 0, config.poll_timeout_max,
                              default=config.poll_timeout_default)
    except ApiError:
        clients.authenticate(client_id, params.get("token"))  # a revoked token is refused before its bad parameters
        raise
    result = services().comet.poll(client_id, epoch, ack, timeout)
    missed = f',"missed":{result["missed"]}' if result["missed"] else ""
    body = '{"ok":true,"result":{"messages":[' + ",".join(result["messages"]) + "]" + missed + "}}"
    return allow_origin(answer(body), services().apps.by_id(result["app_id"]))


@bp.route("/comet/stream", methods=["GET"])
def stream():
    """text/event-stream: each message an event (id: its delivery id, data: the message as a poll shows it),
    `missed` events, comment lines while idle; it ends after HIPUSH_STREAM_MAX_AGE seconds."""
    client_id, epoch = _client(request_params())
    config = services().config
    app_id, chunks = services().comet.open_stream(client_id, epoch, config.stream_heartbeat, config.stream_max_age)
    try:
        response = Response(chunks, mimetype="text/event-stream",
                            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return allow_origin(response, services().apps.by_id(app_id))
    except BaseException:
        chunks.close()
        raise


@bp.route("/comet/ack", methods=["POST"])
def ack():
    """Acknowledges a stream's messages up to and including `ack` (cumulative, as a poll's ack)."""
    params = request_params()
    client_id, epoch = _client(params)
    ack_id = str(L.parse_id("ack", params.get("ack")))
    return allow_origin(ok("OK"), services().apps.by_id(services().comet.ack(client_id, epoch, ack_id)))
