"""The legacy API of seed 000 (SPEC §3) end to end over real HTTP: good input, and each kind of bad input.

Every bad call is checked for its exact HTTP status and error code (SPEC §7) and,
where it could have done harm, for having changed nothing. Counters are read with
a deadline (they may become visible a moment after the call); "nothing was queued"
is shown with a marker message: a marker published after the bad call is the first
and only thing the client receives, and the only thing the job counted.
"""
import hashlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, quote_from_bytes, urlencode

import pytest

from support import Api, Background, post_chunked, seed_sign, send_raw, wait_for

BAD_PARAM = (403, 1024)
NOT_FOUND = (404, 1026)
NOT_ALLOWED = (405, 1027)
AUTH_FAILED = (401, 1028)
TOO_LARGE = (413, 1030)

BODY_CAP = 64 * 1024  # HIPUSH's limits.body_bytes
JSON = {"Content-Type": "application/json"}

MISSING_CLIENT = "0" * 32  # well-formed, never issued
MISSING_ID = "987654321"  # well-formed job/message id, never issued
TOKEN_LIFETIME = 7 * 86400

WEB_PATHS = ["/user/genId", "/user/token", "/user/location", "/user/click", "/service/hash", "/service/random"]
ADMIN_PATHS = ["/job/genId", "/publish/private", "/message/save", "/publish/multi", "/topic/subscribe",
               "/topic/unsubscribe", "/job/stats", "/user/revoke"]
ALL_PATHS = WEB_PATHS + ADMIN_PATHS + ["/comet/poll"]


# ---------------------------------------------------------------------------------------------------------------
# helpers

@pytest.fixture(scope="module")
def other_app(server):
    """A second app whose objects are "foreign" to the app under test (each test makes its own objects in it)."""
    return server.create_app("other")


def new_device() -> str:
    return "dev-" + uuid.uuid4().hex


def new_client(api, app, **fields) -> dict:
    return api.register(app, new_device(), **fields)


def assert_error(api, expected, path, params=(), app=None, method="GET"):
    got = api.error(path, params, app, method)
    assert got == expected, f"{method} {path}?{short(params)}: got {got}, expected {expected}"


def short(params) -> str:
    """Request parameters for a failure message, long values abbreviated."""
    pairs = params.items() if isinstance(params, dict) else params
    return "&".join(f"{k}={v if len(str(v)) <= 40 else str(v)[:12] + f'...({len(str(v))} chars)'}" for k, v in pairs)


def assert_errors(api, path, cases, app=None, method="GET"):
    """Each (params, expected) case is answered exactly `expected`; reports every case that is not."""
    wrong = []
    for params, expected in cases:
        response = api.call(path, params, app, method)
        try:
            got = error_body(response)
        except (AssertionError, ValueError):
            got = (response.status_code, response.text[:80])
        if got != expected:
            wrong.append(f"{method} {path}?{short(params)}: got {got}, expected {expected}")
    assert not wrong, "\n".join(wrong)


def without_none(params: dict) -> dict:
    return {k: v for k, v in params.items() if v is not None}


def error_body(response) -> tuple:
    body = response.json()
    assert set(body) == {"error", "reason"} and body["reason"], body
    return response.status_code, body["error"]


def private_params(job_id, client, content="hello", msg_type=0, online="false") -> dict:
    return {"job_id": job_id, "client_id": client["client_id"], "msg_type": msg_type,
            "content": content, "online": online}


def save_message(api, app, job_id, content="saved", msg_type=0) -> int:
    return api.ok("/message/save", {"job_id": job_id, "msg_type": msg_type, "content": content}, app)["message_id"]


def subscribe(api, app, topic, *clients):
    return api.ok("/topic/subscribe", [("client_id", c["client_id"]) for c in clients] + [("topic", topic)], app)


def publish_multi(api, app, topic, msg_id, online="false"):
    return api.ok("/publish/multi", {"topic": topic, "msg_id": msg_id, "online": online}, app)


def wait_for_stats(api, app, job_id, **expected) -> dict:
    """Waits (with a deadline) until the job's counters show `expected`; fails naming what was last seen."""
    last = {}

    def matches():
        last.clear()
        last.update(api.stats(app, job_id))
        return all(last[name] == value for name, value in expected.items())

    try:
        wait_for(matches, timeout=10, interval=0.1)
    except AssertionError:
        raise AssertionError(f"job {job_id} stats never reached {expected}; last seen {last}") from None
    return dict(last)


def assert_nothing_queued(api, client):
    assert api.poll(client, timeout=0) == [], "a rejected call queued a message"


def assert_only_marker_counted(api, app, job_id, client):
    """Nothing was queued or counted on `job_id` for `client` before now: a marker is all that arrives and counts."""
    api.send(app, job_id, client, "marker")
    [message] = api.receive(client, 1)
    assert message["content"] == "marker", f"a rejected call queued {message!r}"
    wait_for_stats(api, app, job_id, sent=1, arrived=1, expired=0)


def raw_get(api, path, query: str):
    """GET with a query string sent exactly as given (for bytes that requests would re-encode)."""
    return api.http.get(f"{api.base}{path}?{query}", timeout=30)


def raw_signed_query(app, pairs) -> str:
    """A signed query string whose values are raw bytes (not necessarily UTF-8); the sign is MD5 over those bytes."""
    pairs = [("app_key", app["app_key"].encode())] + [(k, v if isinstance(v, bytes) else str(v).encode())
                                                      for k, v in pairs]
    canonical = b"&".join(k.encode() + b"=" + v for k, v in sorted(pairs, key=lambda kv: kv[0]))
    sign = hashlib.md5(canonical + app["app_secret"].encode()).hexdigest()
    return "&".join(f"{k}={quote_from_bytes(v, safe='')}" for k, v in pairs) + f"&sign={sign}"


def signed_with(pairs, app_key, secret) -> list:
    """`pairs` with app_key first and a sign computed with `secret` (which may be the wrong one)."""
    pairs = [("app_key", app_key)] + list(pairs)
    return pairs + [("sign", seed_sign(pairs, secret))]


# ---------------------------------------------------------------------------------------------------------------
# /user/genId

def test_gen_id_is_stable_per_device_and_app(api, app_, other_app):
    device = new_device()
    first = api.ok("/user/genId", {"device_id": device, "app_key": app_["app_key"]})["client_id"]
    again = api.ok("/user/genId", {"device_id": device, "app_key": app_["app_key"]})["client_id"]
    by_post = api.ok("/user/genId", {"device_id": device, "app_key": app_["app_key"]}, method="POST")["client_id"]
    in_other_app = api.ok("/user/genId", {"device_id": device, "app_key": other_app["app_key"]})["client_id"]
    other_device = api.ok("/user/genId", {"device_id": new_device(), "app_key": app_["app_key"]})["client_id"]
    assert isinstance(first, str) and first
    assert first == again == by_post
    assert in_other_app != first
    assert other_device != first
    assert device not in first and app_["app_key"] not in first


