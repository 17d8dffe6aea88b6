"""The comet long-poll protocol (SPEC §5, with the online rule of §3), end to end over HTTP against gunicorn."""
import json
import time

import pytest
import requests

from hipush import identity
from support import Api, Background, client_key, park_poll, poll_parked, wait_for

PARK = 20  # timeout of polls that must park; every one of them is ended well before it


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def shared_app(server):
    """One app for the tests that need no app of their own (each uses its own clients, jobs and topics);
    `app_` (fresh) where the app's settings or all of its clients matter."""
    return server.create_app("comet")


@pytest.fixture(scope="module")
def idle_client(api, shared_app):
    """A client that nothing is ever sent to, for checks of a poll's parameters."""
    return api.register(shared_app, "idle")


def poll_in_background(server, client, **params) -> Background:
    """A long poll running in its own thread, over its own HTTP session."""
    return Background(Api(server.base).poll, client, **params)


def park(server, redis_client, client, **params) -> Background:
    """A poll of `client`, parked (timeout PARK) by the time this returns."""
    return park_poll(server.base, redis_client, client, timeout=PARK, **params)


def poll_params(client, **extra) -> dict:
    return {"client_id": client["client_id"], "token": client["token"], "timeout": 0, **extra}


def contents(messages) -> list:
    return [m["content"] for m in messages]


def register_many(api, app, count, prefix) -> list:
    return [api.register(app, f"{prefix}-{i}") for i in range(count)]


def subscribe(api, app, topic, clients):
    """/topic/subscribe takes at most 100 client_ids per call."""
    for start in range(0, len(clients), 100):
        pairs = [("topic", topic)] + [("client_id", c["client_id"]) for c in clients[start:start + 100]]
        assert api.ok("/topic/subscribe", pairs, app) == "OK"


def save_message(api, app, content, job_id=None, msg_type=0) -> int:
    """A saved message (of a new job unless one is given) for /publish/multi."""
    params = {"job_id": job_id or api.new_job(app), "msg_type": msg_type, "content": content}
    return api.ok("/message/save", params, app)["message_id"]


def publish_multi(api, app, topic, msg_id, online="false"):
    assert api.ok("/publish/multi", {"topic": topic, "msg_id": msg_id, "online": online}, app) == "OK"


def take_all(api, client) -> list:
    """What waits for a client right now (one poll), acknowledged; then checks nothing more waits."""
    messages = api.poll(client)
    if messages:
        assert api.poll(client, ack=messages[-1]["id"]) == [], "acknowledged messages came back"
    return messages


# ---------------------------------------------------------------- parking and answering

def test_poll_with_nothing_waiting_parks_until_timeout_then_answers_empty(api, shared_app):
    client = api.register(shared_app, "empty-poll")
    started = time.monotonic()
    assert api.poll(client, timeout=1) == []
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 10, f"a poll with timeout=1 answered after {elapsed:.2f}s"


def test_message_published_while_poll_is_parked_is_answered_to_that_poll(server, api, shared_app, redis_client):
    client = api.register(shared_app, "parked")
    job = api.new_job(shared_app)
    poll = park(server, redis_client, client)
    before = int(time.time() * 1000)
    api.send(shared_app, job, client, "while parked", msg_type=1)
    after = int(time.time() * 1000)

    [message] = poll.result(timeout=10)
    assert poll.elapsed < PARK / 2, "the parked poll waited for its timeout instead of answering the message"
    assert {"id", "job_id", "msg_type", "content", "ts"} <= set(message), message
    assert message["content"] == "while parked"
    assert message["msg_type"] == 1
    assert message["job_id"] == job
    assert isinstance(message["ts"], int) and before - 1000 <= message["ts"] <= after + 1000, \
        f"ts {message['ts']} is not unix ms of the publish ({before}..{after})"


def test_messages_waiting_are_answered_at_once(api, shared_app):
    client = api.register(shared_app, "waiting")
    api.send(shared_app, api.new_job(shared_app), client, "already there")
    started = time.monotonic()
    assert contents(api.poll(client, timeout=PARK)) == ["already there"]
    assert time.monotonic() - started < PARK / 2


# ---------------------------------------------------------------- acknowledgement and order

