"""Terminal management (seed 003's 终端的增删改查) over real HTTP, against gunicorn with 2 gevent workers:
/manager/query_terminal, query_terminals, update_terminal and del_terminal; and /user/genId, which never
changes a client registered before (anyone who knows a device id can call it)."""
import time
import uuid

import pytest

from support import park_poll
from test_rest_api import (AUTH_FAILED, BAD_PARAM, BEIJING, NOT_ALLOWED, NOT_FOUND, SENT, TOO_LARGE, as_unix,
                           auth_failures, contents, error_of, eventually, ids_of, new_client, push, random_ids,
                           wait_status)
from test_rest_api import app_, foreign, rest  # noqa: F401  (fixtures)

SHANGHAI = (31.2304, 121.4737)
TERMINAL_FIELDS = {"terminal_id", "device_id", "terminal_type", "org", "address", "lat", "lng", "create_time",
                   "online", "queued_num", "unacked_num"}
QUERY_CALLS = ["/manager/query_terminal", "/manager/query_terminals"]
CHANGE_CALLS = ["/manager/update_terminal", "/manager/del_terminal"]


def place(lat, lng) -> tuple:
    """A location as the records give it back: MySQL keeps lat and lng as FLOAT (about 6 significant digits)."""
    return pytest.approx(lat, abs=1e-3), pytest.approx(lng, abs=1e-3)


def terminal(rest, client) -> dict:
    data = rest.ok("/manager/query_terminal", {"terminal_id": client["client_id"]})["data"]
    assert set(data) == TERMINAL_FIELDS, data
    return data


def listed(rest, **params) -> tuple:
    """(total_num, terminal ids of the page) of query_terminals."""
    body = rest.ok("/manager/query_terminals", params)
    return body["total_num"], [t["terminal_id"] for t in body["data"]]


def update(rest, client, **changes) -> dict:
    return rest.ok("/manager/update_terminal", {"terminal_id": client["client_id"], **changes})["data"]


def reached(rest, path, **target) -> int:
    """target_num of a broadcast push, once it is sent."""
    msg_id = rest.ok(path, {**target, "msg_type": 0, "msg": "x"})["msg_id"]
    return wait_status(rest, msg_id, status=SENT)["target_num"]


def near(rest, point, radius=1000) -> int:
    return reached(rest, "/push/geo", lat=point[0], lng=point[1], radius=radius)


# ---------------------------------------------------------------------------------------------------------------
# /user/genId of a registered device

def test_gen_id_of_a_registered_device_changes_nothing(api, rest, app_, store):
    """Called again by anyone with a type, address, org and place of their choosing, genId answers the same id
    and the client stays as it was: its messages still reach its poll, and none counts as failed."""
    device = "dev-" + uuid.uuid4().hex
    client = api.register(app_, device, org="acme", lat=BEIJING[0], lng=BEIJING[1])
    row = store.get_client(client["client_id"])
    again = api.ok("/user/genId", {"device_id": device, "app_key": app_["app_key"], "terminal_type": "sms",
                                   "address": "+15550100", "org": "evil", "lat": SHANGHAI[0], "lng": SHANGHAI[1]})
    assert again == {"client_id": client["client_id"]}
    assert store.get_client(client["client_id"]) == row
    msg_id = push(rest, [client], "still mine")
    assert contents(api, rest, client) == ["still mine"]
    wait_status(rest, msg_id, sent_num=1, arrived_num=1, failed_num=0)
    assert (near(rest, BEIJING), near(rest, SHANGHAI), reached(rest, "/push/org", orgs="evil")) == (1, 0, 0)


# ---------------------------------------------------------------------------------------------------------------
# reading