def test_gen_id_accepts_every_terminal_type_and_a_location(api, app_):
    for terminal_type in ("web", "android", "ios", "weixin", "qq", "email", "sms"):
        api.ok("/user/genId", {"device_id": new_device(), "app_key": app_["app_key"], "terminal_type": terminal_type})
    api.ok("/user/genId", {"device_id": new_device(), "app_key": app_["app_key"], "terminal_type": "email",
                           "address": "someone@example.com", "org": "acme", "lat": "31.23", "lng": "-121.47"})
    api.ok("/user/genId", {"device_id": "d" * 128, "app_key": app_["app_key"]})
    for lat, lng in (("0", "0"), ("90", "180"), ("-90", "-180")):  # the bounds of SPEC's coordinates
        api.ok("/user/genId", {"device_id": new_device(), "app_key": app_["app_key"], "lat": lat, "lng": lng})


def test_gen_id_refuses_unknown_or_missing_app_key(api):
    assert_error(api, AUTH_FAILED, "/user/genId", {"device_id": new_device(), "app_key": "no-such-app"})
    assert_error(api, AUTH_FAILED, "/user/genId", {"device_id": new_device()})
    assert_error(api, AUTH_FAILED, "/user/genId", {"device_id": new_device(), "app_key": ""})
    assert_error(api, AUTH_FAILED, "/user/genId", {"device_id": new_device(), "app_key": "no-such-app"},
                 method="POST")


GEN_ID_BAD_INPUT = [
    ({"device_id": None}, BAD_PARAM),
    ({"device_id": ""}, BAD_PARAM),
    ({"device_id": "d" * 129}, TOO_LARGE),
    ({"terminal_type": "pager"}, BAD_PARAM),
    ({"terminal_type": "WEB"}, BAD_PARAM),
    ({"lat": "31.2"}, BAD_PARAM),
    ({"lng": "121.5"}, BAD_PARAM),
    ({"lat": "91", "lng": "0"}, BAD_PARAM),
    ({"lat": "0", "lng": "-181"}, BAD_PARAM),
    ({"lat": "north", "lng": "0"}, BAD_PARAM),
    ({"lat": "nan", "lng": "0"}, BAD_PARAM),
]


def test_gen_id_refuses_bad_input(api, app_):
    cases = [(without_none({"device_id": new_device(), "app_key": app_["app_key"], **bad}), expected)
             for bad, expected in GEN_ID_BAD_INPUT]
    cases.append(([("device_id", new_device()), ("device_id", new_device()), ("app_key", app_["app_key"])],
                  BAD_PARAM))
    assert_errors(api, "/user/genId", cases)
    assert_errors(api, "/user/genId", cases, method="POST")


def test_rejected_gen_id_registers_no_client(api, app_):
    """Only the one good registration is a client of the app: publishing to '*' reaches exactly one."""
    good = new_client(api, app_)
    for bad, _ in GEN_ID_BAD_INPUT:
        params = without_none({"device_id": new_device(), "app_key": app_["app_key"], **bad})
        assert api.call("/user/genId", params).status_code != 200
    job = api.new_job(app_)
    publish_multi(api, app_, "*", save_message(api, app_, job, "to everyone"))
    wait_for_stats(api, app_, job, sent=1)
    assert [m["content"] for m in api.receive(good, 1)] == ["to everyone"]


# ---------------------------------------------------------------------------------------------------------------
# /user/token

def test_token_is_issued_for_a_week_and_opens_the_poll(api, app_):
    client_id = api.ok("/user/genId", {"device_id": new_device(), "app_key": app_["app_key"]})["client_id"]
    result = api.ok("/user/token", {"client_id": client_id})
    assert set(result) >= {"client_id", "token", "expires_in"}
    assert result["client_id"] == client_id
    assert isinstance(result["token"], str) and result["token"]
    assert result["expires_in"] == TOKEN_LIFETIME
    assert api.poll({"client_id": client_id, "token": result["token"]}) == []
    by_post = api.ok("/user/token", {"client_id": client_id}, method="POST")
    assert api.poll({"client_id": client_id, "token": by_post["token"]}) == []


def test_token_refuses_unknown_malformed_and_foreign_requests(api, app_, other_app):
    assert_error(api, NOT_FOUND, "/user/token", {"client_id": MISSING_CLIENT})
    for malformed in ("", "xyz", "not a client id", "0" * 31, "0" * 33, "g" * 32):
        assert_error(api, BAD_PARAM, "/user/token", {"client_id": malformed})
    assert_error(api, BAD_PARAM, "/user/token", {})
    client = new_client(api, app_)
    assert_error(api, BAD_PARAM, "/user/token", [("client_id", client["client_id"])] * 2)
    # signing is optional for an open app, but a signature given is checked, and another app's client looks missing
    assert_error(api, NOT_FOUND, "/user/token", {"client_id": client["client_id"]}, app=other_app)
    assert_error(api, AUTH_FAILED, "/user/token",
                 signed_with([("client_id", client["client_id"])], app_["app_key"], "wrong-secret"))


def test_signed_token_policy(server, api, app_, other_app):
    server.cli("app-set", app_["app_key"], "--token-policy", "signed")  # before the server has seen this app
    client_id = api.ok("/user/genId", {"device_id": new_device(), "app_key": app_["app_key"]})["client_id"]

    assert_error(api, AUTH_FAILED, "/user/token", {"client_id": client_id})
    assert_error(api, AUTH_FAILED, "/user/token", {"client_id": client_id}, method="POST")
    assert_error(api, AUTH_FAILED, "/user/token", {"client_id": client_id, "app_key": app_["app_key"]})
    assert_error(api, AUTH_FAILED, "/user/token",
                 signed_with([("client_id", client_id)], app_["app_key"], other_app["app_secret"]))
    assert_error(api, NOT_FOUND, "/user/token", {"client_id": client_id}, app=other_app)

    result = api.ok("/user/token", {"client_id": client_id}, app=app_)
    assert result["client_id"] == client_id and result["expires_in"] == TOKEN_LIFETIME
    assert api.poll({"client_id": client_id, "token": result["token"]}) == []


# ---------------------------------------------------------------------------------------------------------------
# /user/location

def test_location_with_a_valid_token(api, app_):
    client = new_client(api, app_)
    assert api.ok("/user/location", {**client, "lat": "39.9", "lng": "116.4"}) == "OK"
    for lat, lng in (("0", "0"), ("-90", "180"), ("90", "-180")):  # the bounds of SPEC's coordinates
        assert api.ok("/user/location", {**client, "lat": lat, "lng": lng}, method="POST") == "OK", (lat, lng)


def test_location_refuses_bad_tokens_and_coordinates(api, app_):
    client, other = new_client(api, app_), new_client(api, app_)
    where = {"lat": "39.9", "lng": "116.4"}
    assert_error(api, AUTH_FAILED, "/user/location", {"client_id": client["client_id"], "token": "bad", **where})
    assert_error(api, AUTH_FAILED, "/user/location", {"client_id": client["client_id"], **where})
    assert_error(api, AUTH_FAILED, "/user/location",
                 {"client_id": client["client_id"], "token": other["token"], **where})
    forged = client["token"][:-2] + ("AA" if not client["token"].endswith("AA") else "BB")
    assert_error(api, AUTH_FAILED, "/user/location", {"client_id": client["client_id"], "token": forged, **where})
    bad = [{"lat": "91", "lng": "0"}, {"lat": "0", "lng": "180.5"}, {"lat": "1"}, {"lng": "1"}, {},
           {"lat": "x", "lng": "1"}, {"lat": "", "lng": "1"}]
    assert_errors(api, "/user/location", [({**client, **where}, BAD_PARAM) for where in bad])


