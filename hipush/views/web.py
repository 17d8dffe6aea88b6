"""Web node calls made by clients, unsigned (SPEC §3): ids, tokens, locations, which node to poll."""
from flask import Blueprint, g, request

from .. import limits as L
from ..errors import auth_failed, bad_param
from ..services import services
from .guards import limit_client_ip
from .params import request_params
from .render import allow_any_origin, allow_origin, ok

bp = Blueprint("web", __name__)
METHODS = ["GET", "POST"]


def client_params():
    """Parameters of a client call, which may answer as JSONP."""
    params = request_params()
    g.jsonp = L.parse_jsonp_callback(params.get("callback"))
    return params


def check_jsonp(app) -> None:
    """Once a client call's app is known: a JSONP call (callback) of an app that turned JSONP off is refused
    before it does anything, and in plain JSON, so that no answer of that app reaches a script tag."""
    if g.get("jsonp") and not app["jsonp"]:
        g.jsonp = None
        raise bad_param("this app has JSONP off: call without callback (with CORS)")


def _location(params, required: bool):
    lat, lng = params.get("lat"), params.get("lng")
    if not required and lat in (None, "") and lng in (None, ""):
        return None, None
    return L.parse_coordinate("lat", lat, L.MAX_LATITUDE), L.parse_coordinate("lng", lng, L.MAX_LONGITUDE)


def terminal_fields(params) -> dict:
    """The terminal attributes among the parameters, checked (genId's, and update_terminal's): {name: value}
    of each one given, None for one given empty."""
    org, address = params.get("org"), params.get("address")
    L.check_length("org", org, L.NAME_CHARS)
    L.check_length("address", address, L.TEXT_CHARS)
    lat, lng = _location(params, required=False)
    fields = {"terminal_type": L.parse_terminal_type(params.get("terminal_type")),
              "org": L.parse_text("org", org, required=False),
              "address": L.parse_text("address", address, required=False), "lat": lat, "lng": lng}
    return {name: value for name, value in fields.items() if params.get(name) is not None}


@bp.route("/user/genId", methods=METHODS)
def gen_id():
    """A device registered before keeps its attributes: those given again are ignored (see Clients.register)."""
    limit_client_ip()
    params = client_params()
    app = services().apps.require(params.get("app_key"))
    check_jsonp(app)
    device_id = params.get("device_id")
    L.check_length("device_id", device_id, L.DEVICE_ID_CHARS)
    fields = terminal_fields(params)
    client_id = services().clients.register(app, L.parse_device_id(device_id), **fields)
    return allow_origin(ok({"client_id": client_id}), app)


@bp.route("/user/token", methods=METHODS)
def token():
    limit_client_ip()
    params = client_params()
    signed_app = None
    if params.first("sign") is not None:
        signed_app = services().apps.authenticate(params, request.path)
    client_id = L.parse_client_id(params.get("client_id"))
    client = services().clients.get(signed_app["id"] if signed_app else None, client_id)
    app = services().apps.by_id(client["app_id"])
    check_jsonp(app)
    if app["token_policy"] == "signed" and signed_app is None:
        raise auth_failed("this app hands out tokens only to signed requests (app_key + sign)")
    return allow_origin(ok(services().clients.issue_token(client)), app)


def _client_call():
    """(params, client id, app) of a call a client makes with its token (401 / 1028 for a bad one)."""
    limit_client_ip()
    params = client_params()
    client_id = params.get("client_id") or ""
    app = services().apps.by_id(services().clients.authenticate(client_id, params.get("token")))
    check_jsonp(app)
    return params, client_id, app


@bp.route("/user/location", methods=METHODS)
def location():
    params, client_id, app = _client_call()
    lat, lng = _location(params, required=True)
    services().clients.set_location(app["id"], client_id, lat, lng)
    return allow_origin(ok("OK"), app)


@bp.route("/user/click", methods=METHODS)
def click():
    """The user opened a delivered message (`id`: its delivery id, as the poll handed it out); counted once."""
    params, client_id, app = _client_call()
    services().clicks.record(app["id"], client_id, L.parse_id("id", params.get("id")))
    return allow_origin(ok("OK"), app)


@bp.route("/service/hash", methods=METHODS)
def service_hash():
    params = client_params()
    return allow_any_origin(ok(services().nodes.for_client(L.parse_client_id(params.get("client_id")))))


@bp.route("/service/random", methods=METHODS)
def service_random():
    client_params()
    return allow_any_origin(ok(services().nodes.any()))