def test_cumulative_ack_and_redelivery_of_unacknowledged_messages(api, shared_app):
    client = api.register(shared_app, "acker")
    job = api.new_job(shared_app)
    for i in range(1, 6):
        api.send(shared_app, job, client, f"m{i}")

    first = api.poll(client)
    assert contents(first) == ["m1", "m2", "m3", "m4", "m5"]
    assert len({m["id"] for m in first}) == 5

    again = api.poll(client)
    assert again == first, "unacknowledged messages must come back, same ids, in publish order"

    rest = api.poll(client, ack=first[2]["id"])
    assert [m["id"] for m in rest] == [first[3]["id"], first[4]["id"]], "ack=3rd acknowledges 1st to 3rd only"
    assert api.poll(client) == rest, "4th and 5th are still unacknowledged"

    assert api.poll(client, ack=first[4]["id"]) == []
    assert api.poll(client) == [], "everything was acknowledged"


def test_fifty_messages_arrive_in_publish_order(api, shared_app):
    client = api.register(shared_app, "ordered")
    job = api.new_job(shared_app)
    sent = [f"n{i:02d}" for i in range(50)]
    for content in sent:
        api.send(shared_app, job, client, content)
    assert contents(api.receive(client, 50)) == sent


# ---------------------------------------------------------------- one parked poll per client

def test_newer_poll_releases_older_one_which_answers_empty(server, api, shared_app, redis_client):
    client = api.register(shared_app, "twice")
    older = park(server, redis_client, client)
    older_poller = redis_client.get(client_key(client["client_id"], "poller"))

    newer = poll_in_background(server, client, timeout=PARK)
    assert older.result(timeout=PARK / 2) == [], "the older poll must answer an empty list"
    assert older.elapsed < PARK / 2, f"the older poll was released only after {older.elapsed:.1f}s"

    wait_for(lambda: poll_parked(redis_client, client["client_id"])
             and redis_client.get(client_key(client["client_id"], "poller")) != older_poller,
             message="the newer poll to park")
    api.send(shared_app, api.new_job(shared_app), client, "for the newer poll")
    assert contents(newer.result(timeout=10)) == ["for the newer poll"]
    assert newer.elapsed < PARK / 2


# ---------------------------------------------------------------- parameters and authentication

@pytest.mark.parametrize("timeout", ["61", "1000", "-1", "abc"])
def test_timeout_out_of_range_is_refused(api, idle_client, timeout):
    assert api.error("/comet/poll", poll_params(idle_client, timeout=timeout)) == (403, 1024)


def test_sixty_seconds_is_the_largest_timeout_accepted(api, shared_app):
    client = api.register(shared_app, "sixty")
    api.send(shared_app, api.new_job(shared_app), client, "x")
    assert contents(api.poll(client, timeout=60)) == ["x"]


def test_poll_without_timeout_answers_waiting_messages_at_once(api, shared_app):
    client = api.register(shared_app, "default-timeout")
    api.send(shared_app, api.new_job(shared_app), client, "waiting")
    started = time.monotonic()
    assert contents(api.poll(client, timeout=None)) == ["waiting"]
    assert time.monotonic() - started < 10


def test_poll_without_timeout_parks_until_a_message_arrives(server, api, shared_app, redis_client):
    client = api.register(shared_app, "default-timeout-parks")
    poll = park_poll(server.base, redis_client, client, timeout=None)  # fails if it answers at once
    api.send(shared_app, api.new_job(shared_app), client, "later")
    assert contents(poll.result(timeout=10)) == ["later"]


def test_bad_tokens_are_refused(server, api, shared_app, backend_env):
    client = api.register(shared_app, "owner")
    stranger = api.register(shared_app, "stranger")
    foreign = api.register(server.create_app("foreign"), "foreigner")
    expires_at, epoch, _ = client["token"].split(".")
    expired = identity.issue_token(backend_env["HIPUSH_SECRET_KEY"], client["client_id"], int(epoch),
                                   int(time.time()) - 60)
    assert api.error("/comet/poll", poll_params(client, token=expired)) == (401, 1028), "expired token"
    for token in ("garbage", client["token"] + "x", f"{int(expires_at) + 1}.{epoch}.{client['token'].split('.')[2]}",
                  stranger["token"], foreign["token"]):
        assert api.error("/comet/poll", poll_params(client, token=token)) == (401, 1028), token
    assert api.poll(client) == [], "the client's own token works"