# ---------------------------------------------------------------------------------------------------------------
# /service/hash and /service/random

def assert_node_address(result):
    assert set(result) == {"ip", "port"}, result
    assert isinstance(result["ip"], str) and result["ip"]
    assert isinstance(result["port"], int) and not isinstance(result["port"], bool) and 0 < result["port"] < 65536


def test_service_hash_is_a_stable_node_address(api, app_):
    client = new_client(api, app_)

    def consistent_answers():
        """Four asks agree (retried only because a node of an earlier test may leave the live set meanwhile)."""
        answers = [api.ok("/service/hash", {"client_id": client["client_id"]}) for _ in range(3)]
        answers.append(api.ok("/service/hash", {"client_id": client["client_id"]}, method="POST"))
        return answers if all(a == answers[0] for a in answers) else None

    answers = wait_for(consistent_answers, timeout=20, interval=0.5, message="/service/hash to answer consistently")
    assert_node_address(answers[0])


def test_service_hash_refuses_a_missing_or_malformed_client_id(api):
    assert_error(api, BAD_PARAM, "/service/hash", {})
    assert_error(api, BAD_PARAM, "/service/hash", {"client_id": "not-an-id"})


def test_service_random_is_a_node_address(api):
    assert_node_address(api.ok("/service/random"))
    assert_node_address(api.ok("/service/random", method="POST"))


# ---------------------------------------------------------------------------------------------------------------
# signed admin calls: authentication

def admin_world(api, app) -> dict:
    """A client subscribed to topic "t", a job and a saved message: enough for a valid call to every admin path."""
    client = new_client(api, app)
    job = api.new_job(app)
    msg = save_message(api, app, job)
    subscribe(api, app, "t", client)
    return {"client": client, "job": job, "msg": msg}


def valid_admin_params(world) -> dict:
    cid, job, msg = world["client"]["client_id"], world["job"], world["msg"]
    return {
        "/job/genId": [("name", "n"), ("type", "t")],
        "/publish/private": list(private_params(job, world["client"]).items()),
        "/message/save": [("job_id", job), ("msg_type", 0), ("content", "c")],
        "/publish/multi": [("topic", "t"), ("msg_id", msg), ("online", "false")],
        "/topic/subscribe": [("client_id", cid), ("topic", "t2")],
        "/topic/unsubscribe": [("client_id", cid), ("topic", "t")],
        "/job/stats": [("job_id", job)],
        "/user/revoke": [("client_id", cid)],
    }


UNKNOWN_APP = {"app_key": "0123456789abcdef01234567", "app_secret": "whatever"}

AUTH_FAILURES = {
    "missing sign": lambda app, pairs: [("app_key", app["app_key"])] + pairs,
    "empty sign": lambda app, pairs: [("app_key", app["app_key"])] + pairs + [("sign", "")],
    "wrong sign": lambda app, pairs: signed_with(pairs, app["app_key"], "not-the-secret"),
    "sign of other values": lambda app, pairs: [("app_key", app["app_key"])] + pairs + [
        ("sign", seed_sign([("app_key", app["app_key"])] + pairs + [("extra", "1")], app["app_secret"]))],
    "unknown app_key": lambda app, pairs: signed_with(pairs, UNKNOWN_APP["app_key"], UNKNOWN_APP["app_secret"]),
    "missing app_key": lambda app, pairs: pairs + [("sign", seed_sign(pairs, app["app_secret"]))],
}


def test_admin_calls_refuse_bad_authentication_and_change_nothing(api, app_):
    world = admin_world(api, app_)
    wrong = []
    for failure, make in AUTH_FAILURES.items():
        for path, pairs in valid_admin_params(world).items():
            for method in ("GET", "POST"):
                response = api.call(path, make(app_, pairs), method=method)
                if (response.status_code, response.json().get("error")) != AUTH_FAILED:
                    wrong.append(f"{failure}: {method} {path} answered {response.status_code} {response.text[:80]}")
    assert not wrong, "\n".join(wrong)
    # not revoked, not unsubscribed, nothing queued or counted: a message to topic "t" is all that arrives
    assert_nothing_queued(api, world["client"])
    publish_multi(api, app_, "t", world["msg"])
    assert [m["content"] for m in api.receive(world["client"], 1)] == ["saved"]
    wait_for_stats(api, app_, world["job"], sent=1, arrived=1)
    assert_error(api, NOT_FOUND, "/publish/multi", {"topic": "t2", "msg_id": world["msg"]}, app_)


def test_admin_calls_work_signed_by_get_and_by_post(api, app_):
    world = admin_world(api, app_)
    for method in ("GET", "POST"):
        for path, pairs in valid_admin_params(world).items():
            api.ok(path, pairs, app_, method=method)


def test_duplicate_app_key_or_sign_is_refused(api, app_, other_app):
    """app_key and sign must appear once too: a server must not silently pick one of two."""
    client = new_client(api, app_)
    base = [("client_id", client["client_id"]), ("topic", "dup")]
    attempts = {
        "app_key twice": signed_with(base + [("app_key", other_app["app_key"])], app_["app_key"], app_["app_secret"]),
        "app_key and appkey": signed_with(base + [("appkey", app_["app_key"])], app_["app_key"], app_["app_secret"]),
    }
    good = signed_with(base, app_["app_key"], app_["app_secret"])
    attempts["sign twice"] = good + [("sign", "0" * 32)]
    answers = {}
    for name, pairs in attempts.items():
        response = api.call("/topic/subscribe", pairs)
        answers[name] = (response.status_code, response.json().get("error"))
    accepted = {name: answer for name, answer in answers.items() if answer not in (AUTH_FAILED, BAD_PARAM)}
    assert not accepted, f"expected 401/1028 or 403/1024, got {accepted}"
    assert_error(api, NOT_FOUND, "/publish/multi", {"topic": "dup", "msg_id": MISSING_ID}, app_)


# ---------------------------------------------------------------------------------------------------------------
# /job/genId and /job/stats

def test_job_gen_id_and_stats_of_a_fresh_job(api, app_):
    name, job_type = "中" * 64, "t" * 64
    job = api.ok("/job/genId", {"name": name, "type": job_type}, app_)["job_id"]
    assert isinstance(job, int)
    other = api.ok("/job/genId", {"name": "n", "type": "t"}, app_, method="POST")["job_id"]
    assert other != job
    stats = api.stats(app_, job)
    assert stats["job_id"] == job and stats["name"] == name and stats["type"] == job_type
    assert (stats["sent"], stats["arrived"], stats["expired"]) == (0, 0, 0)