def test_query_terminal_shows_its_fields_and_live_state(api, rest, app_, foreign, redis_client):
    device = "dev-" + uuid.uuid4().hex
    client = api.register(app_, device, terminal_type="android", org="acme", address="reader@example.com",
                          lat=BEIJING[0], lng=BEIJING[1])
    data = terminal(rest, client)
    assert abs(as_unix(data.pop("create_time")) - time.time()) < 120, data
    assert (data.pop("lat"), data.pop("lng")) == place(*BEIJING)
    assert data == {"terminal_id": client["client_id"], "device_id": device, "terminal_type": "android",
                    "org": "acme", "address": "reader@example.com", "online": False, "queued_num": 0,
                    "unacked_num": 0}
    for text in ("one", "two", "three"):
        push(rest, [client], text)  # queued before the call answers
    assert terminal(rest, client)["queued_num"] == 3
    handed = api.poll(client)  # not acknowledged
    assert (terminal(rest, client)["queued_num"], terminal(rest, client)["unacked_num"]) == (0, 3)
    poll = park_poll(api.base, redis_client, client, ack=handed[-1]["id"])
    assert {k: v for k, v in terminal(rest, client).items() if k.endswith("_num") or k == "online"} == \
        {"online": True, "queued_num": 0, "unacked_num": 0}
    push(rest, [client], "four")
    assert [m["content"] for m in poll.result(15)] == ["four"]

    assert rest.ok("/manager/query_terminal", {"terminal_id": client["client_id"]}, method="GET",
                   how="basic")["data"]["device_id"] == device
    assert [rest.error("/manager/query_terminal", params) for params in (
        {"terminal_id": foreign["client"]["client_id"]}, {"terminal_id": random_ids(1)}, {"terminal_id": "bad-id"},
        {}, {"terminal_id": client["client_id"] + "0"})] == [NOT_FOUND, NOT_FOUND, BAD_PARAM, BAD_PARAM, BAD_PARAM]


def test_query_terminals_pages_and_filters(api, rest, app_, foreign):
    clients = {"acme-web": new_client(api, app_, org="acme"),
               "acme-android": new_client(api, app_, org="acme", terminal_type="android"),
               "globex-sms": new_client(api, app_, org="globex", terminal_type="sms", address="+15550101"),
               "plain": new_client(api, app_)}
    rest.ok("/manager/terminal_add_tag", {"tag": "t", "terminal_ids": ids_of(clients["acme-web"],
                                                                             clients["globex-sms"])})
    rest.ok("/manager/create_tag", {"tag": "empty"})
    by_id = sorted(clients, key=lambda name: clients[name]["client_id"])

    def names(**params):
        total, ids = listed(rest, **params)
        return total, [name for i in ids for name, c in clients.items() if c["client_id"] == i]

    assert names() == (4, by_id)
    assert names(start=1, limit=2) == (4, by_id[1:3])
    assert names(start=4) == (4, [])
    assert names(tag="t") == (2, [n for n in by_id if n in ("acme-web", "globex-sms")])
    assert names(org="acme") == (2, [n for n in by_id if n.startswith("acme")])
    assert names(terminal_type="web") == (2, [n for n in by_id if n in ("acme-web", "plain")])
    assert names(tag="t", terminal_type="sms") == (1, ["globex-sms"])
    assert names(org="acme", terminal_type="sms") == (0, [])
    assert names(tag="empty") == (0, [])
    assert names(tag="", org="", terminal_type="") == (4, by_id)  # empty filters filter nothing
    [sms] = rest.ok("/manager/query_terminals", {"terminal_type": "sms"}, method="GET", how="basic")["data"]
    assert (sms["terminal_type"], sms["org"], sms["address"], sms["lat"]) == ("sms", "globex", "+15550101", None)

    assert [rest.error("/manager/query_terminals", params) for params in (
        {"tag": "no-such-tag"}, {"tag": foreign["tag"]}, {"tag": "bad tag"}, {"terminal_type": "pager"},
        {"limit": 0}, {"limit": 1001}, {"start": -1}, {"org": "o" * 65}, {"org": "a\x01b"})] == \
        [NOT_FOUND, NOT_FOUND, BAD_PARAM, BAD_PARAM, BAD_PARAM, BAD_PARAM, BAD_PARAM, TOO_LARGE, BAD_PARAM]


# ---------------------------------------------------------------------------------------------------------------
# changing

def test_update_terminal_changes_what_is_given_and_moves_it_on_the_map(api, rest, app_):
    client = new_client(api, app_, org="acme", lat=BEIJING[0], lng=BEIJING[1])
    assert (reached(rest, "/push/org", orgs="acme"), near(rest, BEIJING)) == (1, 1)

    data = update(rest, client, terminal_type="android", address="reader@example.com", org="globex")
    assert (data["terminal_type"], data["address"], data["org"], data["lat"], data["lng"]) == \
        ("android", "reader@example.com", "globex", *place(*BEIJING))
    assert terminal(rest, client) == data
    assert (reached(rest, "/push/org", orgs="acme"), reached(rest, "/push/org", orgs="globex",
                                                            terminal_types="android")) == (0, 1)

    moved = rest.ok("/manager/update_terminal", {"terminal_id": client["client_id"], "lat": SHANGHAI[0],
                                                 "lng": SHANGHAI[1]}, how="json")["data"]  # JSON numbers
    assert (moved["lat"], moved["lng"], near(rest, BEIJING), near(rest, SHANGHAI)) == (*place(*SHANGHAI), 0, 1)
    cleared = update(rest, client, lat="", lng="", org="")  # empty: no location, no org any more
    assert (cleared["lat"], cleared["lng"], cleared["org"], cleared["address"]) == (None, None, None,
                                                                                    "reader@example.com")
    assert (near(rest, SHANGHAI), near(rest, (0, 0), radius=20_000_000)) == (0, 0)
    assert contents(api, rest, client) == ["x"] * 4  # an android client long-polls: it got every push it was in


