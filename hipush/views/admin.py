"""Admin node calls made by app backends, signed (SPEC §3): jobs, publishing, topics, stats, revocation."""
from flask import Blueprint, request

from .. import limits as L
from ..services import services
from .params import request_params
from .guards import idempotent, limit_app
from .render import after_answer, ok

bp = Blueprint("admin", __name__)
METHODS = ["GET", "POST"]


def signed_call(limit=None):
    """(params, app) of a signed call; limit: "publish" or "subscribe" applies that rate limit."""
    params = request_params()
    app = services().apps.authenticate(params, request.path)
    if limit:
        limit_app(app, limit)
    return params, app


def _message_fields(params):
    content = params.get("content")
    L.check_bytes("content", content, services().config.limits.content_bytes)
    job_id = L.parse_id("job_id", params.get("job_id"))
    return job_id, L.parse_msg_type(params.get("msg_type")), L.require("content", content)


@bp.route("/job/genId", methods=METHODS)
def gen_job():
    params, app = signed_call()
    name, job_type = params.get("name"), params.get("type")
    L.check_length("name", name, L.NAME_CHARS)
    L.check_length("type", job_type, L.NAME_CHARS)
    job_id = services().jobs.create(app, L.parse_text("name", name), L.parse_text("type", job_type))
    return ok({"job_id": job_id})


@bp.route("/publish/private", methods=METHODS)
def publish_private():
    params, app = signed_call("publish")
    return idempotent(app, params, lambda: _publish_private(params, app))


def _publish_private(params, app):
    job_id, msg_type, content = _message_fields(params)
    client_id = L.parse_client_id(params.get("client_id"))
    online = L.parse_bool("online", params.get("online"))
    target = {"kind": "clients", "ids": [client_id]}
    topic_ids = services().targets.check(app, target)
    publisher = services().publisher
    publisher.publish_now(app, publisher.new_message(app, job_id, msg_type, content), target, topic_ids, online)
    return ok("OK")


@bp.route("/message/save", methods=METHODS)
def save_message():
    params, app = signed_call()
    job_id, msg_type, content = _message_fields(params)
    return ok({"message_id": services().publisher.save_message(app, job_id, msg_type, content)["id"]})


@bp.route("/publish/multi", methods=METHODS)
def publish_multi():
    params, app = signed_call("publish")
    return idempotent(app, params, lambda: _publish_multi(params, app))


def _publish_multi(params, app):
    topic = params.get("topic")
    L.check_length("topic", topic, L.NAME_CHARS)
    if topic != "*":
        L.parse_topic("topic", topic)
    msg_id = L.parse_id("msg_id", params.get("msg_id"))
    online = L.parse_bool("online", params.get("online"))
    message = services().publisher.message(app, msg_id)
    target = {"kind": "all"} if topic == "*" else {"kind": "tags", "tags": [topic]}
    services().publisher.publish_now(app, message, target, services().targets.check(app, target), online,
                                     after_answer=after_answer)
    return ok("OK")


def _subscription(params):
    client_ids, topic = params.all("client_id"), params.get("topic")
    L.check_count("client_id", client_ids, services().config.limits.subscribe_clients)
    L.check_length("topic", topic, L.NAME_CHARS)
    L.require("client_id", client_ids[0] if client_ids else None)
    return [L.parse_client_id(c) for c in client_ids], L.parse_topic("topic", topic)


@bp.route("/topic/subscribe", methods=METHODS)
def subscribe():
    params, app = signed_call("subscribe")
    client_ids, topic = _subscription(params)
    services().topics.subscribe(app, topic, client_ids)
    return ok("OK")


@bp.route("/topic/unsubscribe", methods=METHODS)
def unsubscribe():
    params, app = signed_call("subscribe")
    client_ids, topic = _subscription(params)
    services().topics.unsubscribe(app, topic, client_ids)
    return ok("OK")


@bp.route("/job/stats", methods=METHODS)
def job_stats():
    params, app = signed_call()
    return ok(services().jobs.stats_of(app, L.parse_id("job_id", params.get("job_id"))))


@bp.route("/user/revoke", methods=METHODS)
def revoke():
    params, app = signed_call()
    services().clients.revoke(app, L.parse_client_id(params.get("client_id")))
    return ok("OK")