def test_job_calls_refuse_bad_input(api, app_):
    assert_errors(api, "/job/genId", [
        ({"name": "n" * 65, "type": "t"}, TOO_LARGE),
        ({"name": "中" * 65, "type": "t"}, TOO_LARGE),
        ({"name": "n", "type": "t" * 65}, TOO_LARGE),
        ({"type": "t"}, BAD_PARAM),
        ({"name": "", "type": "t"}, BAD_PARAM),
        ({"name": "n"}, BAD_PARAM),
        ({"name": "a\nb", "type": "t"}, BAD_PARAM),
        ([("name", "a"), ("name", "b"), ("type", "t")], BAD_PARAM),
    ], app_)
    job = api.new_job(app_)
    assert_errors(api, "/job/stats", [({"job_id": bad}, BAD_PARAM) for bad in ("", "x", "-1", "1.5", "9" * 40)] + [
        ({}, BAD_PARAM),
        ([("job_id", job), ("job_id", job)], BAD_PARAM),
        ({"job_id": MISSING_ID}, NOT_FOUND),
    ], app_)


def test_job_stats_count_sent_arrived_expired(api, app_):
    clients = [new_client(api, app_) for _ in range(3)]
    job = api.new_job(app_, name="campaign", job_type="promo")
    subscribe(api, app_, "news", *clients)
    publish_multi(api, app_, "news", save_message(api, app_, job, "breaking"))
    for client in clients[:2]:
        [message] = api.receive(client, 1)
        assert message["content"] == "breaking" and message["job_id"] == job and message["msg_type"] == 0
    stats = wait_for_stats(api, app_, job, sent=3, arrived=2, expired=0)
    assert (stats["job_id"], stats["name"], stats["type"]) == (job, "campaign", "promo")
    # the third client's copy waits for it; handed out but not acknowledged, it has not arrived
    assert [m["content"] for m in api.poll(clients[2], timeout=0)] == ["breaking"]
    assert api.stats(app_, job)["arrived"] == 2


def test_job_stats_count_private_sends_per_job(api, app_):
    client = new_client(api, app_)
    job, other_job = api.new_job(app_), api.new_job(app_)
    api.send(app_, job, client, "one")
    api.send(app_, job, client, "two", msg_type=1)
    api.send(app_, other_job, client, "three")
    received = api.receive(client, 3)
    assert [(m["content"], m["msg_type"], m["job_id"]) for m in received] == \
        [("one", 0, job), ("two", 1, job), ("three", 0, other_job)]
    wait_for_stats(api, app_, job, sent=2, arrived=2, expired=0)
    wait_for_stats(api, app_, other_job, sent=1, arrived=1, expired=0)


# ---------------------------------------------------------------------------------------------------------------
# /publish/private

def test_publish_private_delivers_to_the_one_client(api, app_):
    client, bystander = new_client(api, app_), new_client(api, app_)
    job = api.new_job(app_)
    assert api.ok("/publish/private", private_params(job, client, "just you"), app_) == "OK"
    assert api.ok("/publish/private", private_params(job, client, "by post", msg_type=1), app_,
                  method="POST") == "OK"
    received = api.receive(client, 2)
    assert [(m["content"], m["msg_type"]) for m in received] == [("just you", 0), ("by post", 1)]
    assert set(received[0]) >= {"id", "job_id", "msg_type", "content", "ts"}
    assert received[0]["id"] != received[1]["id"]
    assert_nothing_queued(api, bystander)


def test_concurrent_private_publishes_each_arrive_once_in_each_callers_order(api, app_):
    """Publish calls that arrive together share one SQL transaction and one Redis round trip per worker
    (services/batching.py): every message still reaches its client once, each caller's in its order,
    and is counted once."""
    clients = [new_client(api, app_) for _ in range(4)]
    job = api.new_job(app_)
    callers, per_caller = 12, 5

    def caller(n):
        own = Api(api.base)  # a session per thread
        for i in range(per_caller):
            for client in clients:
                own.send(app_, job, client, f"{n}-{i}")

    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(caller, range(callers)))
    for client in clients:
        received = [m["content"] for m in api.receive(client, callers * per_caller)]
        assert sorted(received) == sorted(f"{n}-{i}" for n in range(callers) for i in range(per_caller))
        for n in range(callers):
            assert [c for c in received if c.startswith(f"{n}-")] == [f"{n}-{i}" for i in range(per_caller)]
        assert_nothing_queued(api, client)
    total = len(clients) * callers * per_caller
    wait_for_stats(api, app_, job, sent=total, arrived=total, expired=0)


PRIVATE_BAD_INPUT = [
    ({"msg_type": 2}, BAD_PARAM),
    ({"msg_type": "x"}, BAD_PARAM),
    ({"msg_type": -1}, BAD_PARAM),
    ({"msg_type": None}, BAD_PARAM),
    ({"online": "maybe"}, BAD_PARAM),
    ({"online": "yes"}, BAD_PARAM),
    ({"content": None}, BAD_PARAM),
    ({"content": ""}, BAD_PARAM),
    ({"job_id": None}, BAD_PARAM),
    ({"job_id": "abc"}, BAD_PARAM),
    ({"job_id": MISSING_ID}, NOT_FOUND),
    ({"client_id": None}, BAD_PARAM),
    ({"client_id": "short"}, BAD_PARAM),
    ({"client_id": MISSING_CLIENT}, NOT_FOUND),
    ({"content": "a" * 4097}, TOO_LARGE),
]


def test_publish_private_refuses_bad_input_and_sends_nothing(api, app_):
    client = new_client(api, app_)
    job = api.new_job(app_)
    other_job = api.new_job(app_)
    cases = [(without_none({**private_params(job, client, f"bad case {i}"), **change}), expected)
             for i, (change, expected) in enumerate(PRIVATE_BAD_INPUT)]
    repeated = [("job_id", other_job), ("job_id", job), ("content", "again"), ("client_id", client["client_id"]),
                ("online", "false"), ("msg_type", 0)]
    cases += [(list(private_params(job, client, f"repeated {name}").items()) + [(name, value)], BAD_PARAM)
              for name, value in repeated]
    assert_errors(api, "/publish/private", cases, app_)
    assert_errors(api, "/publish/private", cases, app_, method="POST")
    assert_only_marker_counted(api, app_, job, client)
    assert api.stats(app_, other_job)["sent"] == 0


def test_publish_private_online_only_skips_offline_clients(api, app_):
    offline, online = new_client(api, app_), new_client(api, app_)
    job = api.new_job(app_)
    assert api.poll(online, timeout=0) == []  # polled just now: online for the grace period
    for value in ("true", "1"):
        api.send(app_, job, offline, f"offline {value}", online=value)
        api.send(app_, job, online, f"online {value}", online=value)
    assert [m["content"] for m in api.receive(online, 2)] == ["online true", "online 1"]
    assert_nothing_queued(api, offline)
    for value in ("false", "0"):
        api.send(app_, job, offline, f"queued {value}", online=value)
    assert [m["content"] for m in api.receive(offline, 2)] == ["queued false", "queued 0"]
    wait_for_stats(api, app_, job, sent=4, arrived=4)


