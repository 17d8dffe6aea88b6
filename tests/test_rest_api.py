"""The REST API of seed 003 (SPEC §4) end to end over real HTTP, against gunicorn with 2 gevent workers.

Every call is made the three ways an app backend may authenticate (a form body signed
with the seed's MD5, a JSON body signed over its top-level fields, HTTP Basic) and with
each kind of bad input; every failure is checked for its exact HTTP status, error code
(SPEC §7) and the REST envelope {"status": 0, "error_code": .., "error": ..}.

What reaches a client is read at the client: it polls (acknowledging as it goes, keeping
duplicates) until a marker message pushed to it after the event arrives. Per-client
publish order puts everything queued before the marker ahead of it, so "nothing else
arrived" needs no sleep. Counters may lag a moment and are read with a deadline.
"""
import base64
import hashlib
import json
import math
import shutil
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest

from hipush import config as config_module
from hipush.storage import db
from hipush.storage.embedded import EmbeddedRedis
from hipush.storage.store import Store
from support import Api, Server, post_chunked, seed_sign, wait_for

BAD_PARAM = (403, 1024)
NOT_FOUND = (404, 1026)
NOT_ALLOWED = (405, 1027)
AUTH_FAILED = (401, 1028)
TOO_LARGE = (413, 1030)

SENT, WAITING, SENDING, CANCELLED = 0, 1, 2, 4
MISSING_ID = "987654321"  # a well-formed msg/job id that was never issued
UNKNOWN_APP = {"app_key": "0123456789abcdef01234567", "app_secret": "whatever"}
MAX_EXPIRES = 10 * 86400
BEIJING = (39.9087, 116.3975)
PUSH_PATHS = ["/push/terminal", "/push/all", "/push/tags", "/push/org", "/push/geo"]
QUERY_PATHS = ["/manager/query_msg_status", "/manager/query_tag_msgs", "/manager/query_tags",
               "/manager/terminal_num_with_tag", "/manager/query_timers"]
POST_ONLY_PATHS = PUSH_PATHS + ["/manager/create_tag", "/manager/del_tag", "/manager/terminal_add_tag",
                                "/manager/terminal_del_tag", "/manager/cancel_timer"]


# ---------------------------------------------------------------------------------------------------------------
# calling the REST API as an app backend

def field_text(value) -> str:
    """How SPEC §4 signs (and a form body carries) a value: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def json_sign(body: dict, secret: str) -> str:
    """The MD5 sign of a JSON body, over its top-level fields (written here independently of hipush.signing)."""
    return seed_sign([(name, field_text(value)) for name, value in body.items()], secret)


def as_pairs(params) -> list:
    return list(params.items()) if isinstance(params, dict) else list(params)


class Rest:
    """One app's backend calling the REST API."""

    def __init__(self, api: Api, app: dict):
        self.api, self.app, self.http = api, app, api.http
        self.unsettled = []  # msg_ids of immediate pushes not yet seen fanned out

    def settle(self, msg_ids=()):
        """Waits until every immediate push made so far (and `msg_ids`) has been fanned out to its clients:
        a push call answers before that, so a later push could otherwise be queued first."""
        pending = set(self.unsettled) | set(msg_ids)

        def all_sent():
            pending.difference_update([m for m in pending if msg_status(self, m)["status"] not in (WAITING, SENDING)])
            return not pending

        wait_for(all_sent, timeout=15, interval=0.05, message=f"pushes {sorted(pending)} to be sent")
        self.unsettled.clear()

    def call(self, path, params=(), how="form", method="POST", auth=None):
        """how: "form" (MD5-signed form body, or signed query string for GET), "json" (JSON body signed over its
        top-level fields), "basic" (unsigned, HTTP Basic app_key:app_secret; `auth` overrides the pair),
        "raw" (the parameters exactly as given, nothing added)."""
        url = self.api.base + path
        pairs = as_pairs(params)
        if how == "json":
            body = {"app_key": self.app["app_key"], **dict(pairs)}
            body["sign"] = json_sign(body, self.app["app_secret"])
            return self.http.request(method, url, json=body, timeout=60)
        pairs = [(name, field_text(value)) for name, value in pairs]
        if how == "form":
            pairs = [("app_key", self.app["app_key"])] + pairs
            pairs.append(("sign", seed_sign(pairs, self.app["app_secret"])))
        kwargs = {"auth": auth or (self.app["app_key"], self.app["app_secret"])} if how == "basic" else {}
        where = "params" if method == "GET" else "data"
        return self.http.request(method, url, timeout=60, **{where: pairs}, **kwargs)

    def ok(self, path, params=(), **kwargs) -> dict:
        response = self.call(path, params, **kwargs)
        assert response.status_code == 200, (path, short(params), response.status_code, response.text[:300])
        body = response.json()
        assert body["status"] == 1 and "error_code" not in body, body
        if path in PUSH_PATHS and not dict(as_pairs(params)).get("push_time"):
            self.unsettled.append(body["msg_id"])
        return body

    def error(self, path, params=(), **kwargs) -> tuple:
        """(http status, error code) of a failing call, whose body must be the REST error envelope."""
        response = self.call(path, params, **kwargs)
        return error_of(response)


def error_of(response) -> tuple:
    try:
        body = response.json()
    except ValueError:
        return response.status_code, f"not JSON: {response.text[:80]!r}"
    if set(body) != {"status", "error_code", "error"} or body["status"] != 0 \
            or not isinstance(body["error"], str) or not body["error"]:
        return response.status_code, f"not the REST error envelope: {body}"
    return response.status_code, body["error_code"]


def short(params) -> str:
    """Request parameters for a failure message, long values abbreviated."""
    text = "&".join(f"{k}={field_text(v)}" for k, v in as_pairs(params))
    return text if len(text) <= 160 else text[:150] + f"...({len(text)} chars)"


def assert_errors(rest, cases, **kwargs):
    """Each (path, params, expected) case is answered exactly `expected`; reports every case that is not."""
    wrong = []
    for path, params, expected in cases:
        got = rest.error(path, params, **kwargs)
        if got != expected:
            wrong.append(f"{kwargs or ''} {path}?{short(params)}: got {got}, expected {expected}")
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------------------------------------------
# clients, pushes, what arrives, counters

def new_client(api, app, **fields) -> dict:
    return api.register(app, "dev-" + uuid.uuid4().hex, **fields)


def ids_of(*clients) -> str:
    return ",".join(c["client_id"] for c in clients)


def push(rest, clients, msg, msg_type=0, **extra) -> int:
    return rest.ok("/push/terminal", {"terminal_ids": ids_of(*clients), "msg_type": msg_type, "msg": msg,
                                      **extra})["msg_id"]


def deliveries(api, rest, client, marker_after=None, settled=(), timeout=20) -> list:
    """Every message handed to `client` (duplicates kept, each acknowledged) before a marker pushed to it once the
    clock passes `marker_after` (unix seconds; None: at once) and the pushes made so far (and the timers `settled`)
    are sent. Each message gets the local time it arrived."""
    marker = "marker-" + uuid.uuid4().hex
    marker_after = marker_after or 0
    got, ack, marker_sent = [], None, False
    deadline = time.monotonic() + timeout + max(0.0, marker_after - time.time())
    while True:
        if not marker_sent and time.time() >= marker_after:
            rest.settle(settled)
            push(rest, [client], marker)
            marker_sent = True
        assert time.monotonic() < deadline, f"the marker never arrived; got {got}"
        for message in api.poll(client, ack=ack, timeout=1):
            ack = message["id"]
            if message["content"] == marker:
                api.poll(client, ack=ack, timeout=0)
                return got
            got.append({**message, "received_at": time.time()})


