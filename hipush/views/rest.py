"""The push-core REST API (SPEC §4): pushes by terminal, tag, org and place, tags, timers, message status.

Calls are POST (the query_* calls GET too), with a form or JSON body, authenticated
by app_key + sign, HMAC, or HTTP Basic app_key:app_secret. Answers use the
`status` envelope.
"""
import hmac
import json
from datetime import datetime
from typing import NamedTuple

from flask import Blueprint, request
from hipush_client.protocol import STATUS_WAITING, json_value_text

from .. import limits as L
from ..errors import ApiError, auth_failed, bad_param, not_found
from ..services import services
from ..clock import now_ms
from .params import Params, request_authorization, request_params
from .guards import idempotent, limit_app
from .render import after_answer, answer, to_json
from .web import terminal_fields

bp = Blueprint("rest", __name__)
PATH_PREFIXES = ("/push/", "/manager/")
PUSH_TIME_TOLERANCE_MS = 60_000


def rest_ok(**fields):
    return answer(to_json({"status": 1, **fields}))


def authenticated(limit=None, body_bytes=None):
    """(params, app) of a REST call: HTTP Basic app_key:app_secret, else a signed request.
    limit: "publish" or "subscribe" applies that rate limit; body_bytes: a body cap of the call's own."""
    params = request_params(body_bytes)
    basic = request_authorization()
    if basic is not None and basic.type == "basic":
        _refuse_other_credentials(params, basic.username)
        app = services().apps.require(basic.username)
        if not hmac.compare_digest((basic.password or "").encode(), app["app_secret"].encode()):
            raise auth_failed("wrong app_secret")
    else:
        app = services().apps.authenticate(params, request.path)
    if limit:
        limit_app(app, limit)
    return params, app


def _refuse_other_credentials(params, app_key):
    """A call authenticates one way: with HTTP Basic, no sign or sign_method (even a right one), and an
    app_key only if it is the Basic user's, so that nothing in the call disagrees with what was checked."""
    if params.first("sign") is not None or params.first("sign_method") is not None:
        raise auth_failed("give HTTP Basic or a signature (sign, sign_method), not both")
    if any(key != app_key for key in params.all("app_key") + params.all("appkey")):
        raise auth_failed("the app_key parameter is not the HTTP Basic user")


def route(path, query=False):
    return bp.route(path, methods=["GET", "POST"] if query else ["POST"])


# pushes

def _push(target_of):
    """The common part of every push call; target_of(params) checks and returns the target."""
    params, app = authenticated("publish")
    return idempotent(app, params, lambda: _send(params, app, target_of))


class _Push(NamedTuple):
    """A push call's checked fields (or one entry's of a batch)."""
    target: dict
    msg_type: int
    content: str
    content_format: str
    expires_in: int
    push_time: int
    job_id: int
    online: bool


def _checked_push(params, target_of) -> _Push:
    config = services().config
    msg = params.get("msg")
    L.check_bytes("msg", msg, config.limits.content_bytes)
    target = target_of(params)
    msg_type = L.parse_msg_type(params.get("msg_type"))
    content, content_format = L.parse_message(msg_type, L.require("msg", msg))
    expires_in = L.parse_int("expires_time", params.get("expires_time"), 1, config.max_expires,
                             default=config.default_expires)
    push_time = now_ms()
    if params.get("push_time"):
        push_time = L.parse_time("push_time", params.get("push_time"), config.timezone)
        if push_time < now_ms() - PUSH_TIME_TOLERANCE_MS:
            raise bad_param("push_time is in the past")
        if push_time >= now_ms() + 1000 * expires_in:
            raise bad_param("the message would expire before its push_time: raise expires_time")
    job_id = L.parse_id("job_id", params.get("job_id")) if params.get("job_id") else None
    online = L.parse_bool("online", params.get("online"))
    return _Push(target, msg_type, content, content_format, expires_in, push_time, job_id, online)


def _send(params, app, target_of):
    push = _checked_push(params, target_of)
    topic_ids = services().targets.check(app, push.target)
    publisher = services().publisher
    message = publisher.new_message(app, push.job_id, push.msg_type, push.content, push.content_format)
    if push.push_time <= now_ms():
        publisher.publish_now(app, message, push.target, topic_ids, push.online, push.push_time, push.expires_in,
                              after_answer)
    else:
        publisher.create(app, message, push.target, topic_ids, push.online, STATUS_WAITING, push.push_time,
                         push.expires_in)
    return rest_ok(msg_id=message["id"])