# ---------------------------------------------------------------------------------------------------------------
# content size (SPEC §8): 4096 bytes pass even as a GET query string, 4097 do not

LARGEST_CONTENTS = ["a" * 4096, "é" * 2048, "中" * 1365 + "a", "😀" * 1024, "&=%+ ?#" * 585 + "a"]
TOO_LARGE_CONTENTS = ["a" * 4097, "é" * 2048 + "a", "中" * 1366, "😀" * 1024 + "a"]


def test_content_of_4096_bytes_passes_by_get_and_arrives_intact(api, app_):
    assert all(len(c.encode()) == 4096 for c in LARGEST_CONTENTS)
    client = new_client(api, app_)
    job = api.new_job(app_)
    for content in LARGEST_CONTENTS:
        api.send(app_, job, client, content)
    received = api.receive(client, len(LARGEST_CONTENTS))
    assert [m["content"] for m in received] == LARGEST_CONTENTS
    msg = save_message(api, app_, job, LARGEST_CONTENTS[2])
    subscribe(api, app_, "big", client)
    publish_multi(api, app_, "big", msg)
    assert [m["content"] for m in api.receive(client, 1)] == [LARGEST_CONTENTS[2]]


def test_content_over_4096_bytes_is_too_large_and_sends_nothing(api, app_):
    assert all(len(c.encode()) == 4097 or len(c.encode()) == 4098 for c in TOO_LARGE_CONTENTS)
    client = new_client(api, app_)
    job = api.new_job(app_)
    for content in TOO_LARGE_CONTENTS:
        for method in ("GET", "POST"):
            assert_error(api, TOO_LARGE, "/publish/private", private_params(job, client, content), app_, method)
            assert_error(api, TOO_LARGE, "/message/save", {"job_id": job, "msg_type": 0, "content": content},
                         app_, method)
    assert_only_marker_counted(api, app_, job, client)


def test_query_string_over_16_kb_is_too_large(api, app_):
    client = new_client(api, app_)
    job = api.new_job(app_)
    padded = {**private_params(job, client), "padding": "p" * (16 * 1024)}
    assert_error(api, TOO_LARGE, "/publish/private", padded, app_)
    assert_error(api, TOO_LARGE, "/job/genId", {"name": "n", "type": "t", "padding": "p" * (16 * 1024)}, app_)
    assert_error(api, TOO_LARGE, "/service/random", {"padding": "p" * (16 * 1024)})
    assert_only_marker_counted(api, app_, job, client)


def signed_form_of(app, pairs, size) -> bytes:
    """A form body of exactly `size` bytes, signed over all of its parameters (a `pad` fills it)."""
    def body(pad: int) -> bytes:
        return urlencode(signed_with(list(pairs) + [("pad", "p" * pad)], app["app_key"], app["app_secret"])).encode()
    sized = body(size - len(body(0)))
    assert len(sized) == size
    return sized


def test_a_body_over_64_kb_is_too_large_however_it_is_framed_and_sends_nothing(api, app_):
    """A chunked body has no Content-Length to check up front: it is refused all the same, not cut at the cap
    and run (its first 64 KB here are a valid signed publish, which ran and answered 200)."""
    client = new_client(api, app_)
    job = api.new_job(app_)
    at_cap = signed_form_of(app_, private_params(job, client, "cut at the cap").items(), BODY_CAP)
    for body in (at_cap + b"p" * (1024 * 1024 - BODY_CAP), at_cap + b"p"):
        status, answer = post_chunked(api.base, "/publish/private", body)
        assert (status, answer["error"]) == TOO_LARGE, (len(body), status, answer)
        response = api.http.post(api.base + "/publish/private", data=body, timeout=30,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert error_body(response) == TOO_LARGE
    assert_only_marker_counted(api, app_, job, client)
    at_cap = signed_form_of(app_, private_params(job, client, "at the cap").items(), BODY_CAP)
    assert post_chunked(api.base, "/publish/private", at_cap) == (200, {"ok": True, "result": "OK"})
    assert [m["content"] for m in api.receive(client, 1)] == ["at the cap"]


@pytest.mark.parametrize("framing", [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n",
                                     b"3\r\nabc\r\n0\r\nnot a trailer\r\n\r\n"])
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "application/json"])
def test_a_malformed_chunked_body_is_a_bad_parameter(api, framing, content_type):
    """A bad chunk size, a chunk longer than it said, a bad trailer: the client's error (it answered 500)."""
    head = (f"POST /publish/private HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    status, body = send_raw(api.base, head + framing)
    assert (status, json.loads(body)["error"]) == BAD_PARAM, body


def nested_json(depth: int) -> str:
    return '{"a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


@pytest.mark.parametrize("path", WEB_PATHS + ADMIN_PATHS)  # every path that takes a POST body
def test_a_json_body_nested_deeper_than_32_levels_is_a_bad_parameter(api, path):
    """Refused before any other check, unauthenticated: parsing it recursed past Python's limit (500)."""
    for depth in (33, 1000, 20_000):
        response = api.http.post(api.base + path, data=nested_json(depth), headers=JSON, timeout=30)
        assert error_body(response) == BAD_PARAM, (depth, response.text[:200])
    response = api.http.post(api.base + path, data=nested_json(32), headers=JSON, timeout=30)
    assert "nests deeper" not in response.text


def test_a_json_body_with_an_escaped_lone_surrogate_is_refused(api, app_):
    """Valid JSON, but "\\ud800" is no UTF-8 text: a parameter must be UTF-8, as in a query or form (it answered
    500, unauthenticated)."""
    for fields in ({"app_key": app_["app_key"], "device_id": "d", "org": "\ud800"}, {"app_key": "\udc00"}):
        response = api.http.post(api.base + "/user/genId", data=json.dumps(fields), headers=JSON, timeout=30)
        assert error_body(response) == BAD_PARAM, fields


def test_a_json_body_naming_a_parameter_twice_is_refused_and_sends_nothing(api, app_):
    """As a parameter given twice in a query string or form is: the last one no longer wins."""
    client = new_client(api, app_)
    job = api.new_job(app_)
    signed = signed_with(list(private_params(job, client, "second").items()), app_["app_key"], app_["app_secret"])
    body = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(str(v))}" for k, v in [("content", "first")] + signed) + "}"
    response = api.http.post(api.base + "/publish/private", data=body, headers=JSON, timeout=30)
    assert error_body(response) == BAD_PARAM
    assert_only_marker_counted(api, app_, job, client)


def test_checks_run_in_order_auth_then_size_then_format_then_lookup(api, app_, other_app):
    client = new_client(api, app_)
    job = api.new_job(app_)
    big = private_params(job, client, "a" * 4097, msg_type="x")
    assert_error(api, AUTH_FAILED, "/publish/private", [("app_key", app_["app_key"])] + list(big.items()))
    assert_error(api, TOO_LARGE, "/publish/private", big, app_)
    assert_error(api, BAD_PARAM, "/publish/private", {**big, "content": "ok", "job_id": MISSING_ID}, app_)
    assert_error(api, BAD_PARAM, "/topic/subscribe",
                 [("client_id", MISSING_CLIENT)] * 101 + [("topic", "t")], app_)
    assert_error(api, TOO_LARGE, "/topic/subscribe", [("client_id", "not-an-id"), ("topic", "t" * 65)], app_)
    assert_error(api, NOT_ALLOWED, "/publish/private", {}, method="PUT")
    assert_only_marker_counted(api, app_, job, client)


