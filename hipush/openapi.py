"""The OpenAPI 3.1 description of every HTTP call: served at /openapi.json, browsed and tried at /docs.

Tables first, then the small builders that turn them into the document:
- PARAMS: every parameter name with its schema (type and limits), description and example. A name means
  the same thing in every call that takes it; the few exceptions are a call's `variants`.
- ERRORS: every failure a call can answer (SPEC §7), by name; every call may answer COMMON_ERRORS.
- AUTH: how a call is authenticated, as alternatives of SECURITY_SCHEMES.
- CALLS: one Call per path. Adding an endpoint is one entry there (plus PARAMS for new parameter names); one
  that answers outside the API's envelopes (a health check, metrics, an event stream) names its `media`.
Limits come from hipush.limits, config.Limits and config.Config, which the checks use too: they cannot drift.
"""
from typing import NamedTuple

from hipush_client import protocol
from hipush_client.protocol import NOTIFICATION_FIELDS, TERMINAL_TYPES, TIMESTAMP_SKEW

from . import errors as E
from . import limits as L
from .config import Config, Limits

LIMITS = Limits()  # the defaults: an operator may change some of them, SPEC §8


# schema builders

def text(max_chars: int, min_chars: int = 1, **extra) -> dict:
    return {"type": "string", "minLength": min_chars, "maxLength": max_chars, **extra}


def integer(minimum: int, maximum: int, **extra) -> dict:
    return {"type": "integer", "minimum": minimum, "maximum": maximum, **extra}


def pattern(regex: str, **extra) -> dict:
    return {"type": "string", "pattern": f"^(?:{regex})$", **extra}


def comma_list(item: str, max_items: int, star: bool = False) -> dict:
    """A comma list of 1 to max_items items matching `item` (or `*`, when `star`)."""
    items = f"{item}(?:,{item}){{0,{max_items - 1}}}"
    return pattern(f"\\*|{items}" if star else items)


def obj(optional=(), **properties) -> dict:
    """An object with these properties, each required unless named in `optional`; more may be added later."""
    return {"type": "object", "required": [name for name in properties if name not in optional],
            "properties": properties}