def _send_batch(params, app):
    """Every entry is checked (an error names its index) before anything is recorded; then all are recorded in
    one transaction and queued together, behind the app's broadcasts."""
    entries = L.parse_json("messages", L.require("messages", params.get("messages")))
    if not isinstance(entries, list) or not entries:
        raise bad_param("messages must be a non-empty list of objects")
    if len(entries) > L.MAX_BATCH:
        raise bad_param(f"messages holds {len(entries)} entries: at most {L.MAX_BATCH} go in one batch")
    pushes = [_at_entry(index, _checked_entry, entry) for index, entry in enumerate(entries)]
    targets = services().targets
    try:  # every terminal of the batch in one query
        targets.check(app, {"kind": "clients", "ids": list({c: None for p in pushes for c in p.target["ids"]})})
    except ApiError:
        for index, push in enumerate(pushes):  # which entry names the missing one
            _at_entry(index, targets.check, app, push.target)
        raise
    publisher = services().publisher
    sends = [(_at_entry(index, publisher.new_message, app, p.job_id, p.msg_type, p.content, p.content_format),
              p.target, p.online, p.expires_in) for index, p in enumerate(pushes)]
    publisher.publish_batch(app, sends)
    return rest_ok(msg_ids=[message["id"] for message, _, _, _ in sends])


def _checked_entry(entry) -> _Push:
    if not isinstance(entry, dict):
        raise bad_param("an entry must be an object")
    unknown = sorted(set(entry) - {"terminal_ids", *L.BATCH_FIELDS})
    if unknown:
        raise bad_param(f"{unknown[0]} is not a field of a batch entry (it takes terminal_ids, "
                        f"{', '.join(L.BATCH_FIELDS)})")
    params = Params([(name, json_value_text(value)) for name, value in entry.items()])
    return _checked_push(params, lambda p: {"kind": "clients", "ids": _terminal_ids(p)})


def _at_entry(index: int, check, *args):
    """check(*args), its error naming the batch entry it is about."""
    try:
        return check(*args)
    except ApiError as error:
        raise ApiError(error.http_status, error.code, f"messages[{index}]: {error.reason}", error.headers) from None


def _terminal_ids(params):
    return L.parse_list("terminal_ids", params.get("terminal_ids"), services().config.limits.terminal_ids,
                        lambda name, item: L.parse_client_id(item, name))


def _tag_item(name, value):
    L.check_length(name, value, L.NAME_CHARS)
    return L.parse_topic(name, value)


def _tag(params):
    return _tag_item("tag", params.get("tag"))


def _star_or_list(params, name, parse_item):
    value = params.get(name)
    if value in (None, "", "*"):
        return None
    return L.parse_list(name, value, L.MAX_LIST_ITEMS, parse_item)


def _org(name, item):
    L.check_length(name, item, L.NAME_CHARS)
    return L.parse_text(name, item)


def _terminal_type(name, item):
    if item not in L.TERMINAL_TYPES:
        raise bad_param(f"{name} must be * or a comma list of {', '.join(L.TERMINAL_TYPES)}")
    return item


@route("/push/terminal")
def push_terminal():
    return _push(lambda p: {"kind": "clients", "ids": _terminal_ids(p)})


@route("/push/batch")
def push_batch():
    params, app = authenticated("publish", body_bytes=services().config.limits.batch_body_bytes)
    return idempotent(app, params, lambda: _send_batch(params, app))


@route("/push/all")
def push_all():
    return _push(lambda p: {"kind": "all"})


@route("/push/tags")
def push_tags():
    return _push(lambda p: {"kind": "tags", "tags": L.parse_list("tags", p.get("tags"), L.MAX_LIST_ITEMS, _tag_item)})


@route("/push/org")
def push_org():
    def target(p):
        L.require("orgs", p.get("orgs"))
        return {"kind": "org", "orgs": _star_or_list(p, "orgs", _org),
                "terminal_types": _star_or_list(p, "terminal_types", _terminal_type)}
    return _push(target)


@route("/push/geo")
def push_geo():
    return _push(lambda p: {
        "kind": "geo", "lat": L.parse_coordinate("lat", p.get("lat"), L.MAX_LATITUDE),
        "lng": L.parse_coordinate("lng", p.get("lng"), L.MAX_LONGITUDE),
        "radius": L.parse_int("radius", p.get("radius"), 1, L.MAX_RADIUS)})


# message status, history, timers

def _time_text(ms):
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, services().config.timezone).strftime("%Y-%m-%d %H:%M:%S")


def _page(params):
    return (L.parse_int("start", params.get("start"), 0, L.MAX_START, default=0),
            L.parse_int("limit", params.get("limit"), 1, L.MAX_PAGE, default=L.DEFAULT_PAGE))


def _push_rows(total, rows):
    data = [{"msg_id": r["message_id"], "msg": json.loads(r["content"]) if r["content_format"] == "json"
             else r["content"], "msg_type": r["msg_type"], "status": r["status"],
             "send_time": _time_text(r["send_time"] or r["push_time"])} for r in rows]
    return rest_ok(total_num=total, data=data)


@route("/manager/query_msg_status", query=True)
def query_msg_status():
    params, app = authenticated()
    msg_id = L.parse_id("msg_id", params.get("msg_id"))
    pushes = services().store.pushes_of_message(app["id"], msg_id)
    if not pushes:
        raise not_found("no such message")
    data = []
    for push in pushes:
        counts = services().stats.totals("push", push["id"])
        data.append({"msg_id": msg_id, "delivery_id": push["id"], "status": push["status"],
                     "send_time": _time_text(push["send_time"]), "push_time": _time_text(push["push_time"]),
                     "target_num": push["target_num"], "sent_num": counts["sent"], "arrived_num": counts["arrived"],
                     "expired_num": counts["expired"], "failed_num": counts["failed"],
                     "clicked_num": counts["clicked"]})
    return rest_ok(total_num=len(data), data=data)