# ---------------------------------------------------------------------------------------------------------------
# parameter encoding

def test_non_utf8_parameters_are_refused_and_send_nothing(api, app_):
    client = new_client(api, app_)
    job = api.new_job(app_)
    fields = [("client_id", client["client_id"]), ("job_id", job), ("msg_type", 0), ("online", "false")]
    for raw in (b"\xff", b"ok\xc3", b"\xed\xa0\x80"):  # invalid byte, truncated sequence, surrogate
        response = raw_get(api, "/publish/private", raw_signed_query(app_, fields + [("content", raw)]))
        assert error_body(response) == BAD_PARAM, raw
    response = raw_get(api, "/publish/private", raw_signed_query(app_, fields + [("content", b"ok")]) + "&%ff=1")
    assert error_body(response) == BAD_PARAM
    response = api.http.post(f"{api.base}/publish/private", data=raw_signed_query(
        app_, fields + [("content", b"\xff")]), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert error_body(response) == BAD_PARAM
    response = raw_get(api, "/user/genId", f"app_key={app_['app_key']}&device_id=%ff")
    assert error_body(response) == BAD_PARAM
    assert_only_marker_counted(api, app_, job, client)


def test_percent_encoded_reserved_characters_are_signed_raw(api, app_):
    """The sign covers the decoded values: '&', '=', '+' and '%' inside content are plain characters."""
    client = new_client(api, app_)
    job = api.new_job(app_)
    tricky = "a&b=c+d%20e 中"
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in
                     signed_with(list(private_params(job, client, tricky).items()), app_["app_key"],
                                 app_["app_secret"]))
    response = raw_get(api, "/publish/private", query)
    assert response.status_code == 200, response.text
    assert [m["content"] for m in api.receive(client, 1)] == [tricky]


# ---------------------------------------------------------------------------------------------------------------
# /message/save and /publish/multi

def test_message_save_and_publish_to_a_topic(api, app_):
    fans, bystander = [new_client(api, app_) for _ in range(2)], new_client(api, app_)
    job = api.new_job(app_)
    result = api.ok("/message/save", {"job_id": job, "msg_type": 1, "content": "to fans"}, app_)
    assert set(result) == {"message_id"} and isinstance(result["message_id"], int)
    subscribe(api, app_, "fans.v1:@x-y_z", *fans)
    assert publish_multi(api, app_, "fans.v1:@x-y_z", result["message_id"]) == "OK"
    for fan in fans:
        [m] = api.receive(fan, 1)
        assert (m["content"], m["msg_type"], m["job_id"]) == ("to fans", 1, job)
    assert_nothing_queued(api, bystander)
    wait_for_stats(api, app_, job, sent=2, arrived=2)


def test_publish_multi_star_reaches_every_client_of_the_app(api, app_, other_app):
    clients = [new_client(api, app_) for _ in range(3)]
    outsider = new_client(api, other_app)
    job = api.new_job(app_)
    publish_multi(api, app_, "*", save_message(api, app_, job, "everyone"))
    for client in clients:
        assert [m["content"] for m in api.receive(client, 1)] == ["everyone"]
    assert_nothing_queued(api, outsider)
    wait_for_stats(api, app_, job, sent=3, arrived=3)


def test_publishing_a_saved_message_twice_makes_two_deliveries(api, app_):
    client = new_client(api, app_)
    job = api.new_job(app_)
    msg = save_message(api, app_, job, "twice")
    subscribe(api, app_, "t", client)
    publish_multi(api, app_, "t", msg)
    publish_multi(api, app_, "t", msg)
    first, second = api.receive(client, 2)
    assert first["content"] == second["content"] == "twice"
    assert first["id"] != second["id"]
    wait_for_stats(api, app_, job, sent=2, arrived=2)


def test_a_publish_after_a_broadcast_reaches_each_client_after_it(api, app_):
    """A broadcast's call answers before its clients are queued (the fan-out runs after the answer, page by
    page); a unicast sent right after it, which the other worker may take, still arrives second everywhere."""
    fans = [new_client(api, app_) for _ in range(30)]
    job = api.new_job(app_)
    subscribe(api, app_, "order", *fans)
    for round_number in range(3):
        publish_multi(api, app_, "order", save_message(api, app_, job, f"broadcast {round_number}"))
        for fan in fans:
            api.send(app_, job, fan, f"after {round_number}")
    for fan in fans:
        assert [m["content"] for m in api.receive(fan, 6)] == [
            text for n in range(3) for text in (f"broadcast {n}", f"after {n}")]
    wait_for_stats(api, app_, job, sent=180, arrived=180)


def test_publishes_wait_while_their_apps_broadcast_is_being_queued(api, app_, other_app, redis_client):
    """While a worker queues a broadcast of an app, its mark is set in Redis: that app's unicasts and
    broadcasts wait for it (another app's do not), then go out in order once it clears."""
    from hipush.storage import keys

    client, fan, outsider = new_client(api, app_), new_client(api, app_), new_client(api, other_app)
    job, other_job = api.new_job(app_), api.new_job(other_app)
    subscribe(api, app_, "waits", fan)
    msg = save_message(api, app_, job, "broadcast")
    mark = keys.broadcasting(app_["id"])
    redis_client.set(mark, "a broadcast of another worker", px=30_000)
    try:
        unicast = Background(Api(api.base).send, app_, job, client, "unicast")
        broadcast = Background(publish_multi, Api(api.base), app_, "waits", msg)
        api.send(other_app, other_job, outsider, "not held")  # another app: not held by the mark
        assert [m["content"] for m in api.receive(outsider, 1)] == ["not held"]
        assert api.poll(client, timeout=1) == [] and api.poll(fan, timeout=0) == []
        assert unicast.finished is None and broadcast.finished is None, "they went ahead of the broadcast"
    finally:
        redis_client.delete(mark)
    assert unicast.result(10) == "OK" and broadcast.result(10) == "OK"
    assert [m["content"] for m in api.receive(client, 1)] == ["unicast"]
    assert [m["content"] for m in api.receive(fan, 1)] == ["broadcast"]
    wait_for(lambda: not redis_client.exists(mark), message="the broadcast's own mark is cleared")


def test_message_save_refuses_bad_input(api, app_):
    job = api.new_job(app_)
    base = {"job_id": job, "msg_type": 0, "content": "c"}
    for change in ({"msg_type": 2}, {"msg_type": "x"}, {"content": ""}, {"job_id": "x"}):
        assert_error(api, BAD_PARAM, "/message/save", {**base, **change}, app_)
    assert_error(api, BAD_PARAM, "/message/save", list(base.items()) + [("job_id", job)], app_)
    assert_error(api, NOT_FOUND, "/message/save", {**base, "job_id": MISSING_ID}, app_)