def bag(items) -> list:
    """Items in a fixed order (by their JSON text), to compare what arrived from separate pushes as a multiset:
    the order of separate pushes is the subject of one test, test_pushes_to_a_client_arrive_in_publish_order."""
    return sorted(items, key=field_text)


def contents(api, rest, client, **kwargs) -> list:
    """The contents `deliveries` finds, as a bag (duplicates kept)."""
    return bag(m["content"] for m in deliveries(api, rest, client, **kwargs))


STATUS_FIELDS = {"msg_id", "status", "send_time", "target_num", "sent_num", "arrived_num"}
PUSH_ROW_FIELDS = {"msg_id", "msg", "msg_type", "status", "send_time"}  # query_tag_msgs and query_timers
TAG_FIELDS = {"id", "tag", "info", "create_time"}


def msg_status(rest, msg_id) -> dict:
    body = rest.ok("/manager/query_msg_status", {"msg_id": msg_id})
    assert body["total_num"] == len(body["data"]) == 1, body
    status = body["data"][0]
    assert STATUS_FIELDS <= set(status) and status["msg_id"] == msg_id, status
    return status


def eventually(read, expected: dict, what: str, timeout=15.0) -> dict:
    """Reads until the fields of `expected` match; fails naming what was last seen."""
    last = {}

    def matches():
        last.clear()
        last.update(read())
        return all(last.get(name) == value for name, value in expected.items())

    try:
        wait_for(matches, timeout=timeout, interval=0.1)
    except AssertionError:
        raise AssertionError(f"{what} never showed {expected}; last seen {last}") from None
    return dict(last)


def wait_status(rest, msg_id, **expected) -> dict:
    return eventually(lambda: msg_status(rest, msg_id), expected, f"message {msg_id}")