def test_update_terminal_refuses_bad_input_and_changes_nothing(api, rest, app_, foreign):
    client = new_client(api, app_, org="acme", lat=BEIJING[0], lng=BEIJING[1])
    before = terminal(rest, client)
    cid = client["client_id"]
    cases = [({"terminal_id": cid}, BAD_PARAM),  # nothing to change
             ({"terminal_id": cid, "lat": SHANGHAI[0]}, BAD_PARAM),
             ({"terminal_id": cid, "lat": "", "org": "x"}, BAD_PARAM),  # lat and lng go together
             ({"terminal_id": cid, "lat": 91, "lng": 0}, BAD_PARAM),
             ({"terminal_id": cid, "lat": "north", "lng": 0}, BAD_PARAM),
             ({"terminal_id": cid, "terminal_type": ""}, BAD_PARAM),
             ({"terminal_id": cid, "terminal_type": "pager"}, BAD_PARAM),
             ({"terminal_id": cid, "org": "o" * 65}, TOO_LARGE),
             ({"terminal_id": cid, "address": "a" * 256}, TOO_LARGE),
             ({"terminal_id": cid, "address": "line\nbreak"}, BAD_PARAM),
             ({"terminal_id": "bad-id", "org": "x"}, BAD_PARAM),
             ({"org": "x"}, BAD_PARAM),
             ({"terminal_id": random_ids(1), "org": "x"}, NOT_FOUND),
             ({"terminal_id": foreign["client"]["client_id"], "org": "x"}, NOT_FOUND)]
    assert [rest.error("/manager/update_terminal", params) for params, _ in cases] == [e for _, e in cases]
    assert terminal(rest, client) == before
    assert terminal(foreign["rest"], foreign["client"])["org"] is None


# ---------------------------------------------------------------------------------------------------------------
# deleting

def test_del_terminal_ends_its_tokens_tags_queues_and_place_and_counts_what_it_never_got(api, rest, app_, foreign):
    gone = new_client(api, app_, lat=BEIJING[0], lng=BEIJING[1])
    kept = new_client(api, app_)
    rest.ok("/manager/terminal_add_tag", {"tag": "t", "terminal_ids": ids_of(gone, kept)})
    job = api.new_job(app_)
    handed = push(rest, [gone], "handed out, never acknowledged", job_id=job)
    assert len(api.poll(gone)) == 1
    queued = push(rest, [gone], "still queued", job_id=job)
    assert terminal(rest, gone)["unacked_num"] == terminal(rest, gone)["queued_num"] == 1

    assert rest.ok("/manager/del_terminal", {"terminal_ids": gone["client_id"]}) == {"status": 1}
    # its tokens stop working, its id is unknown everywhere
    assert api.error("/comet/poll", {**gone, "timeout": 0}) == AUTH_FAILED
    assert api.error("/user/location", {**gone, "lat": 1, "lng": 1}) == AUTH_FAILED
    assert api.error("/user/token", {"client_id": gone["client_id"]}) == NOT_FOUND
    assert rest.error("/manager/query_terminal", {"terminal_id": gone["client_id"]}) == NOT_FOUND
    assert rest.error("/manager/del_terminal", {"terminal_ids": gone["client_id"]}) == NOT_FOUND
    assert [rest.error("/push/terminal", {"terminal_ids": gone["client_id"], "msg_type": 0, "msg": "x"})
            for _ in range(4)] == [NOT_FOUND] * 4
    # its tag, the app's broadcasts and the map no longer have it
    assert rest.ok("/manager/terminal_num_with_tag", {"tag": "t"})["num"] == 1
    assert listed(rest) == (1, [kept["client_id"]])
    assert (reached(rest, "/push/tags", tags="t"), reached(rest, "/push/all"), near(rest, BEIJING)) == (1, 1, 0)
    assert contents(api, rest, kept) == ["x", "x"]
    # what it was sent and never acknowledged counts as expired: sent = arrived + expired + failed
    for msg_id in (handed, queued):
        wait_status(rest, msg_id, sent_num=1, arrived_num=0, expired_num=1, failed_num=0)
    eventually(lambda: api.stats(app_, job), {"sent": 2, "arrived": 0, "expired": 2, "failed": 0}, f"job {job}")