def test_missing_token_or_client_id_is_refused(api, shared_app):
    client = api.register(shared_app, "missing")
    assert api.error("/comet/poll", {"client_id": client["client_id"], "timeout": 0}) == (401, 1028)
    assert api.error("/comet/poll", {"client_id": client["client_id"], "token": "", "timeout": 0}) == (401, 1028)
    assert api.error("/comet/poll", {"token": client["token"], "timeout": 0})[0] == 401


def test_revoked_token_is_refused(api, shared_app):
    client = api.register(shared_app, "revoked")
    assert api.poll(client) == []
    assert api.ok("/user/revoke", {"client_id": client["client_id"]}, shared_app) == "OK"
    assert api.error("/comet/poll", poll_params(client)) == (401, 1028)


# ---------------------------------------------------------------- JSONP

def test_jsonp_callback_wraps_the_answer(api, shared_app):
    client = api.register(shared_app, "jsonp")
    api.send(shared_app, api.new_job(shared_app), client, "to a script tag")
    response = api.call("/comet/poll", poll_params(client, callback="cb"))
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == "application/javascript"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    text = response.text
    assert text.startswith("/**/cb(") and text.endswith(");"), text
    body = json.loads(text[len("/**/cb("):-len(");")])
    assert body["ok"] is True
    assert contents(body["result"]["messages"]) == ["to a script tag"]


def test_jsonp_callback_of_64_characters_with_dots_is_accepted(api, idle_client):
    name = "$jq._" + "a" * 59
    assert len(name) == 64
    response = api.call("/comet/poll", poll_params(idle_client, callback=name))
    assert response.status_code == 200 and response.text.startswith(f"/**/{name}(")


@pytest.mark.parametrize("callback", ["alert(1)", "a b", "a" * 65, "1abc", "cb;x", "<script>", "a-b"])
def test_bad_jsonp_callback_is_refused_as_plain_json(api, idle_client, callback):
    response = api.call("/comet/poll", poll_params(idle_client, callback=callback))
    assert response.status_code == 403
    assert response.headers["Content-Type"].split(";")[0] == "application/json"
    assert response.json()["error"] == 1024


def assert_refused_as_plain_json(response):
    assert response.status_code == 403, response.text
    assert response.headers["Content-Type"].split(";")[0] == "application/json"
    assert response.json()["error"] == 1024 and "JSONP" in response.json()["reason"]


def test_an_app_with_jsonp_off_refuses_every_client_call_with_callback_and_acks_nothing(server, api, app_):
    server.cli("app-set", app_["app_key"], "--jsonp", "off")  # before the server has seen this app
    client = api.register(app_, "no-jsonp")
    api.send(app_, api.new_job(app_), client, "kept")
    [first] = api.poll(client)

    for path, params in (
            ("/user/genId", {"device_id": "another", "app_key": app_["app_key"]}),
            ("/user/token", {"client_id": client["client_id"]}),
            ("/user/location", {**client, "lat": "1", "lng": "2"}),
            ("/user/click", {**client, "id": first["id"]}),
            ("/comet/poll", poll_params(client, ack=first["id"]))):
        assert_refused_as_plain_json(api.call(path, {**params, "callback": "cb"}))
    assert api.poll(client) == [first], "the refused JSONP poll acknowledged it"
    assert api.ok("/user/genId", {"device_id": "another", "app_key": app_["app_key"]})["client_id"]

    server.cli("app-set", app_["app_key"], "--jsonp", "on")
    wait_for(lambda: api.call("/comet/poll", poll_params(client, callback="cb")).text.startswith("/**/cb("),
             message="JSONP answered again (workers cache an app for 5 s)")


# ---------------------------------------------------------------- CORS

def poll_origin(server, client, origin):
    """The Access-Control-Allow-Origin a poll answers to `origin` (a fresh connection: either worker may answer)."""
    response = requests.get(server.base + "/comet/poll", params=poll_params(client), headers={"Origin": origin},
                            timeout=30)
    assert response.status_code == 200, response.text
    return response.headers.get("Access-Control-Allow-Origin")


def test_cors_echoes_any_origin_by_default(server, api, shared_app):
    client = api.register(shared_app, "cors")
    assert poll_origin(server, client, "https://anywhere.example") == "https://anywhere.example"


def test_cors_only_for_the_origins_an_app_allows(server, api, app_):
    client = api.register(app_, "cors-limited")
    server.cli("app-set", app_["app_key"], "--allowed-origins", "https://a.example")
    # each worker caches an app for up to 5 s; both workers must have picked up the change
    wait_for(lambda: all(poll_origin(server, client, "https://b.example") is None for _ in range(6)),
             timeout=20, message="https://b.example to lose CORS")
    assert poll_origin(server, client, "https://a.example") == "https://a.example"