@route("/manager/query_tag_msgs", query=True)
def query_tag_msgs():
    params, app = authenticated()
    tag = _tag(params)
    start, limit = _page(params)
    tz = services().config.timezone
    since = L.parse_time("range_start", params.get("range_start"), tz) if params.get("range_start") else None
    until = L.parse_time("range_end", params.get("range_end"), tz) if params.get("range_end") else None
    return _push_rows(*services().topics.history(app, tag, since, until, start, limit))


@route("/manager/query_timers", query=True)
def query_timers():
    params, app = authenticated()
    start, limit = _page(params)
    return _push_rows(*services().store.pushes_with_status(app["id"], STATUS_WAITING, start, limit))


@route("/manager/cancel_timer")
def cancel_timer():
    params, app = authenticated()
    services().timers.cancel(app, L.parse_id("msg_id", params.get("msg_id")))
    return rest_ok()


# tags

@route("/manager/query_tags", query=True)
def query_tags():
    params, app = authenticated()
    total, rows = services().topics.page(app, *_page(params))
    return rest_ok(total_num=total, data=[{"id": r["id"], "tag": r["name"], "info": r["info"] or "",
                                           "create_time": _time_text(r["created_at"])} for r in rows])


@route("/manager/create_tag")
def create_tag():
    params, app = authenticated()
    info = params.get("info")
    L.check_length("info", info, L.TEXT_CHARS)
    services().topics.create(app, _tag(params), L.parse_text("info", info, required=False))
    return rest_ok()


@route("/manager/del_tag")
def del_tag():
    params, app = authenticated()
    services().topics.delete(app, _tag(params))
    return rest_ok()


@route("/manager/terminal_add_tag")
def terminal_add_tag():
    params, app = authenticated("subscribe")
    ids = _terminal_ids(params)
    services().topics.subscribe(app, _tag(params), ids)
    return rest_ok()


@route("/manager/terminal_del_tag")
def terminal_del_tag():
    params, app = authenticated("subscribe")
    ids = _terminal_ids(params)
    tag = _tag(params)
    services().topics.count(app, tag)  # 404 for a tag that does not exist
    services().topics.unsubscribe(app, tag, ids)
    return rest_ok()


@route("/manager/terminal_num_with_tag", query=True)
def terminal_num_with_tag():
    params, app = authenticated()
    return rest_ok(num=services().topics.count(app, _tag(params)))


# terminals (clients)

def _terminal_id(params):
    return L.parse_client_id(params.get("terminal_id"), "terminal_id")


def _terminal_row(row):
    return {"terminal_id": row["client_id"], "device_id": row["device_id"], "terminal_type": row["terminal_type"],
            "org": row["org"], "address": row["address"], "lat": row["lat"], "lng": row["lng"],
            "create_time": _time_text(row["created_at"]), "online": row["online"], "queued_num": row["queued"],
            "unacked_num": row["unacked"]}


@route("/manager/query_terminal", query=True)
def query_terminal():
    params, app = authenticated()
    return rest_ok(data=_terminal_row(services().terminals.get(app, _terminal_id(params))))


@route("/manager/query_terminals", query=True)
def query_terminals():
    """Filters left out or empty filter nothing."""
    params, app = authenticated()
    tag, org = params.get("tag") or None, params.get("org") or None
    L.check_length("tag", tag, L.NAME_CHARS)
    L.check_length("org", org, L.NAME_CHARS)
    start, limit = _page(params)
    org, terminal_type = L.parse_text("org", org, required=False), L.parse_terminal_type(params.get("terminal_type"))
    topic_id = services().topics.existing(app, L.parse_topic("tag", tag)) if tag else None
    total, rows = services().terminals.page(app, start, limit, topic_id, org, terminal_type)
    return rest_ok(total_num=total, data=[_terminal_row(r) for r in rows])


@route("/manager/update_terminal")
def update_terminal():
    """Parameters left out keep their fields; org, address, and lat with lng, given empty clear theirs."""
    params, app = authenticated()
    client_id = _terminal_id(params)
    changes = terminal_fields(params)
    if not changes:
        raise bad_param("nothing to change: give any of terminal_type, address, org, lat and lng")
    if "terminal_type" in changes and changes["terminal_type"] is None:
        raise bad_param(f"terminal_type cannot be cleared: give one of {', '.join(L.TERMINAL_TYPES)}")
    if ("lat" in changes) != ("lng" in changes):
        raise bad_param("lat and lng go together")
    return rest_ok(data=_terminal_row(services().terminals.update(app, client_id, changes)))


@route("/manager/del_terminal")
def del_terminal():
    params, app = authenticated()
    services().terminals.delete(app, _terminal_ids(params))
    return rest_ok()