def nullable(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"]}


def page_of(row: dict) -> dict:
    return {"total_num": {"type": "integer", "minimum": 0}, "data": {"type": "array", "items": row}}


CLIENT_ID_RE = protocol.CLIENT_ID_RE.pattern
TOPIC_RE = f"{protocol.TOPIC_RE.pattern.rstrip('+')}{{1,{L.NAME_CHARS}}}"  # one topic (tag) name
APP_KEY = pattern("[0-9a-f]{24}")
ID = integer(0, 10**18 - 1, examples=[1])  # job, message and delivery ids: up to 18 decimal digits
COUNT = {"type": "integer", "minimum": 0}
TIME_TEXT = nullable({"type": "string", "description": "YYYY-MM-DD HH:MM:SS in the server's time zone"})
OK_TEXT = {"const": "OK"}
READY = obj(ok={"const": True})
NODE = obj(ip={"type": "string"}, port=integer(1, 65535))
MESSAGE = obj(id=ID, msg_id=ID, job_id=nullable(ID), msg_type=integer(0, 1),
              content={"type": ["string", "object"]}, ts={"type": "integer", "description": "unix ms"})
STATUS = integer(0, 4, description="0 sent, 1 waiting, 2 sending, 3 failed, 4 cancelled")
PUSH_ROW = obj(msg_id=ID, msg={"type": ["string", "object"]}, msg_type=integer(0, 1), status=STATUS,
               send_time=TIME_TEXT)
TERMINAL_TYPE = {"type": "string", "enum": list(TERMINAL_TYPES)}
TERMINAL_ROW = obj(
    terminal_id=pattern(CLIENT_ID_RE), device_id={"type": "string"}, terminal_type=TERMINAL_TYPE,
    org=nullable({"type": "string"}), address=nullable({"type": "string"}), lat=nullable({"type": "number"}),
    lng=nullable({"type": "number"}), create_time=TIME_TEXT, online={"type": "boolean"}, queued_num=COUNT,
    unacked_num=COUNT)


class Param(NamedTuple):
    schema: dict
    description: str
    example: object


CONTENT_NOTE = f"at most {LIMITS.content_bytes} bytes of UTF-8"
PARAMS = {
    # authentication (the signature itself, `sign`, and a client's `token` are security schemes)
    "app_key": Param(APP_KEY, "the app's key (`python app.py create-app NAME` prints it)", "5f2c9a41d7e08b36c1a4f9e2"),
    "appkey": Param(APP_KEY, "the seed's other spelling of app_key", "5f2c9a41d7e08b36c1a4f9e2"),
    "sign_method": Param({"type": "string", "enum": ["md5", "hmac-sha256"]},
                         "how `sign` was made (absent: md5); hmac-sha256 also needs timestamp and nonce",
                         "hmac-sha256"),
    "timestamp": Param(pattern("[0-9]{1,12}"), f"unix seconds, within {TIMESTAMP_SKEW} s of the server's clock "
                                              "(hmac-sha256 only)", "1796000000"),
    "nonce": Param(text(L.NAME_CHARS), "used once within 10 minutes (hmac-sha256 only)", "3b1f0c9e"),
    "callback": Param(pattern(L.JSONP_CALLBACK_RE.pattern), "JSONP: the answer is `callback(json);`, "
                                                            "as application/javascript", "onHipush"),
    # clients
    "device_id": Param(text(L.DEVICE_ID_CHARS, pattern=f"^{protocol.DEVICE_ID_RE.pattern}$"),
                       "the device's own id: printable ASCII without spaces", "device-42"),
    "client_id": Param(pattern(CLIENT_ID_RE), "a client id from /user/genId", "0f5e9c7d2b1a4c3e8d6f7a9b0c1d2e3f"),
    "terminal_id": Param(pattern(CLIENT_ID_RE), "a client id (a terminal in the REST API)",
                         "0f5e9c7d2b1a4c3e8d6f7a9b0c1d2e3f"),
    "terminal_ids": Param(comma_list(CLIENT_ID_RE, LIMITS.terminal_ids),
                          f"comma list of 1 to {LIMITS.terminal_ids} client ids",
                          "0f5e9c7d2b1a4c3e8d6f7a9b0c1d2e3f,9a8b7c6d5e4f30211203f4e5d6c7b8a9"),
    "terminal_type": Param(TERMINAL_TYPE, "how the client is reached; a new client is `web`",
                           "android"),
    "terminal_types": Param(comma_list(f"(?:{'|'.join(TERMINAL_TYPES)})", L.MAX_LIST_ITEMS, star=True),
                            "comma list of terminal types, or `*` (default) for all", "android,web"),
    "org": Param(text(L.NAME_CHARS, 0), "the client's organisation (empty clears it)", "sales"),
    "orgs": Param(comma_list(f"[^,\\x00-\\x1f\\x7f]{{1,{L.NAME_CHARS}}}", L.MAX_LIST_ITEMS, star=True),
                  f"comma list of 1 to {L.MAX_LIST_ITEMS} organisations, or `*` for every client", "sales,support"),
    "address": Param(text(L.TEXT_CHARS, 0), "the client's postal address, free text (empty clears it)",
                     "1 Main Street"),
    "lat": Param({"type": "number", "minimum": -L.MAX_LATITUDE, "maximum": L.MAX_LATITUDE},
                 "latitude in degrees", 31.23),
    "lng": Param({"type": "number", "minimum": -L.MAX_LONGITUDE, "maximum": L.MAX_LONGITUDE},
                 "longitude in degrees", 121.47),
    "radius": Param(integer(1, L.MAX_RADIUS), "metres around lat, lng", 5000),
    "ack": Param(ID, "the id of the last message processed: acknowledges it and every one delivered before it",
                 0),
    "timeout": Param(integer(0, Config.poll_timeout_max, default=Config.poll_timeout_default),
                     "seconds to wait for a message when none is waiting", 1),
    # jobs and messages
    "name": Param(text(L.NAME_CHARS), "the job's name", "spring sale"),
    "type": Param(text(L.NAME_CHARS), "the job's type, free text", "campaign"),
    "job_id": Param(ID, "a job id from /job/genId", 1),
    "id": Param(ID, "a delivery id: the `id` of a message a poll or stream handed out", 1),
    "msg_id": Param(ID, "a message id (from /message/save or a push call)", 1),
    "msg_type": Param(integer(0, 1), "0: a message for the app, 1: a notification for the user", 0),
    "content": Param(text(LIMITS.content_bytes), CONTENT_NOTE, "hello"),
    "msg": Param(text(LIMITS.content_bytes), f"{CONTENT_NOTE}: plain text, or for a notification (msg_type 1) a "
                 f"JSON object of {', '.join(NOTIFICATION_FIELDS)}", '{"title":"Sale","body":"Today only"}'),
    "online": Param({"type": "boolean", "default": False},
                    "true (or 1): only clients online now; false (or 0): the others get it when they connect",
                    False),
    "push_time": Param({"type": "string"}, "when to send: YYYY-MM-DD HH:MM:SS in the server's time zone, "
                                           "ISO 8601 with an offset, or unix seconds; absent: now",
                       "2030-01-01 09:00:00"),
    "expires_time": Param(integer(1, Config.max_expires, default=Config.default_expires),
                          "seconds from the call until the message expires undelivered", 3600),
    "idempotency_key": Param(text(L.NAME_CHARS), "a repeat with the same key within 24 hours answers as the "
                                                 "first call and sends nothing again", "order-1234"),
    # topics (tags)
    "topic": Param(pattern(TOPIC_RE), "a topic name", "news"),
    "tag": Param(pattern(TOPIC_RE), "a tag name (tags are the legacy API's topics)", "news"),
    "tags": Param(comma_list(TOPIC_RE, L.MAX_LIST_ITEMS), f"comma list of 1 to {L.MAX_LIST_ITEMS} tags: "
                                                          "their union gets the message, each client once",
                  "news,sports"),
    "info": Param(text(L.TEXT_CHARS, 0), "what the tag is for, free text", "daily news readers"),
    # pages
    "start": Param(integer(0, L.MAX_START, default=0), "the first row to answer", 0),
    "limit": Param(integer(1, L.MAX_PAGE, default=L.DEFAULT_PAGE), "how many rows at most", L.DEFAULT_PAGE),
    "range_start": Param({"type": "string"}, "only pushes sent from then on (the formats of push_time)",
                         "2026-01-01 00:00:00"),
    "range_end": Param({"type": "string"}, "only pushes sent until then (the formats of push_time)",
                       "2030-01-01 00:00:00"),
}
PARAMS["messages"] = Param(
    {"type": "array", "minItems": 1, "maxItems": L.MAX_BATCH,
     "items": obj(optional=L.BATCH_FIELDS[2:], terminal_ids=PARAMS["terminal_ids"].schema,
                  **{name: PARAMS[name].schema for name in L.BATCH_FIELDS})},
    "the pushes, each the fields of /push/terminal but push_time and idempotency_key (an error names its index)",
    [{"terminal_ids": "0c1d2e3f40516273849a5b6c7d8e9f00", "msg_type": 0, "msg": "hello"}])
# parameters taken by every call of a kind
SIGNED = "app_key ?sign_method ?timestamp ?nonce"
TOPIC_SIGNED = "?app_key ?appkey ?sign_method ?timestamp ?nonce"  # app_key or the seed's appkey
REST_SIGNED = "?app_key ?sign_method ?timestamp ?nonce"
PUSH = "msg_type msg ?push_time ?expires_time ?job_id ?online ?idempotency_key"
PAGE = "?start ?limit"
TERMINAL = "?terminal_type ?org ?address ?lat ?lng"
SUBSCRIBERS = {"client_id": Param({"type": "array", "items": PARAMS["client_id"].schema, "minItems": 1,
                                   "maxItems": LIMITS.subscribe_clients},
                                  f"1 to {LIMITS.subscribe_clients} client ids, the parameter repeated",
                                  ["0f5e9c7d2b1a4c3e8d6f7a9b0c1d2e3f"])}


class Error(NamedTuple):
    http_status: int
    code: int
    meaning: str
    reason: str  # an example of the human-readable reason the answer carries


ERRORS = {
    "bad_param": Error(403, E.ERROR_BAD_PARAM, "a parameter is missing, malformed, out of range or given twice",
                       "missing parameter: msg_type"),
    "auth": Error(401, E.ERROR_AUTH, "authentication failed: sign, token or app_key", "wrong sign"),
    "not_found": Error(404, E.ERROR_NOT_FOUND, "no such object (or it belongs to another app)", "no such message"),
    "method": Error(405, E.ERROR_METHOD, "HTTP method not allowed (the Allow header names those allowed)",
                    "HTTP method not allowed"),
    "timeout": Error(408, E.ERROR_BAD_PARAM, "the request body came too slowly",
                     "the request body did not arrive within 10 s"),
    "too_large": Error(413, E.ERROR_TOO_LARGE, "a value, the query string or the body is over its limit",
                       f"msg is longer than {LIMITS.content_bytes} bytes"),
    "rate": Error(429, E.ERROR_RATE_LIMITED, "rate limited: retry after Retry-After seconds",
                  f"rate limit of {Config.publish_rate} calls per 1 s reached"),
    "internal": Error(500, E.ERROR_INTERNAL, "internal server error", "internal server error"),
    "unavailable": Error(503, E.ERROR_UNAVAILABLE, "Redis or the database is unavailable, or the node is stopping",
                         "redis is unavailable, try again shortly"),
}
COMMON_ERRORS = "bad_param method too_large internal unavailable"

SIGNATURE_NOTE = ("Every parameter but `sign` (`appkey` read as `app_key`), sorted by name; see README, "
                  "Signing. Swagger UI cannot compute it: paste one made by an SDK.")
SECURITY_SCHEMES = {
    "md5Signature": {"type": "apiKey", "in": "query", "name": "sign", "description": (
        "The seed's signature: MD5 of `name=value&...` (raw values) with the app secret appended, lowercase "
        "hex. " + SIGNATURE_NOTE)},
    "hmacSignature": {"type": "apiKey", "in": "query", "name": "sign", "description": (
        "`sign_method=hmac-sha256` with `timestamp` and `nonce` among the parameters: lowercase hex "
        "HMAC-SHA256(app_secret, path + \"\\n\" + percent-encoded name=value&...). " + SIGNATURE_NOTE)},
    "basicAuth": {"type": "http", "scheme": "basic",
                  "description": "HTTP Basic with the app_key as the user and the app_secret as the password"},
    "clientToken": {"type": "apiKey", "in": "query", "name": "token",
                    "description": "a client's token from /user/token, with its client_id (valid one week)"},
    "metricsToken": {"type": "http", "scheme": "bearer",
                     "description": "HIPUSH_METRICS_TOKEN, when the node sets one (else /metrics is open)"},
}
SIGNATURES = [{"md5Signature": []}, {"hmacSignature": []}]
AUTH = {  # a call's kind of authentication: alternatives of SECURITY_SCHEMES ({}: none needed)
    "none": [],
    "client token": [{"clientToken": []}],
    "optional signature": [{}, *SIGNATURES],  # an app may require signed /user/token calls
    "signature": SIGNATURES,
    "app": [*SIGNATURES, {"basicAuth": []}],
    "metrics token": [{}, {"metricsToken": []}],
}


class Call(NamedTuple):
    summary: str
    methods: str  # "GET POST"
    auth: str  # a key of AUTH; "app" calls are the REST API, answering in its `status` envelope
    params: str  # names in PARAMS (or variants), space-separated; "?name": optional
    result: dict  # the success body's `result` (legacy API), or its fields besides `status` (REST API)
    errors: str = ""  # names in ERRORS that the call may answer besides COMMON_ERRORS
    variants: dict = {}  # name: Param, where this call's parameter differs from PARAMS'
    media: str = ""  # a success body in no envelope: `result` is its whole schema, of this media type


CALLS = {
    # web node: clients (SPEC §3), unsigned
    "/user/genId": Call("A client id for a device of an app (a device registered before keeps its attributes)",
                        "GET POST", "none", f"device_id app_key {TERMINAL} ?callback",
                        obj(client_id=PARAMS["client_id"].schema), "auth rate"),
    "/user/token": Call("A one-week token for a client (signed, when the app hands tokens only to its backend)",
                        "GET POST", "optional signature", f"client_id ?callback {REST_SIGNED}",
                        obj(client_id=PARAMS["client_id"].schema, token={"type": "string"},
                            expires_in={"const": Config.token_lifetime}), "auth not_found rate"),
    "/user/location": Call("Set a client's last known location (for /push/geo)", "GET POST", "client token",
                           "client_id lat lng ?callback", OK_TEXT, "auth rate"),
    "/user/click": Call("Count a click on a delivered message; once per delivery and client", "GET POST",
                        "client token", "client_id id ?callback", OK_TEXT, "auth not_found rate"),
    "/service/hash": Call("The comet node a client should poll", "GET POST", "none", "client_id ?callback", NODE),
    "/service/random": Call("A random live comet node", "GET POST", "none", "?callback", NODE),
    # comet node (SPEC §5)
    "/comet/poll": Call("Long-poll a client's messages, acknowledging those up to `ack`", "GET", "client token",
                        "client_id ?ack ?timeout ?callback",
                        obj(optional=["missed"], messages={"type": "array", "items": MESSAGE},
                            missed={**COUNT, "description": "messages dropped from a full queue since the last poll"}),
                        "auth"),
    # every node: for operators and load balancers, outside the API's envelopes
    "/healthz": Call("Liveness: 200 while the process serves (no I/O)", "GET", "none", "", READY,
                     media="application/json"),
    "/readyz": Call("Readiness: 200 when this node's Redis and database each answer within 1 s; 503 / 1031 naming "
                    "the one that failed, and while the node is stopping", "GET", "none", "", READY,
                    media="application/json"),
    "/metrics": Call("This node's Prometheus metrics, all workers in one view (README, Health and metrics)", "GET",
                     "metrics token", "", {"type": "string"}, "auth", media="text/plain"),
    "/comet/stream": Call("The client's messages as server-sent events (id: the delivery id, data: the message as a "
                          "poll shows it); acknowledge with /comet/ack", "GET", "client token", "client_id",
                          {"type": "string"}, "auth", media="text/event-stream"),
    "/comet/ack": Call("Acknowledge a stream's messages up to and including `ack` (cumulative)", "POST",
                       "client token", "client_id ack", OK_TEXT, "auth"),
    # admin node: the legacy API for app backends (SPEC §3), signed
    "/job/genId": Call("Create a job, which counts what its messages do", "GET POST", "signature",
                       f"{SIGNED} name type", obj(job_id=ID), "auth"),
    "/publish/private": Call("Push to one client", "GET POST", "signature",
                             f"{SIGNED} job_id client_id msg_type content ?online ?idempotency_key", OK_TEXT,
                             "auth not_found rate"),
    "/message/save": Call("Save a message to publish to topics", "GET POST", "signature",
                          f"{SIGNED} job_id msg_type content", obj(message_id=ID), "auth not_found"),
    "/publish/multi": Call("Push a saved message to a topic's subscribers (`*`: every client of the app)",
                           "GET POST", "signature", f"{SIGNED} topic msg_id ?online ?idempotency_key", OK_TEXT,
                           "auth not_found rate",
                           {"topic": Param(pattern(f"\\*|{TOPIC_RE}"), "a topic, or `*` for every client", "*")}),
    "/topic/subscribe": Call("Subscribe clients to a topic", "GET POST", "signature",
                             f"{TOPIC_SIGNED} client_id topic", OK_TEXT,
                             "auth not_found rate", SUBSCRIBERS),
    "/topic/unsubscribe": Call("Unsubscribe clients from a topic", "GET POST", "signature",
                               f"{TOPIC_SIGNED} client_id topic", OK_TEXT,
                               "auth not_found rate", SUBSCRIBERS),
    "/job/stats": Call("A job's counts: sent, arrived, expired, failed, clicked", "GET POST", "signature",
                       f"{SIGNED} job_id",
                       obj(job_id=ID, name={"type": "string"}, type={"type": "string"},
                           created_at={"type": "integer", "description": "unix ms"},
                           sent=COUNT, arrived=COUNT, expired=COUNT, failed=COUNT, clicked=COUNT), "auth not_found"),
    "/user/revoke": Call("End every token of a client at once", "GET POST", "signature", f"{SIGNED} client_id",
                         OK_TEXT, "auth not_found"),
    # admin node: the REST API (SPEC §4)
    "/push/terminal": Call("Push to clients by id", "POST", "app", f"{REST_SIGNED} terminal_ids {PUSH}",
                           {"msg_id": ID}, "auth not_found rate"),
    "/push/batch": Call("Push up to 1,000 messages to clients by id in one call: ids answered in entry order; an "
                        "invalid entry refuses the whole batch", "POST", "app", f"{REST_SIGNED} messages",
                        {"msg_ids": {"type": "array", "items": ID}}, "auth not_found rate"),
    "/push/all": Call("Push to every client of the app", "POST", "app", f"{REST_SIGNED} {PUSH}",
                      {"msg_id": ID}, "auth not_found rate"),
    "/push/tags": Call("Push to the union of tags", "POST", "app", f"{REST_SIGNED} tags {PUSH}",
                       {"msg_id": ID}, "auth not_found rate"),
    "/push/org": Call("Push to organisations, optionally by terminal type", "POST", "app",
                      f"{REST_SIGNED} orgs ?terminal_types {PUSH}", {"msg_id": ID}, "auth not_found rate"),
    "/push/geo": Call("Push to the clients within a radius of a point", "POST", "app",
                      f"{REST_SIGNED} lat lng radius {PUSH}", {"msg_id": ID}, "auth not_found rate"),
    "/manager/query_msg_status": Call(
        "Status and counts of a message's pushes", "GET POST", "app", f"{REST_SIGNED} msg_id",
        page_of(obj(msg_id=ID, delivery_id=ID, status=STATUS, send_time=TIME_TEXT, push_time=TIME_TEXT,
                    target_num=COUNT, sent_num=COUNT, arrived_num=COUNT, expired_num=COUNT, failed_num=COUNT,
                    clicked_num=COUNT)),
        "auth not_found"),
    "/manager/query_tag_msgs": Call("A tag's push history, newest first", "GET POST", "app",
                                    f"{REST_SIGNED} tag ?range_start ?range_end {PAGE}", page_of(PUSH_ROW),
                                    "auth not_found"),
    "/manager/query_tags": Call("The app's tags", "GET POST", "app", f"{REST_SIGNED} {PAGE}",
                                page_of(obj(id=ID, tag={"type": "string"}, info={"type": "string"},
                                            create_time=TIME_TEXT)), "auth"),
    "/manager/create_tag": Call("Create a tag (or set its info)", "POST", "app", f"{REST_SIGNED} tag ?info", {},
                                "auth"),
    "/manager/del_tag": Call("Delete a tag", "POST", "app", f"{REST_SIGNED} tag", {}, "auth not_found"),
    "/manager/terminal_add_tag": Call("Add clients to a tag", "POST", "app", f"{REST_SIGNED} tag terminal_ids", {},
                                      "auth not_found rate"),
    "/manager/terminal_del_tag": Call("Remove clients from a tag", "POST", "app", f"{REST_SIGNED} tag terminal_ids",
                                      {}, "auth not_found rate"),
    "/manager/terminal_num_with_tag": Call("How many clients a tag has", "GET POST", "app", f"{REST_SIGNED} tag",
                                           {"num": COUNT}, "auth not_found"),
    "/manager/query_timers": Call("Timed pushes still waiting", "GET POST", "app", f"{REST_SIGNED} {PAGE}",
                                  page_of(PUSH_ROW), "auth"),
    "/manager/cancel_timer": Call("Cancel a waiting timed push", "POST", "app", f"{REST_SIGNED} msg_id", {},
                                  "auth not_found"),
    "/manager/query_terminal": Call("A terminal (client) and its live state", "GET POST", "app",
                                    f"{REST_SIGNED} terminal_id", {"data": TERMINAL_ROW}, "auth not_found"),
    "/manager/query_terminals": Call("The app's terminals, optionally by tag, org or type", "GET POST", "app",
                                     f"{REST_SIGNED} {PAGE} ?tag ?org ?terminal_type", page_of(TERMINAL_ROW),
                                     "auth not_found"),
    "/manager/update_terminal": Call("Change a terminal's type, address, org or location", "POST", "app",
                                     f"{REST_SIGNED} terminal_id {TERMINAL}", {"data": TERMINAL_ROW},
                                     "auth not_found"),
    "/manager/del_terminal": Call("Delete terminals with their tags, tokens and waiting messages", "POST", "app",
                                  f"{REST_SIGNED} terminal_ids", {}, "auth not_found"),
}


# the document

def _params(call: Call) -> list:
    """[(name, Param, required)] of a call."""
    named = []
    for word in call.params.split():
        name = word.lstrip("?")
        named.append((name, call.variants.get(name) or PARAMS[name], not word.startswith("?")))
    return named


def _schema(param: Param) -> dict:
    return {**param.schema, "description": param.description, "examples": [param.example]}


def _envelope(call: Call) -> str:
    """How a call's answers are wrapped: "rest", "legacy", or "legacy+jsonp" (a client call taking `callback`)."""
    if call.auth == "app":
        return "rest"
    return "legacy+jsonp" if "callback" in call.params else "legacy"


def _content(envelope: str, schema: dict) -> dict:
    media = {"application/json": {"schema": schema}}
    if envelope == "legacy+jsonp":
        media["application/javascript"] = {"schema": {"type": "string", "description": "JSONP: callback(body);"}}
    return media


def _success(call: Call) -> dict:
    if call.media:
        return {"description": "success", "content": {call.media: {"schema": call.result}}}
    envelope = _envelope(call)
    body = obj(status={"const": 1}, **call.result) if envelope == "rest" else obj(ok={"const": True},
                                                                                  result=call.result)
    return {"description": "success", "content": _content(envelope, body)}


def _error_responses() -> dict:
    """components.responses: each error in each envelope, named like `rest_401`."""
    responses = {}
    for envelope in ("legacy", "legacy+jsonp", "rest"):
        for error in ERRORS.values():
            reason = {"type": "string", "examples": [error.reason]}
            if envelope == "rest":
                body = obj(status={"const": 0}, error_code={"const": error.code}, error=reason)
            else:
                body = obj(error={"const": error.code}, reason=reason)
            responses[f"{envelope.replace('+', '_')}_{error.http_status}"] = {
                "description": f"{error.code}: {error.meaning}", "content": _content(envelope, body)}
    return responses


def _responses(call: Call, method: str) -> dict:
    responses = {"200": _success(call)}
    names = f"{COMMON_ERRORS} {call.errors} {'timeout' if method == 'post' else ''}".split()
    for status in sorted(ERRORS[name].http_status for name in names):
        responses[str(status)] = {"$ref": f"#/components/responses/{_envelope(call).replace('+', '_')}_{status}"}
    return responses


def _operation(path: str, call: Call, method: str) -> dict:
    params = _params(call)
    operation = {"summary": call.summary, "operationId": f"{method}{path.replace('/', '_')}",
                 "tags": [{"app": "REST API", "signature": "legacy admin API"}.get(call.auth, "clients")],
                 "security": AUTH[call.auth], "responses": _responses(call, method)}
    # Swagger UI's "Try it out" fills in a parameter's `example` and a body's: only the required ones get
    # them there, so that a tried call sends no optional parameter unasked (an example sign_method, say, next
    # to HTTP Basic would be refused); every parameter's schema has its `examples`.
    if method == "get":
        operation["parameters"] = [
            {"name": name, "in": "query", "required": required, "description": param.description,
             "schema": {**param.schema, "examples": [param.example]},
             **({"example": param.example} if required else {}),
             **({"style": "form", "explode": True} if param.schema.get("type") == "array" else {})}
            for name, param, required in params]
    elif params:
        body = {"type": "object", "properties": {name: _schema(param) for name, param, _ in params},
                "required": [name for name, _, required in params if required]}
        example = {name: param.example for name, param, required in params if required}
        media = {"application/x-www-form-urlencoded": {"schema": body, "example": example}}
        if call.auth == "app":
            media["application/json"] = {"schema": body, "example": example}
        operation["requestBody"] = {"required": bool(body["required"]), "content": media}
    return operation


TAGS = [  # the groups of calls, in the order /docs shows them
    {"name": "clients", "description": "Web and comet node calls that clients (browsers, apps, devices) make: "
                                       "unsigned, or with the client's token"},
    {"name": "legacy admin API", "description": "The seed's calls for app backends, signed (SPEC §3)"},
    {"name": "REST API", "description": "Pushes, tags, timers and terminals for app backends, signed or with "
                                        "HTTP Basic (SPEC §4)"},
]
DESCRIPTION = """Self-hosted push service. Clients get an id and a token on the web node and long-poll the comet node;
app backends push through the legacy admin API or the REST API.

GET takes a query string, POST a form body (the REST API also a JSON object). Answers: legacy
`{"ok": true, "result": ...}` or `{"error": CODE, "reason": ...}`; REST `{"status": 1, ...}` or
`{"status": 0, "error_code": CODE, "error": ...}`, with the HTTP status of the error.

Calls with a lock need credentials. **Authorize** takes HTTP Basic (app_key, app_secret) for the REST API,
a client's token, or a `sign` made by an SDK: a signature covers every parameter, so it fits one call only.
Signing and the long-poll protocol are explained in the README."""


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "hipush", "version": "1.0.0", "description": DESCRIPTION},
        "tags": TAGS,
        "paths": {path: {method.lower(): _operation(path, call, method.lower()) for method in call.methods.split()}
                  for path, call in CALLS.items()},
        "components": {"securitySchemes": SECURITY_SCHEMES, "responses": _error_responses()},
    }