MULTI_BAD_INPUT = [
    ({"topic": "no-such-topic"}, NOT_FOUND),
    ({"msg_id": MISSING_ID}, NOT_FOUND),
    ({"topic": "bad topic"}, BAD_PARAM),
    ({"topic": "a/b"}, BAD_PARAM),
    ({"topic": "中文"}, BAD_PARAM),
    ({"topic": "**"}, BAD_PARAM),
    ({"topic": ""}, BAD_PARAM),
    ({"topic": None}, BAD_PARAM),
    ({"topic": "t" * 65}, TOO_LARGE),
    ({"msg_id": "x"}, BAD_PARAM),
    ({"msg_id": None}, BAD_PARAM),
    ({"online": "maybe"}, BAD_PARAM),
]


def test_publish_multi_refuses_bad_input_and_sends_nothing(api, app_):
    client = new_client(api, app_)
    job = api.new_job(app_)
    msg = save_message(api, app_, job)
    subscribe(api, app_, "t", client)
    subscribe(api, app_, "u", client)
    cases = [(without_none({"topic": "t", "msg_id": msg, "online": "false", **change}), expected)
             for change, expected in MULTI_BAD_INPUT]
    cases += [([("topic", "t"), ("msg_id", msg), repeated], BAD_PARAM)
              for repeated in (("topic", "u"), ("msg_id", msg))]
    assert_errors(api, "/publish/multi", cases, app_)
    assert_errors(api, "/publish/multi", cases, app_, method="POST")
    assert_only_marker_counted(api, app_, job, client)


# ---------------------------------------------------------------------------------------------------------------
# /topic/subscribe and /topic/unsubscribe

def seed_style_subscription(app, path_topic, client_ids, order=None) -> list:
    """The seed's call: `appkey=`, client_id repeated in request order, signed as app_key over that order."""
    pairs = [("appkey", app["app_key"])] + [("client_id", c) for c in client_ids] + [("topic", path_topic)]
    return pairs + [("sign", seed_sign(pairs if order is None else order, app["app_secret"]))]


def test_subscribe_seed_style_with_appkey_and_repeated_client_ids(api, app_):
    clients = [new_client(api, app_) for _ in range(3)]
    ids = sorted((c["client_id"] for c in clients), reverse=True)  # request order differs from sorted order
    assert api.ok("/topic/subscribe", seed_style_subscription(app_, "seed", ids)) == "OK"
    job = api.new_job(app_)
    publish_multi(api, app_, "seed", save_message(api, app_, job, "hi"))
    for client in clients:
        assert [m["content"] for m in api.receive(client, 1)] == ["hi"]
    wait_for_stats(api, app_, job, sent=3)


def test_seed_style_sign_renames_appkey_and_keeps_the_request_order_of_repeated_names(api, app_):
    clients = [new_client(api, app_) for _ in range(2)]
    ids = sorted((c["client_id"] for c in clients), reverse=True)
    # signed over "appkey=..." literally: refused
    pairs = [("appkey", app_["app_key"])] + [("client_id", c) for c in ids] + [("topic", "order")]
    literal = hashlib.md5(("&".join(f"{k}={v}" for k, v in pairs) + app_["app_secret"]).encode()).hexdigest()
    assert_error(api, AUTH_FAILED, "/topic/subscribe", pairs + [("sign", literal)])
    # signed with the client_ids sorted by value rather than kept in request order: refused
    value_sorted = [("app_key", app_["app_key"])] + [("client_id", c) for c in sorted(ids)] + [("topic", "order")]
    assert_error(api, AUTH_FAILED, "/topic/subscribe", seed_style_subscription(app_, "order", ids, value_sorted))
    assert_error(api, NOT_FOUND, "/publish/multi", {"topic": "order", "msg_id": MISSING_ID}, app_)
    assert api.ok("/topic/subscribe", seed_style_subscription(app_, "order", ids), method="POST") == "OK"


def test_subscribe_takes_up_to_100_client_ids_and_refuses_101(api, app_):
    clients = [new_client(api, app_) for _ in range(100)]
    ids = [c["client_id"] for c in clients]
    assert_error(api, BAD_PARAM, "/topic/subscribe", [("client_id", i) for i in ids + ids[:1]] + [("topic", "big")],
                 app_)
    assert_error(api, BAD_PARAM, "/topic/subscribe", [("client_id", ids[0])] * 101 + [("topic", "big")], app_)
    job = api.new_job(app_)
    msg = save_message(api, app_, job)
    assert_error(api, NOT_FOUND, "/publish/multi", {"topic": "big", "msg_id": msg}, app_)
    assert api.ok("/topic/subscribe", [("client_id", i) for i in ids] + [("topic", "big")], app_,
                  method="POST") == "OK"
    publish_multi(api, app_, "big", msg)
    wait_for_stats(api, app_, job, sent=100)


def test_subscription_calls_refuse_bad_input(api, app_):
    client = new_client(api, app_)
    cid = client["client_id"]
    cases = [
        ([("topic", "t")], BAD_PARAM),
        ([("client_id", ""), ("topic", "t")], BAD_PARAM),
        ([("client_id", "nope"), ("topic", "t")], BAD_PARAM),
        ([("client_id", cid)], BAD_PARAM),
        ([("client_id", cid), ("topic", "")], BAD_PARAM),
        ([("client_id", cid), ("topic", "bad topic")], BAD_PARAM),
        ([("client_id", cid), ("topic", "*")], BAD_PARAM),
        ([("client_id", cid), ("topic", "a,b")], BAD_PARAM),
        ([("client_id", cid), ("topic", "t" * 65)], TOO_LARGE),
        ([("client_id", cid), ("topic", "t"), ("topic", "u")], BAD_PARAM),
        ([("client_id", MISSING_CLIENT), ("topic", "t")], NOT_FOUND),
    ]
    for path in ("/topic/subscribe", "/topic/unsubscribe"):
        assert_errors(api, path, cases, app_)
        assert api.ok(path, [("client_id", cid), ("topic", "t" * 64)], app_) == "OK"


def test_rejected_subscribe_changes_no_subscription(api, app_, other_app):
    member, newcomer = new_client(api, app_), new_client(api, app_)
    foreign = new_client(api, other_app)
    subscribe(api, app_, "club", member)
    for stranger in (foreign["client_id"], MISSING_CLIENT):
        assert_error(api, NOT_FOUND, "/topic/subscribe",
                     [("client_id", newcomer["client_id"]), ("client_id", stranger), ("topic", "club")], app_)
        assert_error(api, NOT_FOUND, "/topic/subscribe",
                     [("client_id", newcomer["client_id"]), ("client_id", stranger), ("topic", "fresh")], app_)
        assert_error(api, NOT_FOUND, "/topic/unsubscribe",
                     [("client_id", member["client_id"]), ("client_id", stranger), ("topic", "club")], app_)
    job = api.new_job(app_)
    msg = save_message(api, app_, job, "members only")
    assert_error(api, NOT_FOUND, "/publish/multi", {"topic": "fresh", "msg_id": msg}, app_)
    publish_multi(api, app_, "club", msg)
    assert [m["content"] for m in api.receive(member, 1)] == ["members only"]
    assert_nothing_queued(api, newcomer)
    assert_nothing_queued(api, foreign)
    wait_for_stats(api, app_, job, sent=1)


