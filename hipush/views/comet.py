"""The comet long-poll endpoint (SPEC §5)."""
from flask import Blueprint, g

from .. import limits as L
from ..errors import ApiError, auth_failed
from ..services import services
from .render import allow_origin, answer
from .web import check_jsonp, client_params

bp = Blueprint("comet", __name__)


@bp.route("/comet/poll", methods=["GET"])
def poll():
    params = client_params()
    client_id, token = params.get("client_id"), params.get("token")
    if not client_id or not token:
        raise auth_failed("client_id and token are required")
    clients = services().clients
    epoch = clients.token_epoch(client_id, token)
    if g.jsonp:  # only a JSONP poll needs its app first: refused, it must not answer or ack anything
        check_jsonp(services().apps.by_id(clients.authenticate(client_id, token)))
    config = services().config
    try:
        ack = params.get("ack") or None
        if ack is not None:
            L.parse_id("ack", ack)
        timeout = L.parse_int("timeout", params.get("timeout"), 0, config.poll_timeout_max,
                              default=config.poll_timeout_default)
    except ApiError:
        clients.authenticate(client_id, token)  # a revoked token is refused before its bad parameters
        raise
    result = services().comet.poll(client_id, epoch, ack, timeout)
    missed = f',"missed":{result["missed"]}' if result["missed"] else ""
    body = '{"ok":true,"result":{"messages":[' + ",".join(result["messages"]) + "]" + missed + "}}"
    return allow_origin(answer(body), services().apps.by_id(result["app_id"]))