def test_del_terminal_answers_its_parked_poll_and_refuses_the_next(api, rest, app_, redis_client):
    client = new_client(api, app_)
    poll = park_poll(api.base, redis_client, client, timeout=60)
    rest.ok("/manager/del_terminal", {"terminal_ids": client["client_id"]})
    assert poll.result(20) == []  # answered now, not after its 60 s
    assert api.error("/comet/poll", {**client, "timeout": 0}) == AUTH_FAILED


def test_del_terminal_refuses_bad_input_and_deletes_nothing(api, rest, app_, foreign):
    mine = [new_client(api, app_) for _ in range(2)]
    cases = [({"terminal_ids": ids_of(*mine, foreign["client"])}, NOT_FOUND),
             ({"terminal_ids": f"{ids_of(*mine)},{random_ids(1)}"}, NOT_FOUND),
             ({"terminal_ids": f"{ids_of(*mine)},bad-id"}, BAD_PARAM),
             ({"terminal_ids": ",".join([mine[0]["client_id"]] * 1001)}, BAD_PARAM),
             ({"terminal_ids": ""}, BAD_PARAM), ({}, BAD_PARAM)]
    assert [rest.error("/manager/del_terminal", params) for params, _ in cases] == [e for _, e in cases]
    assert listed(rest)[0] == 2
    assert terminal(foreign["rest"], foreign["client"])["terminal_id"] == foreign["client"]["client_id"]
    assert contents(api, rest, mine[0]) == []  # still polls, still reached
    rest.ok("/manager/del_terminal", {"terminal_ids": ids_of(*mine, mine[0])}, how="json")
    assert listed(rest) == (0, [])


def test_a_push_to_a_client_deleted_by_another_worker_is_refused(api, rest, app_, store):
    """A worker remembers the clients it found; one deleted by another worker (here: straight in SQL, which no
    worker hears of) is caught when the push is recorded, and nothing is recorded or sent."""
    client = new_client(api, app_)
    push(rest, [client], "known")
    store.delete_clients(app_["id"], [client["client_id"]])
    assert rest.error("/push/terminal", {"terminal_ids": client["client_id"], "msg_type": 0, "msg": "x"}) == NOT_FOUND
    assert api.error("/publish/private", {"job_id": api.new_job(app_), "client_id": client["client_id"],
                                          "msg_type": 0, "content": "x"}, app_) == NOT_FOUND


def test_a_deleted_device_registering_again_is_a_new_client_whose_old_tokens_stay_dead(api, rest, app_):
    device = "dev-" + uuid.uuid4().hex
    old = api.register(app_, device, org="acme")
    rest.ok("/manager/del_terminal", {"terminal_ids": old["client_id"]})
    new = api.register(app_, device, terminal_type="android", org="globex")
    assert new["client_id"] == old["client_id"] and new["token"] != old["token"]
    assert (terminal(rest, new)["terminal_type"], terminal(rest, new)["org"]) == ("android", "globex")
    assert api.error("/comet/poll", {**old, "timeout": 0}) == AUTH_FAILED
    assert contents(api, rest, new) == []  # its new token polls, and a push reaches it


# ---------------------------------------------------------------------------------------------------------------
# authentication and methods, as every REST call

def test_terminal_calls_authenticate_and_take_methods_like_the_other_rest_calls(api, rest, app_, foreign):
    client = new_client(api, app_)
    calls = {"/manager/query_terminal": {"terminal_id": client["client_id"]},
             "/manager/query_terminals": {"start": 0, "limit": 10},
             "/manager/update_terminal": {"terminal_id": client["client_id"], "org": "acme"},
             "/manager/del_terminal": {"terminal_ids": client["client_id"]}}
    wrong = [f"{failure}: {path} answered {got}"
             for failure, call in auth_failures(app_, foreign["app"]).items() for path, params in calls.items()
             if (got := error_of(call(rest, path, params))) != AUTH_FAILED]
    methods = [(path, m) for path in CHANGE_CALLS for m in ("GET", "PUT", "DELETE")]
    methods += [(path, m) for path in QUERY_CALLS for m in ("PUT", "DELETE")]
    wrong += [f"{m} {path} answered {got}" for path, m in methods
              if (got := rest.error(path, calls[path], method=m)) != NOT_ALLOWED]
    assert not wrong, "\n".join(wrong)
    assert terminal(rest, client)["org"] is None  # nothing changed
    for how in ("form", "json", "basic"):
        assert rest.ok("/manager/update_terminal", calls["/manager/update_terminal"], how=how)["data"]["org"] == "acme"