def test_unsubscribe_stops_delivery(api, app_):
    stays, leaves = new_client(api, app_), new_client(api, app_)
    subscribe(api, app_, "t", stays, leaves)
    assert api.ok("/topic/unsubscribe", seed_style_subscription(app_, "t", [leaves["client_id"]])) == "OK"
    assert api.ok("/topic/unsubscribe", [("client_id", leaves["client_id"]), ("topic", "t")], app_) == "OK"
    job = api.new_job(app_)
    publish_multi(api, app_, "t", save_message(api, app_, job, "still here"))
    assert [m["content"] for m in api.receive(stays, 1)] == ["still here"]
    assert_nothing_queued(api, leaves)
    wait_for_stats(api, app_, job, sent=1)


# ---------------------------------------------------------------------------------------------------------------
# another app's objects look missing

def same_answer(api, app, path, foreign_params, missing_params, foreign_id, missing_id):
    """A foreign id gets exactly the answer of a missing id: 404 / 1026 with the same reason (ids aside)."""
    foreign, missing = api.call(path, foreign_params, app), api.call(path, missing_params, app)
    assert error_body(foreign) == error_body(missing) == NOT_FOUND, (path, foreign.text, missing.text)
    assert foreign.json()["reason"].replace(str(foreign_id), "ID") == \
        missing.json()["reason"].replace(str(missing_id), "ID"), (foreign.text, missing.text)


def test_foreign_ids_are_answered_like_missing_ones(api, app_, other_app):
    mine = new_client(api, app_)
    my_job = api.new_job(app_)
    theirs = new_client(api, other_app)
    their_job = api.new_job(other_app)
    their_msg = save_message(api, other_app, their_job, "theirs")
    subscribe(api, other_app, "theirs", theirs)
    tc, mc = theirs["client_id"], MISSING_CLIENT

    def check(path, make, foreign_id, missing_id):
        same_answer(api, app_, path, make(foreign_id), make(missing_id), foreign_id, missing_id)

    check("/publish/private", lambda j: private_params(j, mine), their_job, MISSING_ID)
    check("/publish/private", lambda c: private_params(my_job, {"client_id": c}), tc, mc)
    check("/message/save", lambda j: {"job_id": j, "msg_type": 0, "content": "c"}, their_job, MISSING_ID)
    check("/publish/multi", lambda m: {"topic": "*", "msg_id": m}, their_msg, MISSING_ID)
    check("/publish/multi", lambda m: {"topic": "theirs", "msg_id": m}, their_msg, MISSING_ID)
    check("/job/stats", lambda j: {"job_id": j}, their_job, MISSING_ID)
    check("/user/revoke", lambda c: {"client_id": c}, tc, mc)
    check("/topic/subscribe", lambda c: [("client_id", c), ("topic", "t")], tc, mc)
    check("/topic/unsubscribe", lambda c: [("client_id", c), ("topic", "t")], tc, mc)
    my_msg = save_message(api, app_, my_job)
    check("/publish/multi", lambda t: {"topic": t, "msg_id": my_msg}, "theirs", "never-made")

    # nothing happened to the other app: its client keeps its token and its queue, its job counted nothing
    assert_nothing_queued(api, theirs)
    assert_only_marker_counted(api, other_app, their_job, theirs)
    assert_only_marker_counted(api, app_, my_job, mine)


# ---------------------------------------------------------------------------------------------------------------
# /user/revoke

def test_revoke_ends_old_tokens_and_a_new_token_works(api, app_):
    client, bystander = new_client(api, app_), new_client(api, app_)
    assert_errors(api, "/user/revoke", [
        ({}, BAD_PARAM),
        ({"client_id": "nope"}, BAD_PARAM),
        ([("client_id", client["client_id"])] * 2, BAD_PARAM),
        ({"client_id": MISSING_CLIENT}, NOT_FOUND),
    ], app_)
    assert api.poll(client) == [], "a refused revoke ended the token"
    assert api.ok("/user/revoke", {"client_id": client["client_id"]}, app_) == "OK"
    assert_error(api, AUTH_FAILED, "/comet/poll", {**client, "timeout": 0})
    assert_error(api, AUTH_FAILED, "/user/location", {**client, "lat": "1", "lng": "1"})
    fresh = api.ok("/user/token", {"client_id": client["client_id"]})
    renewed = {"client_id": client["client_id"], "token": fresh["token"]}
    assert api.poll(renewed) == []
    assert api.poll(bystander) == []
    job = api.new_job(app_)
    api.send(app_, job, renewed, "after revoke")
    assert [m["content"] for m in api.receive(renewed, 1)] == ["after revoke"]
    assert api.ok("/user/revoke", {"client_id": client["client_id"]}, app_, method="POST") == "OK"
    assert_error(api, AUTH_FAILED, "/comet/poll", {**renewed, "timeout": 0})




# ---------------------------------------------------------------------------------------------------------------
# HTTP methods and paths

@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ALL_PATHS)
def test_other_methods_are_not_allowed(api, path, method):
    assert_error(api, NOT_ALLOWED, path, {}, method=method)


def test_wrong_methods_with_otherwise_valid_calls_change_nothing(api, app_):
    client = new_client(api, app_)
    job = api.new_job(app_)
    for method in ("PUT", "DELETE"):
        assert_error(api, NOT_ALLOWED, "/publish/private", private_params(job, client, method), app_, method)
    assert_error(api, NOT_ALLOWED, "/comet/poll", {**client, "timeout": 0}, method="POST")
    assert_only_marker_counted(api, app_, job, client)


def test_head_is_not_allowed_and_does_not_publish(api, app_):
    """SPEC §3: any method but GET and POST is 405 / 1027 (a HEAD has no body to carry the code)."""
    client = new_client(api, app_)
    job = api.new_job(app_)
    pairs = signed_with(list(private_params(job, client, "sent by HEAD").items()), app_["app_key"],
                        app_["app_secret"])
    head = api.http.head(api.base + "/publish/private", params=pairs, timeout=30)
    queued = [m["content"] for m in api.poll(client, timeout=0)]
    assert (head.status_code, queued) == (405, []), f"HEAD answered {head.status_code} and queued {queued}"


def test_options_is_not_allowed(api):
    """SPEC §3: any method but GET and POST is 405 / 1027."""
    for path in ("/publish/private", "/user/genId"):
        response = api.http.options(api.base + path, timeout=30)
        assert response.status_code == 405 and error_body(response) == NOT_ALLOWED, \
            f"OPTIONS {path} answered {response.status_code} {response.text!r}"


@pytest.mark.parametrize("path", ["/nope", "/user/genid", "/user", "/publish", "/user/genId/x", "/comet",
                                  "/job/genId/"])
def test_unknown_paths_are_not_found(api, path):
    """("/" is the landing page: tests/test_console.py)"""
    assert_error(api, NOT_FOUND, path, {})
    assert_error(api, NOT_FOUND, path, {}, method="POST")