# ---------------------------------------------------------------- online / offline

def test_online_publish_reaches_a_parked_poll(server, api, shared_app, redis_client):
    client = api.register(shared_app, "online-parked")
    job = api.new_job(shared_app)
    poll = park(server, redis_client, client)
    api.send(shared_app, job, client, "live", online="true")
    assert contents(poll.result(timeout=10)) == ["live"]
    assert api.stats(shared_app, job)["sent"] == 1


def test_online_publish_skips_a_client_that_never_polled(server, api, shared_app, redis_client):
    online = api.register(shared_app, "online-yes")
    offline = api.register(shared_app, "online-never")
    job = api.new_job(shared_app)
    poll = park(server, redis_client, online)
    api.send(shared_app, job, offline, "not for the absent", online="true")
    api.send(shared_app, job, online, "for the present", online="true")
    assert contents(poll.result(timeout=10)) == ["for the present"]
    assert api.poll(offline, timeout=1) == [], "an online-only message must not wait for an offline client"
    assert api.stats(shared_app, job)["sent"] == 1, "only the online client counts as sent"


def test_offline_publish_waits_for_the_next_poll(api, shared_app):
    client = api.register(shared_app, "offline")
    api.send(shared_app, api.new_job(shared_app), client, "kept", online="false")
    assert contents(api.receive(client, 1)) == ["kept"]


def test_offline_is_the_default(api, shared_app):
    client = api.register(shared_app, "offline-default")
    api.ok("/publish/private", {"job_id": api.new_job(shared_app), "client_id": client["client_id"],
                                "msg_type": 0, "content": "default"}, shared_app)
    assert contents(api.receive(client, 1)) == ["default"]


def test_client_is_online_during_the_grace_period_after_its_poll(api, shared_app):
    client = api.register(shared_app, "grace")
    assert api.poll(client) == []  # the poll has ended; the grace period (30 s) has begun
    job = api.new_job(shared_app)
    api.send(shared_app, job, client, "in grace", online="true")
    assert contents(api.receive(client, 1)) == ["in grace"]
    assert api.stats(shared_app, job)["sent"] == 1


# ---------------------------------------------------------------- topics

def test_topic_publish_reaches_each_of_100_subscribers_exactly_once(api, shared_app):
    clients = register_many(api, shared_app, 100, prefix="fan-out")
    subscribe(api, shared_app, "news", clients)
    job = api.new_job(shared_app)
    publish_multi(api, shared_app, "news", save_message(api, shared_app, "headline", job))
    for client in clients:
        assert contents(take_all(api, client)) == ["headline"], client
    wait_for(lambda: api.stats(shared_app, job)["sent"] == 100, message="sent == 100")


def test_publishing_one_saved_message_twice_makes_two_deliveries(api, shared_app):
    clients = register_many(api, shared_app, 3, prefix="twice")
    subscribe(api, shared_app, "twice", clients)
    msg_id = save_message(api, shared_app, "again")
    publish_multi(api, shared_app, "twice", msg_id)
    publish_multi(api, shared_app, "twice", msg_id)
    for client in clients:
        messages = take_all(api, client)
        assert contents(messages) == ["again", "again"]
        assert messages[0]["id"] != messages[1]["id"], "two publishes are two deliveries with distinct ids"


def test_topic_star_reaches_every_client_of_the_app_only(server, api, app_):
    clients = register_many(api, app_, 5, prefix="all")
    subscribe(api, app_, "some", clients[:2])  # subscriptions do not matter for *
    other_app = server.create_app("other")
    outsider = api.register(other_app, "all-0")  # same device id, other app
    publish_multi(api, app_, "*", save_message(api, app_, "everyone"))
    for client in clients:
        assert contents(take_all(api, client)) == ["everyone"]
    assert api.poll(outsider) == [], "a broadcast never reaches another app's clients"


def test_topic_publish_skips_unsubscribed_clients(api, shared_app):
    inside, outside = register_many(api, shared_app, 2, prefix="sub")
    subscribe(api, shared_app, "club", [inside])
    publish_multi(api, shared_app, "club", save_message(api, shared_app, "members only"))
    assert contents(take_all(api, inside)) == ["members only"]
    assert api.poll(outside) == []