def as_unix(text) -> float:
    """A time as the REST API shows it (the formats push_time accepts; the server's zone is UTC here)."""
    if isinstance(text, (int, float)) or str(text).isdigit():
        return float(text)
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def utc_text(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def wait_for_clock(unix: float, what: str):
    """Waits until the wall clock (the server's too: same machine) passes `unix`."""
    wait_for(lambda: time.time() > unix, timeout=max(1.0, unix - time.time() + 5), message=what)


def a_notification() -> dict:
    return {"title": "标题", "body": "正文 & more", "image": "https://example.com/i.png", "sound": "ding",
            "url": "https://example.com/?a=1&b=2", "extras": {"k": [1, 2], "n": None}}


# ---------------------------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture
def app_(server, store):
    """A fresh app for each test, registered straight in the run's records (the CLI costs seconds a test)."""
    return store.create_app("rest")


@pytest.fixture
def rest(api, app_):
    return Rest(api, app_)


@pytest.fixture(scope="module")
def foreign(server, api, store):
    """Another app's client, tag, job, sent message and pending timer: the app under test must see none of them."""
    other = store.create_app("other")
    rest = Rest(api, other)
    client = new_client(api, other)
    rest.ok("/manager/terminal_add_tag", {"tag": "foreign-tag", "terminal_ids": client["client_id"]})
    world = {"app": other, "rest": rest, "client": client, "tag": "foreign-tag", "job": api.new_job(other),
             "msg": push(rest, [client], "foreign"),
             "timer": push(rest, [client], "foreign timer", push_time=int(time.time()) + 3600)}
    assert contents(api, rest, client) == ["foreign"]  # an empty inbox: tests check that nothing else comes
    return world


def make_world(api, rest) -> dict:
    """A client with an org and a location, in tag "t", and a timer pending for it: enough for every call."""
    client = new_client(api, rest.app, org="acme", lat=BEIJING[0], lng=BEIJING[1])
    rest.ok("/manager/terminal_add_tag", {"tag": "t", "terminal_ids": client["client_id"]})
    return {"client": client, "timer": push(rest, [client], "later", push_time=int(time.time()) + 3600)}


def valid_calls(world) -> dict:
    """A valid call of every REST path (non-string values, to exercise the JSON signature); destructive ones last."""
    cid = world["client"]["client_id"]
    return {
        "/push/terminal": {"terminal_ids": cid, "msg_type": 1, "msg": {"title": "t", "body": "b"}},
        "/push/all": {"msg_type": 0, "msg": "to all", "expires_time": 600},
        "/push/tags": {"tags": "t", "msg_type": 0, "msg": "to t"},
        "/push/org": {"orgs": "acme", "terminal_types": "web,android", "msg_type": 0, "msg": "to acme"},
        "/push/geo": {"lat": BEIJING[0], "lng": BEIJING[1], "radius": 1000, "msg_type": 0, "msg": "near"},
        "/manager/query_msg_status": {"msg_id": world["timer"]},
        "/manager/query_tag_msgs": {"tag": "t", "start": 0, "limit": 10},
        "/manager/query_tags": {"start": 0, "limit": 10},
        "/manager/query_timers": {"start": 0, "limit": 10},
        "/manager/create_tag": {"tag": "t2", "info": "second"},
        "/manager/terminal_num_with_tag": {"tag": "t"},
        "/manager/terminal_add_tag": {"tag": "t2", "terminal_ids": cid},
        "/manager/terminal_del_tag": {"tag": "t2", "terminal_ids": cid},
        "/manager/del_tag": {"tag": "t2"},
        "/manager/cancel_timer": {"msg_id": world["timer"]},
    }


# ---------------------------------------------------------------------------------------------------------------
# authentication, methods, envelopes

@pytest.mark.parametrize("how", ["form", "json", "basic"])
def test_every_call_succeeds_signed_as_form_or_json_or_by_basic_auth(api, rest, how):
    world = make_world(api, rest)
    answers = {path: rest.ok(path, params, how=how) for path, params in valid_calls(world).items()}
    for path in PUSH_PATHS:
        assert isinstance(answers[path]["msg_id"], int), answers[path]
    assert answers["/manager/terminal_num_with_tag"]["num"] == 1
    assert [t["tag"] for t in answers["/manager/query_tags"]["data"]] == ["t"]
    assert [t["msg_id"] for t in answers["/manager/query_timers"]["data"]] == [world["timer"]]
    assert msg_status(rest, world["timer"])["status"] == CANCELLED
    got = contents(api, rest, world["client"])
    assert got == bag([{"title": "t", "body": "b"}, "to all", "to t", "to acme", "near"])


@pytest.mark.parametrize("how", ["form", "basic"])
def test_query_calls_also_answer_get(api, rest, how):
    world = make_world(api, rest)
    calls = valid_calls(world)
    for path in QUERY_PATHS:
        body = rest.ok(path, calls[path], how=how, method="GET")
        assert body["status"] == 1
    assert rest.ok("/manager/terminal_num_with_tag", {"tag": "t"}, how=how, method="GET")["num"] == 1


def test_a_json_body_is_signed_over_its_top_level_fields(api, rest, app_):
    client = new_client(api, app_)
    notification = {"title": "标题", "body": "b"}
    body = {"msg_type": 1, "msg": notification, "terminal_ids": client["client_id"], "app_key": app_["app_key"],
            "expires_time": 600}
    canonical = (f'app_key={app_["app_key"]}&expires_time=600&msg={{"body":"b","title":"标题"}}&msg_type=1'
                 f'&terminal_ids={client["client_id"]}')
    sign = hashlib.md5((canonical + app_["app_secret"]).encode()).hexdigest()
    response = api.http.post(api.base + "/push/terminal", json={**body, "sign": sign}, timeout=30)
    assert response.status_code == 200 and response.json()["status"] == 1, response.text
    [message] = deliveries(api, rest, client)
    assert message["msg_type"] == 1 and message["content"] == notification

    # the same body signed over other texts of its values is refused, and sends nothing
    for wrong in (f'app_key={app_["app_key"]}&expires_time=600&msg={json.dumps(notification)}&msg_type=1'
                  f'&terminal_ids={client["client_id"]}',  # spaces, ASCII escapes, keys unsorted
                  canonical.replace("expires_time=600&", "")):  # a field left out
        sign = hashlib.md5((wrong + app_["app_secret"]).encode()).hexdigest()
        response = api.http.post(api.base + "/push/terminal", json={**body, "sign": sign}, timeout=30)
        assert error_of(response) == AUTH_FAILED
    assert deliveries(api, rest, client) == []


def test_malformed_json_bodies_are_bad_parameters(api, rest, app_):
    auth = (app_["app_key"], app_["app_secret"])
    for raw in (b"{not json", b'["a", "list"]', b'"text"', '{"msg": "\udcff"}'.encode("utf-8", "surrogatepass"),
                # valid JSON, but an escaped lone surrogate is no UTF-8 text (it answered 500)
                b'{"msg_type": 0, "msg": "\\ud800"}', b'{"msg_type": 0, "msg": "x", "\\udc00": "y"}',
                b'{"msg_type": 1, "msg": "{\\"title\\": \\"\\\\ud800\\"}"}'):
        response = api.http.post(api.base + "/push/all", data=raw, auth=auth,
                                 headers={"Content-Type": "application/json"}, timeout=30)
        assert error_of(response) == BAD_PARAM, raw


def test_json_bodies_nested_too_deep_or_naming_a_field_twice_are_bad_parameters(api, rest, app_):
    """Refused before any other check (a body 1,000 deep answered 500, unauthenticated), and a repeated name is
    refused at any depth, as a parameter given twice is (the last one won)."""
    client = new_client(api, app_)
    headers = {"Content-Type": "application/json"}
    deep = '{"msg": ' + "[" * 1000 + "]" * 1000 + "}"
    for path in PUSH_PATHS + QUERY_PATHS:
        response = api.http.post(api.base + path, data=deep, headers=headers, timeout=30)
        assert error_of(response) == BAD_PARAM, (path, response.text[:200])
    cid = json.dumps(client["client_id"])
    for raw in (deep,
                f'{{"terminal_ids": {cid}, "msg_type": 0, "msg": "first", "msg": "second"}}',
                f'{{"terminal_ids": {cid}, "msg_type": 1, "msg": {{"title": "first", "title": "second"}}}}'):
        response = api.http.post(api.base + "/push/terminal", data=raw, headers=headers,
                                 auth=(app_["app_key"], app_["app_secret"]), timeout=30)
        assert error_of(response) == BAD_PARAM, raw[:80]
    assert deliveries(api, rest, client) == []


def test_a_chunked_body_over_64_kb_is_too_large_and_sends_nothing(api, rest, app_):
    """Without a Content-Length, the body was cut at 64 KB and the push it began with was sent (200)."""
    client = new_client(api, app_)
    body = urlencode({"terminal_ids": client["client_id"], "msg_type": 0, "msg": "cut at 64 KB", "pad": ""})
    basic = base64.b64encode(f"{app_['app_key']}:{app_['app_secret']}".encode()).decode()
    status, answer = post_chunked(api.base, "/push/terminal", body.encode() + b"p" * (1024 * 1024),
                                  {"Authorization": "Basic " + basic})
    assert (status, answer["error_code"]) == TOO_LARGE, answer
    assert deliveries(api, rest, client) == []


def test_an_authorization_header_that_is_not_ascii_is_no_credentials(api, rest):
    """401 like any undecodable Basic header (Werkzeug's base64 decoding raised on it: 500)."""
    for header in (b"Basic \xff\xfe", "Basic é".encode("utf-8")):
        response = api.http.post(api.base + "/push/all", data={"msg_type": 0, "msg": "x"},
                                 headers={"Authorization": header}, timeout=30)
        assert error_of(response) == AUTH_FAILED, header


def auth_failures(app, other_app) -> dict:
    """Ways to call with the right parameters but a wrong identity: name -> call(rest, path, params)."""
    def form(app_key, secret=None, signed_extra=()):
        """A form body with this app_key (None: none), signed with `secret` (None: unsigned) over its own
        parameters plus `signed_extra`, which are not sent."""
        def call(rest, path, params):
            pairs = ([("app_key", app_key)] if app_key else []) + [(k, field_text(v)) for k, v in as_pairs(params)]
            if secret is not None:
                pairs.append(("sign", seed_sign(pairs + list(signed_extra), secret)))
            return rest.call(path, pairs, how="raw")
        return call

    def json_signed_with(secret):
        def call(rest, path, params):
            body = {"app_key": app["app_key"], **params}
            return rest.http.post(rest.api.base + path, json={**body, "sign": json_sign(body, secret)}, timeout=30)
        return call

    def basic(app_key, secret):
        return lambda rest, path, params: rest.call(path, params, how="basic", auth=(app_key, secret))

    def right_basic_and(*extra, signed=False):
        """The right HTTP Basic pair with parameters that disagree with it: `extra` pairs, and with
        signed=True app_key plus its right MD5 sign (one credential per call: refused as well)."""
        def call(rest, path, params):
            pairs = [(k, field_text(v)) for k, v in as_pairs(params)] + list(extra)
            if signed:
                pairs = [("app_key", app["app_key"])] + pairs
                pairs.append(("sign", seed_sign(pairs, app["app_secret"])))
            return rest.call(path, pairs, how="basic")
        return call

    return {
        "missing sign": form(app["app_key"]),
        "wrong sign": form(app["app_key"], "not-the-secret"),
        "another app's secret": form(app["app_key"], other_app["app_secret"]),
        "sign of other values": form(app["app_key"], app["app_secret"], signed_extra=[("extra", "1")]),
        "unknown app_key": form(UNKNOWN_APP["app_key"], UNKNOWN_APP["app_secret"]),
        "missing app_key": form(None, app["app_secret"]),
        "json, wrong sign": json_signed_with("not-the-secret"),
        "basic, wrong secret": basic(app["app_key"], "not-the-secret"),
        "basic, another app's secret": basic(app["app_key"], other_app["app_secret"]),
        "basic, unknown app_key": basic(UNKNOWN_APP["app_key"], UNKNOWN_APP["app_secret"]),
        "basic with a wrong sign": right_basic_and(("sign", "0" * 32)),
        "basic with a malformed sign_method": right_basic_and(("sign_method", "sha1")),
        "basic with another app's app_key": right_basic_and(("app_key", other_app["app_key"])),
        "basic with another app's appkey": right_basic_and(("appkey", other_app["app_key"])),
        "basic with a right sign too": right_basic_and(signed=True),
    }


def test_bad_authentication_is_refused_on_every_call_and_changes_nothing(api, rest, app_, foreign):
    world = make_world(api, rest)
    wrong = []
    for failure, call in auth_failures(app_, foreign["app"]).items():
        for path, params in valid_calls(world).items():
            got = error_of(call(rest, path, params))
            if got != AUTH_FAILED:
                wrong.append(f"{failure}: {path} answered {got}")
    assert not wrong, "\n".join(wrong)
    # nothing pushed, no tag made or changed, the timer still pending
    assert contents(api, rest, world["client"]) == []
    assert [t["tag"] for t in rest.ok("/manager/query_tags")["data"]] == ["t"]
    assert rest.ok("/manager/terminal_num_with_tag", {"tag": "t"})["num"] == 1
    assert [t["msg_id"] for t in rest.ok("/manager/query_timers")["data"]] == [world["timer"]]


def test_basic_auth_may_name_its_own_app_key(api, rest, app_):
    assert rest.ok("/manager/query_tags", {"app_key": app_["app_key"]}, how="basic")["status"] == 1


def test_wrong_methods_are_refused_with_the_rest_envelope(api, rest):
    world = make_world(api, rest)
    calls = valid_calls(world)
    cases = [(path, method) for path in POST_ONLY_PATHS for method in ("GET", "PUT", "DELETE", "PATCH")]
    cases += [(path, method) for path in QUERY_PATHS for method in ("PUT", "DELETE", "PATCH")]
    wrong = []
    for path, method in cases:
        for how in ("form", "basic", "raw"):  # the method is checked before authentication
            got = rest.error(path, calls[path], how=how, method=method)
            if got != NOT_ALLOWED:
                wrong.append(f"{method} {path} ({how}): got {got}")
    assert not wrong, "\n".join(wrong)
    assert contents(api, rest, world["client"]) == []
    assert rest.ok("/manager/terminal_num_with_tag", {"tag": "t"})["num"] == 1
    assert rest.ok("/manager/query_timers")["total_num"] == 1


def test_an_unknown_rest_path_answers_404_in_the_rest_envelope(rest):
    assert rest.error("/push/nowhere", {"msg_type": 0, "msg": "x"}) == NOT_FOUND
    assert rest.error("/manager/nothing", {}) == NOT_FOUND


def test_checks_run_in_spec_order(api, rest, app_, foreign):
    """method, then authentication, then sizes and counts, then formats, then lookups (SPEC §6)."""
    client = new_client(api, app_)
    too_long = "x" * 4097
    bad_auth = auth_failures(app_, foreign["app"])["wrong sign"]
    assert rest.error("/push/terminal", {"terminal_ids": client["client_id"], "msg_type": 0, "msg": too_long},
                      how="raw", method="GET") == NOT_ALLOWED
    assert error_of(bad_auth(rest, "/push/terminal", {"terminal_ids": client["client_id"], "msg_type": 9,
                                                      "msg": too_long})) == AUTH_FAILED
    assert rest.error("/push/terminal", {"terminal_ids": client["client_id"], "msg_type": 9,
                                         "msg": too_long}) == TOO_LARGE
    assert rest.error("/push/terminal", {"terminal_ids": ",".join(["bad-id"] * 1001), "msg_type": 0,
                                         "msg": "x"}) == BAD_PARAM
    assert rest.error("/push/terminal", {"terminal_ids": foreign["client"]["client_id"], "msg_type": 9,
                                         "msg": "x"}) == BAD_PARAM
    assert rest.error("/push/terminal", {"terminal_ids": foreign["client"]["client_id"], "msg_type": 0,
                                         "msg": "x"}) == NOT_FOUND
    assert contents(api, rest, client) == []


# ---------------------------------------------------------------------------------------------------------------
# bad input: each push path

def random_ids(n) -> str:
    """n well-formed client ids that were never issued."""
    return ",".join(uuid.uuid4().hex for _ in range(n))


def bad_message_cases(foreign) -> list:
    """(params to add to a valid push, expected): what every push path must refuse about the message itself."""
    past = int(time.time()) - 3600
    return [
        ({"msg": None}, BAD_PARAM),
        ({"msg": ""}, BAD_PARAM),
        ({"msg": "x" * 4097}, TOO_LARGE),
        ({"msg": "é" * 2049}, TOO_LARGE),  # 4098 bytes in 2049 characters
        ({"msg_type": None}, BAD_PARAM),
        ({"msg_type": ""}, BAD_PARAM),
        ({"msg_type": "2"}, BAD_PARAM),
        ({"msg_type": "-1"}, BAD_PARAM),
        ({"msg_type": "notification"}, BAD_PARAM),
        ({"msg_type": "1", "msg": '{"title": 5}'}, BAD_PARAM),
        ({"msg_type": "1", "msg": '{"colour": "red"}'}, BAD_PARAM),
        ({"msg_type": "1", "msg": '{"title": "t"'}, BAD_PARAM),
        ({"msg_type": "1", "msg": '{"extras": "not an object"}'}, BAD_PARAM),
        ({"msg_type": "1", "msg": '{"title": "t", "url": ["a"]}'}, BAD_PARAM),
        ({"msg_type": "1", "msg": '{"title": "a", "title": "b"}'}, BAD_PARAM),
        ({"msg_type": "1", "msg": '{"extras": {"k": {"a": 1, "a": 2}}}'}, BAD_PARAM),
        ({"msg_type": "1", "msg": '{"extras": {"k": ' + "[" * 2000 + "]" * 2000 + "}}"}, BAD_PARAM),
        ({"expires_time": "0"}, BAD_PARAM),
        ({"expires_time": str(MAX_EXPIRES + 1)}, BAD_PARAM),
        ({"expires_time": "-5"}, BAD_PARAM),
        ({"expires_time": "soon"}, BAD_PARAM),
        ({"push_time": "tomorrow"}, BAD_PARAM),
        ({"push_time": "2030-13-01 00:00:00"}, BAD_PARAM),
        ({"push_time": str(past)}, BAD_PARAM),
        ({"push_time": utc_text(past)}, BAD_PARAM),
        ({"push_time": datetime.fromtimestamp(past, timezone(timedelta(hours=8))).isoformat()}, BAD_PARAM),
        ({"job_id": "abc"}, BAD_PARAM),
        ({"job_id": MISSING_ID}, NOT_FOUND),
        ({"job_id": str(foreign["job"])}, NOT_FOUND),
    ]


def bad_target_cases(path, foreign) -> list:
    cases = {
        "/push/terminal": [
            ({"terminal_ids": None}, BAD_PARAM),
            ({"terminal_ids": ""}, BAD_PARAM),
            ({"terminal_ids": "xyz"}, BAD_PARAM),
            ({"terminal_ids": "0" * 31}, BAD_PARAM),
            ({"terminal_ids": random_ids(1001)}, BAD_PARAM),
            ({"terminal_ids": random_ids(1000)}, NOT_FOUND),  # 1000 is allowed; none of these exists
            ({"terminal_ids": random_ids(1)}, NOT_FOUND),
            ({"terminal_ids": foreign["client"]["client_id"]}, NOT_FOUND),
        ],
        "/push/all": [],
        "/push/tags": [
            ({"tags": None}, BAD_PARAM),
            ({"tags": ""}, BAD_PARAM),
            ({"tags": "bad tag"}, BAD_PARAM),
            ({"tags": "t,tag/slash"}, BAD_PARAM),
            ({"tags": "a" * 65}, TOO_LARGE),
            ({"tags": "no-such-tag"}, NOT_FOUND),
            ({"tags": "t,no-such-tag"}, NOT_FOUND),
            ({"tags": foreign["tag"]}, NOT_FOUND),
        ],
        "/push/org": [
            ({"orgs": None}, BAD_PARAM),
            ({"orgs": ""}, BAD_PARAM),
            ({"terminal_types": "pager"}, BAD_PARAM),
            ({"terminal_types": "web,WEB"}, BAD_PARAM),
        ],
        "/push/geo": [
            ({"lat": None}, BAD_PARAM),
            ({"lng": None}, BAD_PARAM),
            ({"radius": None}, BAD_PARAM),
            ({"lat": "91"}, BAD_PARAM),
            ({"lat": "north"}, BAD_PARAM),
            ({"lat": "nan"}, BAD_PARAM),
            ({"lng": "-181"}, BAD_PARAM),
            ({"radius": "0"}, BAD_PARAM),
            ({"radius": "-10"}, BAD_PARAM),
            ({"radius": "far"}, BAD_PARAM),
        ],
    }
    return cases[path]


@pytest.mark.parametrize("path", PUSH_PATHS)
def test_push_refuses_bad_input_and_sends_nothing(api, rest, foreign, path):
    world = make_world(api, rest)
    valid = {k: field_text(v) for k, v in valid_calls(world)[path].items()}
    cases = []
    for change, expected in bad_message_cases(foreign) + bad_target_cases(path, foreign):
        params = {k: v for k, v in {**valid, **change}.items() if v is not None}
        cases.append((path, params, expected))
    cases.append((path, list(valid.items()) + [("msg", "twice")], BAD_PARAM))  # a parameter given twice
    assert_errors(rest, cases)
    assert_errors(rest, cases[:6], how="basic")
    assert deliveries(api, rest, world["client"]) == []
    # the largest legal message, and the expiry bounds, pass
    rest.ok(path, {**valid, "msg": "é" * 2048})
    rest.ok(path, {**valid, "msg": "x", "expires_time": str(MAX_EXPIRES)})
    rest.ok(path, {**valid, "msg": "y", "expires_time": "1"})
    assert contents(api, rest, world["client"]) in (bag(["é" * 2048, "x"]), bag(["é" * 2048, "x", "y"])), \
        "y may have expired before the poll, nothing else"


# ---------------------------------------------------------------------------------------------------------------
# bad input: the manager calls

def test_manager_calls_refuse_bad_input_and_change_nothing(api, rest, app_, foreign):
    world = make_world(api, rest)
    cid = world["client"]["client_id"]
    other = new_client(api, app_)
    cases = [
        ("/manager/query_msg_status", {}, BAD_PARAM),
        ("/manager/query_msg_status", {"msg_id": "abc"}, BAD_PARAM),
        ("/manager/query_msg_status", {"msg_id": "-1"}, BAD_PARAM),
        ("/manager/query_msg_status", {"msg_id": MISSING_ID}, NOT_FOUND),
        ("/manager/query_msg_status", {"msg_id": foreign["msg"]}, NOT_FOUND),
        ("/manager/query_tag_msgs", {}, BAD_PARAM),
        ("/manager/query_tag_msgs", {"tag": "bad tag"}, BAD_PARAM),
        ("/manager/query_tag_msgs", {"tag": "a" * 65}, TOO_LARGE),
        ("/manager/query_tag_msgs", {"tag": "no-such-tag"}, NOT_FOUND),
        ("/manager/query_tag_msgs", {"tag": foreign["tag"]}, NOT_FOUND),
        ("/manager/query_tag_msgs", {"tag": "t", "range_start": "yesterday"}, BAD_PARAM),
        ("/manager/query_tag_msgs", {"tag": "t", "range_end": "2030-02-30 00:00:00"}, BAD_PARAM),
        ("/manager/query_tag_msgs", {"tag": "t", "start": "-1"}, BAD_PARAM),
        ("/manager/query_tag_msgs", {"tag": "t", "limit": "0"}, BAD_PARAM),
        ("/manager/query_tag_msgs", {"tag": "t", "limit": "many"}, BAD_PARAM),
        ("/manager/query_tags", {"start": "x"}, BAD_PARAM),
        ("/manager/query_tags", {"start": "-1"}, BAD_PARAM),
        ("/manager/query_tags", {"limit": "0"}, BAD_PARAM),
        ("/manager/query_timers", {"start": "x"}, BAD_PARAM),
        ("/manager/query_timers", {"limit": "-3"}, BAD_PARAM),
        ("/manager/create_tag", {}, BAD_PARAM),
        ("/manager/create_tag", {"tag": ""}, BAD_PARAM),
        ("/manager/create_tag", {"tag": "bad tag"}, BAD_PARAM),
        ("/manager/create_tag", {"tag": "bad,tag"}, BAD_PARAM),
        ("/manager/create_tag", {"tag": "标签"}, BAD_PARAM),
        ("/manager/create_tag", {"tag": "a" * 65}, TOO_LARGE),
        ("/manager/create_tag", {"tag": "fine", "info": "i" * 4097}, TOO_LARGE),
        ("/manager/create_tag", [("tag", "fine"), ("tag", "fine2")], BAD_PARAM),
        ("/manager/del_tag", {}, BAD_PARAM),
        ("/manager/del_tag", {"tag": "bad tag"}, BAD_PARAM),
        ("/manager/del_tag", {"tag": "no-such-tag"}, NOT_FOUND),
        ("/manager/del_tag", {"tag": foreign["tag"]}, NOT_FOUND),
        ("/manager/terminal_num_with_tag", {}, BAD_PARAM),
        ("/manager/terminal_num_with_tag", {"tag": "no-such-tag"}, NOT_FOUND),
        ("/manager/terminal_num_with_tag", {"tag": foreign["tag"]}, NOT_FOUND),
        ("/manager/cancel_timer", {}, BAD_PARAM),
        ("/manager/cancel_timer", {"msg_id": "abc"}, BAD_PARAM),
        ("/manager/cancel_timer", {"msg_id": MISSING_ID}, NOT_FOUND),
        ("/manager/cancel_timer", {"msg_id": foreign["timer"]}, NOT_FOUND),
        ("/manager/cancel_timer", {"msg_id": foreign["msg"]}, NOT_FOUND),
    ]
    for path in ("/manager/terminal_add_tag", "/manager/terminal_del_tag"):
        cases += [
            (path, {"terminal_ids": cid}, BAD_PARAM),
            (path, {"tag": "t"}, BAD_PARAM),
            (path, {"tag": "t", "terminal_ids": ""}, BAD_PARAM),
            (path, {"tag": "bad tag", "terminal_ids": cid}, BAD_PARAM),
            (path, {"tag": "a" * 65, "terminal_ids": cid}, TOO_LARGE),
            (path, {"tag": "t", "terminal_ids": "xyz"}, BAD_PARAM),
            (path, {"tag": "t", "terminal_ids": random_ids(1001)}, BAD_PARAM),
            (path, {"tag": "t", "terminal_ids": random_ids(1000)}, NOT_FOUND),
            # one bad id among good ones (the member, a non-member): refused whole
            (path, {"tag": "t", "terminal_ids": f"{cid},{other['client_id']},{random_ids(1)}"}, NOT_FOUND),
            (path, {"tag": "t", "terminal_ids": f"{cid},{other['client_id']},{foreign['client']['client_id']}"},
             NOT_FOUND),
        ]
    cases.append(("/manager/terminal_del_tag", {"tag": "no-such-tag", "terminal_ids": cid}, NOT_FOUND))
    assert_errors(rest, cases)
    assert_errors(rest, [c for c in cases if c[0] in QUERY_PATHS], method="GET")

    # nothing changed: one tag with one member, the timer pending, the other app's timer too
    assert [t["tag"] for t in rest.ok("/manager/query_tags")["data"]] == ["t"]
    assert rest.ok("/manager/terminal_num_with_tag", {"tag": "t"})["num"] == 1
    assert msg_status(rest, world["timer"])["status"] == WAITING
    assert msg_status(foreign["rest"], foreign["timer"])["status"] == WAITING
    assert foreign["rest"].ok("/manager/terminal_num_with_tag", {"tag": foreign["tag"]})["num"] == 1


def test_an_overlong_query_string_is_too_large(rest):
    assert rest.error("/manager/query_tags", {"pad": "p" * 17000}, method="GET") == TOO_LARGE


# ---------------------------------------------------------------------------------------------------------------
# pushes, checked at the clients

def test_push_terminal_delivers_text_and_notifications(api, rest, app_, foreign):
    a, b = new_client(api, app_), new_client(api, app_, terminal_type="android")
    bystander = new_client(api, app_)
    job = api.new_job(app_)
    text = push(rest, [a, b, a], "plain & simple", job_id=job)  # a listed twice: gets it once
    note = push(rest, [a, b], json.dumps(a_notification()), msg_type=1)
    note_text = push(rest, [a], "a notification in plain text", msg_type=1)
    assert len({text, note, note_text}) == 3
    text_0 = ("plain & simple", 0, job)  # (content, msg_type, job_id) as the client sees them
    notification_1 = (a_notification(), 1, None)  # the JSON object it was sent as
    text_1 = ("a notification in plain text", 1, None)
    for client, expected in ((a, [text_0, notification_1, text_1]), (b, [text_0, notification_1])):
        got = deliveries(api, rest, client)
        assert bag((m["content"], m["msg_type"], m["job_id"]) for m in got) == bag(expected)
        assert all(isinstance(m["id"], int) and isinstance(m["ts"], int) for m in got), got
    assert deliveries(api, rest, bystander) == []
    assert deliveries(api, foreign["rest"], foreign["client"]) == []
    eventually(lambda: api.stats(app_, job), {"sent": 2, "arrived": 2}, f"job {job}")
    # one unknown id among good ones: 404, and the good ones get nothing
    assert rest.error("/push/terminal", {"terminal_ids": f"{ids_of(a, b)},{random_ids(1)}", "msg_type": 0,
                                         "msg": "never"}) == NOT_FOUND
    assert deliveries(api, rest, a) == [] and deliveries(api, rest, b) == []


def add_silent_clients(store, app, n):
    """n clients of the app that never poll, written straight into the records (registering them over HTTP
    would take seconds): they make a push to all slower to fan out. Their ids sort first ("00..."), as a push to
    all goes through clients in id order."""
    app_id = store.get_app(app["app_key"])["id"]
    rows = [{"client_id": "00" + uuid.uuid4().hex[2:], "app_id": app_id, "device_id": f"silent-{i}", "terminal_type": "web",
             "created_at": int(time.time() * 1000)} for i in range(n)]
    with store.engine.begin() as conn:
        conn.execute(db.clients.insert(), rows)


def test_pushes_to_a_client_arrive_in_publish_order(api, rest, app_, store):
    """SPEC §5: delivery is in publish order per client. Each push call answers before its push is fanned out,
    so a push to the client alone must not overtake an earlier push to all (slower: 3000 other clients first)."""
    client = new_client(api, app_)
    add_silent_clients(store, app_, 3000)
    sent = []
    for i in range(20):
        text = f"message {i}"
        if i % 2:
            push(rest, [client], text)
        else:
            rest.ok("/push/all", {"msg_type": 0, "msg": text})
        sent.append(text)
    got = [m["content"] for m in api.receive(client, len(sent), timeout=60)]
    assert got == sent


def test_push_all_reaches_every_client_of_the_app_only(api, rest, app_, foreign):
    clients = [new_client(api, app_), new_client(api, app_, terminal_type="android"),
               new_client(api, app_, org="acme")]
    msg_id = rest.ok("/push/all", {"msg_type": 1, "msg": a_notification()}, how="json")["msg_id"]
    for client in clients:
        assert contents(api, rest, client) == [a_notification()]
    assert deliveries(api, foreign["rest"], foreign["client"]) == []
    wait_status(rest, msg_id, status=SENT, target_num=3, sent_num=3, arrived_num=3)


def test_push_tags_is_a_union_each_client_once(api, rest, app_):
    only1, both, only2, neither = (new_client(api, app_) for _ in range(4))
    rest.ok("/manager/create_tag", {"tag": "t1"})
    rest.ok("/manager/create_tag", {"tag": "t2"}, how="basic")
    rest.ok("/manager/terminal_add_tag", {"tag": "t1", "terminal_ids": ids_of(only1, both)})
    rest.ok("/manager/terminal_add_tag", {"tag": "t2", "terminal_ids": ids_of(both, only2)})
    msg_id = rest.ok("/push/tags", {"tags": "t1,t2", "msg_type": 0, "msg": "to t1 or t2"})["msg_id"]
    for client in (only1, both, only2):
        got = deliveries(api, rest, client)
        assert [m["content"] for m in got] == ["to t1 or t2"], got
    assert deliveries(api, rest, neither) == []
    wait_status(rest, msg_id, status=SENT, target_num=3, sent_num=3, arrived_num=3)


def test_push_org_by_orgs_and_terminal_types(api, rest, app_):
    clients = {"acme-web": new_client(api, app_, org="acme"),
               "acme-android": new_client(api, app_, org="acme", terminal_type="android"),
               "globex-web": new_client(api, app_, org="globex"),
               "initech-web": new_client(api, app_, org="initech", terminal_type="web")}
    pushes = [({"orgs": "acme"}, {"acme-web", "acme-android"}),
              ({"orgs": "acme,globex", "terminal_types": "android"}, {"acme-android"}),
              ({"orgs": "*", "terminal_types": "web"}, {"acme-web", "globex-web", "initech-web"}),
              ({"orgs": "*"}, set(clients)),
              ({"orgs": "*", "terminal_types": "*"}, set(clients)),
              ({"orgs": "globex,initech", "terminal_types": "web,android"}, {"globex-web", "initech-web"}),
              ({"orgs": "nobody"}, set())]
    msg_ids = [rest.ok("/push/org", {**target, "msg_type": 0, "msg": f"push {i}"})["msg_id"]
               for i, (target, _) in enumerate(pushes)]
    for name, client in clients.items():
        expected = [f"push {i}" for i, (_, reached) in enumerate(pushes) if name in reached]
        assert contents(api, rest, client) == bag(expected), name
    for msg_id, (_, reached) in zip(msg_ids, pushes):
        wait_status(rest, msg_id, status=SENT, target_num=len(reached))


def test_push_geo_by_registered_and_updated_locations(api, rest, app_):
    lat, lng = BEIJING
    at_center = new_client(api, app_, lat=lat, lng=lng)
    five_km = new_client(api, app_, lat=lat + 0.045, lng=lng)
    moved_near = new_client(api, app_, lat="31.23", lng="121.47")  # Shanghai, then moves next to the centre
    assert api.ok("/user/location", {**moved_near, "lat": lat + 0.002, "lng": lng + 0.002}) == "OK"
    shanghai = new_client(api, app_, lat="31.23", lng="121.47")
    nowhere = new_client(api, app_)
    near = {"lat": lat, "lng": lng, "msg_type": 0}
    rest.ok("/push/geo", {**near, "radius": 1000, "msg": "within 1 km"})
    rest.ok("/push/geo", {**near, "radius": 10000, "msg": "within 10 km"})
    assert api.ok("/user/location", {**shanghai, "lat": lat, "lng": lng}) == "OK"
    rest.ok("/push/geo", {**near, "radius": 1000, "msg": "within 1 km again"}, how="json")
    expected = {"at_center": ["within 1 km", "within 10 km", "within 1 km again"],
                "five_km": ["within 10 km"],
                "moved_near": ["within 1 km", "within 10 km", "within 1 km again"],
                "shanghai": ["within 1 km again"], "nowhere": []}
    for name, client in [("at_center", at_center), ("five_km", five_km), ("moved_near", moved_near),
                         ("shanghai", shanghai), ("nowhere", nowhere)]:
        assert contents(api, rest, client) == bag(expected[name]), name


# ---------------------------------------------------------------------------------------------------------------
# tags

def test_tags_create_query_page_count_and_delete(api, rest, app_, foreign):
    before = time.time()
    for i in range(5):
        rest.ok("/manager/create_tag", {"tag": f"tag-{i}", "info": f"描述 {i}"})
    page = rest.ok("/manager/query_tags")
    assert page["total_num"] == 5
    assert sorted((t["tag"], t["info"]) for t in page["data"]) == [(f"tag-{i}", f"描述 {i}") for i in range(5)]
    assert len({t["id"] for t in page["data"]}) == 5
    for t in page["data"]:
        assert TAG_FIELDS <= set(t) and before - 2 <= as_unix(t["create_time"]) <= time.time() + 2, t
    pages = [rest.ok("/manager/query_tags", {"start": start, "limit": 2}) for start in (0, 2, 4, 5)]
    assert [p["total_num"] for p in pages] == [5] * 4
    assert [len(p["data"]) for p in pages] == [2, 2, 1, 0]
    assert sorted(t["tag"] for p in pages for t in p["data"]) == [f"tag-{i}" for i in range(5)]
    assert len(rest.ok("/manager/query_tags", {"limit": 1}, method="GET")["data"]) == 1

    a, b, c, d = (new_client(api, app_) for _ in range(4))
    rest.ok("/manager/terminal_add_tag", {"tag": "tag-0", "terminal_ids": ids_of(a, b, c)})
    rest.ok("/manager/terminal_add_tag", {"tag": "tag-0", "terminal_ids": ids_of(a)})  # again: still one
    assert rest.ok("/manager/terminal_num_with_tag", {"tag": "tag-0"})["num"] == 3
    rest.ok("/manager/terminal_del_tag", {"tag": "tag-0", "terminal_ids": ids_of(b)})
    assert rest.ok("/manager/terminal_num_with_tag", {"tag": "tag-0"})["num"] == 2
    # one namespace: the legacy /topic/subscribe adds to the same tag, and its own topics are tags
    api.ok("/topic/subscribe", [("client_id", d["client_id"]), ("topic", "tag-0")], app_)
    api.ok("/topic/subscribe", [("client_id", d["client_id"]), ("topic", "legacy-topic")], app_)
    assert rest.ok("/manager/terminal_num_with_tag", {"tag": "tag-0"})["num"] == 3
    assert rest.ok("/manager/terminal_num_with_tag", {"tag": "legacy-topic"})["num"] == 1
    assert "legacy-topic" in [t["tag"] for t in rest.ok("/manager/query_tags")["data"]]
    rest.ok("/push/tags", {"tags": "tag-0", "msg_type": 0, "msg": "to tag-0"})
    assert {name: contents(api, rest, client) for name, client in zip("abcd", (a, b, c, d))} == \
        {"a": ["to tag-0"], "b": [], "c": ["to tag-0"], "d": ["to tag-0"]}
    # the other app's tag of the same name is another tag
    assert foreign["rest"].error("/manager/terminal_num_with_tag", {"tag": "tag-0"}) == NOT_FOUND

    rest.ok("/manager/del_tag", {"tag": "tag-0"})
    assert rest.error("/manager/terminal_num_with_tag", {"tag": "tag-0"}) == NOT_FOUND
    assert rest.error("/manager/del_tag", {"tag": "tag-0"}) == NOT_FOUND
    assert rest.error("/push/tags", {"tags": "tag-0", "msg_type": 0, "msg": "x"}) == NOT_FOUND
    assert "tag-0" not in [t["tag"] for t in rest.ok("/manager/query_tags")["data"]]
    assert rest.ok("/manager/query_tags")["total_num"] == 5


def test_query_tag_msgs_by_time_range_and_page(api, rest, app_):
    client = new_client(api, app_)
    rest.ok("/manager/terminal_add_tag", {"tag": "news", "terminal_ids": client["client_id"]})
    rest.ok("/manager/terminal_add_tag", {"tag": "sports", "terminal_ids": client["client_id"]})
    tag_push = {"tags": "news", "msg_type": 0}
    first = rest.ok("/push/tags", {**tag_push, "msg": "first"})["msg_id"]
    boundary = math.floor(time.time()) + 1  # a whole second after the first push
    wait_for_clock(boundary + 0.05, "the next second")
    second = rest.ok("/push/tags", {**tag_push, "msg_type": 1, "msg": a_notification()}, how="json")["msg_id"]
    third = rest.ok("/push/tags", {"tags": "sports,news", "msg_type": 0, "msg": "third"})["msg_id"]
    rest.ok("/push/tags", {"tags": "sports", "msg_type": 0, "msg": "not news"})
    rest.ok("/push/all", {"msg_type": 0, "msg": "to all"})
    for msg_id in (first, second, third):
        wait_status(rest, msg_id, status=SENT)

    everything = rest.ok("/manager/query_tag_msgs", {"tag": "news"})
    assert everything["total_num"] == 3
    rows = {row["msg_id"]: row for row in everything["data"]}
    assert set(rows) == {first, second, third}
    assert (rows[first]["msg"], rows[first]["msg_type"]) == ("first", 0)
    assert (rows[second]["msg"], rows[second]["msg_type"]) == (a_notification(), 1)
    for row in rows.values():
        assert PUSH_ROW_FIELDS <= set(row), row
        assert row["status"] == SENT and abs(as_unix(row["send_time"]) - time.time()) < 30, row

    def msg_ids(**params):
        body = rest.ok("/manager/query_tag_msgs", {"tag": "news", **params})
        return body["total_num"], {row["msg_id"] for row in body["data"]}

    assert msg_ids(range_start=boundary) == (2, {second, third})
    assert msg_ids(range_start=utc_text(boundary)) == (2, {second, third})
    assert msg_ids(range_end=boundary) == (1, {first})
    assert msg_ids(range_end=utc_text(boundary)) == (1, {first})
    assert msg_ids(range_start=boundary - 3600, range_end=boundary + 3600) == (3, {first, second, third})
    assert msg_ids(range_start=boundary + 3600) == (0, set())
    pages = [msg_ids(start=start, limit=2) for start in (0, 2, 4)]
    assert [total for total, _ in pages] == [3, 3, 3]
    assert [len(ids) for _, ids in pages] == [2, 1, 0]
    assert pages[0][1] | pages[1][1] == {first, second, third}
    assert rest.ok("/manager/query_tag_msgs", {"tag": "news", "limit": 1}, method="GET")["total_num"] == 3

    # a timed push to the tag is listed as waiting, then as cancelled
    timer = rest.ok("/push/tags", {**tag_push, "msg": "later", "push_time": int(time.time()) + 3600})["msg_id"]
    listed = {row["msg_id"]: row for row in rest.ok("/manager/query_tag_msgs", {"tag": "news"})["data"]}
    assert set(listed) == {first, second, third, timer} and listed[timer]["status"] == WAITING
    rest.ok("/manager/cancel_timer", {"msg_id": timer})
    listed = {row["msg_id"]: row for row in rest.ok("/manager/query_tag_msgs", {"tag": "news"})["data"]}
    assert listed[timer]["status"] == CANCELLED


# ---------------------------------------------------------------------------------------------------------------
# message status, timers, expiry

def test_query_msg_status_fields(api, rest, app_):
    acks, ignores = new_client(api, app_), new_client(api, app_)
    msg_id = push(rest, [acks, ignores], "count me")
    assert contents(api, rest, acks) == ["count me"]
    status = wait_status(rest, msg_id, status=SENT, target_num=2, sent_num=2, arrived_num=1)
    assert status["msg_id"] == msg_id
    assert abs(as_unix(status["send_time"]) - time.time()) < 30, status
    assert rest.ok("/manager/query_msg_status", {"msg_id": msg_id}, method="GET")["data"][0]["target_num"] == 2
    # the other client's poll (it did not acknowledge before) is counted once acknowledged
    assert contents(api, rest, ignores) == ["count me"]
    wait_status(rest, msg_id, sent_num=2, arrived_num=2)


def test_timed_pushes_fire_once_at_their_time_in_every_format(api, rest, app_):
    client = new_client(api, app_)
    due = math.floor(time.time()) + 3
    formats = {"unix seconds": str(due), "UTC date time": utc_text(due),
               "ISO 8601 +08:00": datetime.fromtimestamp(due, timezone(timedelta(hours=8))).isoformat()}
    msg_ids = {name: push(rest, [client], f"timer: {name}", push_time=when) for name, when in formats.items()}

    timers = rest.ok("/manager/query_timers")
    assert timers["total_num"] == 3
    assert {row["msg_id"] for row in timers["data"]} == set(msg_ids.values())
    for row in timers["data"]:
        assert PUSH_ROW_FIELDS <= set(row), row
        assert row["status"] == WAITING and row["msg_type"] == 0 and row["msg"].startswith("timer: "), row
        assert as_unix(row["send_time"]) == due, row
    assert [len(rest.ok("/manager/query_timers", {"start": s, "limit": 2})["data"]) for s in (0, 2)] == [2, 1]
    for msg_id in msg_ids.values():
        assert msg_status(rest, msg_id)["status"] == WAITING

    # every delivery counted (no de-duplication) until a marker sent two scheduler rounds after the time
    got = deliveries(api, rest, client, marker_after=due + 2.5, settled=msg_ids.values())
    assert Counter(m["content"] for m in got) == {f"timer: {name}": 1 for name in formats}, got
    assert len({m["id"] for m in got}) == len(got), f"a delivery id came twice: {got}"
    assert all(m["received_at"] >= due for m in got), f"delivered before its time {due}: {got}"

    assert rest.ok("/manager/query_timers") == {"status": 1, "total_num": 0, "data": []}
    for msg_id in msg_ids.values():
        status = wait_status(rest, msg_id, status=SENT, target_num=1, sent_num=1, arrived_num=1)
        assert due <= as_unix(status["send_time"]) < due + 30, status


def test_push_time_now_is_accepted_and_past_is_refused(api, rest, app_):
    client = new_client(api, app_)
    push(rest, [client], "now", push_time=int(time.time()))
    assert contents(api, rest, client) == ["now"]
    for past in (str(int(time.time()) - 3600), utc_text(time.time() - 3600), "2001-01-01T00:00:00+00:00"):
        assert rest.error("/push/terminal", {"terminal_ids": client["client_id"], "msg_type": 0, "msg": "x",
                                             "push_time": past}) == BAD_PARAM
    assert rest.ok("/manager/query_timers")["total_num"] == 0


def test_a_cancelled_timer_never_fires(api, rest, app_, foreign):
    client = new_client(api, app_)
    due = math.floor(time.time()) + 3
    cancelled = push(rest, [client], "cancelled", push_time=due)
    kept = push(rest, [client], "kept", push_time=due)  # fires: shows the time came and timers ran
    assert foreign["rest"].error("/manager/cancel_timer", {"msg_id": cancelled}) == NOT_FOUND
    assert foreign["rest"].error("/manager/query_msg_status", {"msg_id": cancelled}) == NOT_FOUND
    rest.ok("/manager/cancel_timer", {"msg_id": cancelled})
    assert [row["msg_id"] for row in rest.ok("/manager/query_timers")["data"]] == [kept]
    assert msg_status(rest, cancelled)["status"] == CANCELLED
    assert rest.error("/manager/cancel_timer", {"msg_id": cancelled}) == BAD_PARAM

    assert contents(api, rest, client, marker_after=due + 2.5, settled=[kept, cancelled]) == ["kept"]
    status = msg_status(rest, cancelled)
    assert (status["status"], status["sent_num"], status["arrived_num"]) == (CANCELLED, 0, 0), status
    wait_status(rest, kept, status=SENT, sent_num=1, arrived_num=1)
    assert rest.error("/manager/cancel_timer", {"msg_id": kept}) == BAD_PARAM  # already sent
    assert rest.error("/manager/cancel_timer", {"msg_id": push(rest, [client], "at once")}) == BAD_PARAM
    assert msg_status(foreign["rest"], foreign["timer"])["status"] == WAITING


def test_an_expired_message_is_never_delivered(api, rest, app_):
    offline = new_client(api, app_)
    job = api.new_job(app_)
    short_lived = push(rest, [offline], "short-lived", expires_time=1, job_id=job)
    expired_by = time.time() + 1.0  # the server set its expiry before this call answered
    push(rest, [offline], "long-lived", job_id=job)
    wait_status(rest, short_lived, status=SENT, target_num=1, sent_num=1)  # queued for the client
    wait_for_clock(expired_by + 0.2, "the first message to expire")
    assert contents(api, rest, offline) == ["long-lived"]
    eventually(lambda: api.stats(app_, job), {"sent": 2, "arrived": 1, "expired": 1}, f"job {job}")
    wait_status(rest, short_lived, target_num=1, sent_num=1, arrived_num=0)
    for bad in ("0", str(MAX_EXPIRES + 1)):
        assert rest.error("/push/terminal", {"terminal_ids": offline["client_id"], "msg_type": 0, "msg": "x",
                                             "expires_time": bad}) == BAD_PARAM


@pytest.fixture
def isolated_env(backend_env):
    """A backend of its own (SQLite + embedded Redis in a fresh data dir): no other server may fire its timers."""
    data_dir = Path(tempfile.mkdtemp(prefix="hpr-", dir="/tmp"))
    EmbeddedRedis(data_dir).ensure_running(detach=True)  # outlives each server, like a real Redis
    yield {**backend_env, "HIPUSH_DATA_DIR": str(data_dir), "HIPUSH_REDIS_URL": "", "HIPUSH_DATABASE_URL": ""}
    EmbeddedRedis(data_dir).stop()
    shutil.rmtree(data_dir, ignore_errors=True)


def test_a_timed_push_fires_once_after_a_restart(isolated_env):
    first = Server(isolated_env, workers=2).start()
    second = None
    engine = db.make_engine(config_module.load({**isolated_env, "HIPUSH_ENV_FILE": "/nonexistent"}).database_url)
    try:
        app = Store(engine).create_app("restart")
        api = Api(first.base)
        client = new_client(api, app)
        due = math.floor(time.time()) + 6  # room for a slow stop on a loaded machine
        msg_id = push(Rest(api, app), [client], "survived", push_time=due)
        api.http.close()
        first.stop()
        assert time.time() < due, "the server took too long to stop: this run shows nothing"
        wait_for_clock(due + 0.5, "the push time to pass while the service is down")

        second = Server(isolated_env, workers=2).start()
        api = Api(second.base)
        rest = Rest(api, app)
        wait_status(rest, msg_id, status=SENT, target_num=1, sent_num=1)
        got = deliveries(api, rest, client, marker_after=time.time() + 1.2)  # a scheduler round after it fired
        assert [m["content"] for m in got] == ["survived"], got
        wait_status(rest, msg_id, status=SENT, sent_num=1, arrived_num=1)
        assert rest.ok("/manager/query_timers")["total_num"] == 0
    finally:
        engine.dispose()
        first.stop()
        if second:
            second.stop()
