"""One truth for a publish (hipush/services/publish.py): each step of a publish is made to fail in turn.

A call answered with an error is never delivered; a call answered OK has its push row and is delivered
(at least once: here exactly once, since a retry skips the clients that have the push); the counts and a
broadcast's target_num agree with what the clients got. The enqueue is failed deterministically by making
one client's cached meta key the wrong Redis type (its script call errors before it writes); on a cluster,
by killing the master of one shard.
"""
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hipush.services.publish import STATUS_SENDING, STATUS_SENT
from hipush.storage import keys
from hipush.storage.db import pushes
from support import Api, Relay, Server, pushes_of_job, wait_for

LEASE = "1"  # HIPUSH_SEND_LEASE of this module's server: a stalled push is retried after a second


@pytest.fixture(scope="module")
def quick_retry(backend_env):
    """A server whose workers take over a stalled push after LEASE seconds."""
    srv = Server({**backend_env, "HIPUSH_SEND_LEASE": LEASE}, workers=1).start()
    yield srv
    srv.stop()


@pytest.fixture
def rest(quick_retry, app_):
    return Api(quick_retry.base)


def _poison(redis_client, client):
    """Makes the client's enqueue fail before it writes anything (WRONGTYPE on its meta)."""
    meta = keys.client_meta(client["client_id"])
    redis_client.delete(meta)
    redis_client.set(meta, "not a hash")
    return meta


def _push_row(store, push_id):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(pushes).where(pushes.c.id == push_id)).mappings().first()


def _drain(api, client, expect: int) -> list:
    """What the client gets: `expect` messages, then a short poll that must find nothing more. (A first poll
    after a failover may answer 503: its worker reads the new slot map; what it took is handed out again.)"""
    wait_for(lambda: api.poll_response(client, timeout=0).status_code == 200, message="a poll answered")
    got = api.receive(client, expect)
    return got + api.poll(client, ack=got[-1]["id"] if got else None, timeout=1)


def test_a_unicast_whose_enqueue_fails_after_its_commit_answers_ok_and_is_delivered_once(
        rest, app_, store, redis_client):
    job = rest.new_job(app_)
    client = rest.register(app_, "unlucky")
    meta = _poison(redis_client, client)
    rest.send(app_, job, client, "committed first")  # OK: the row is the truth
    [push] = pushes_of_job(store, job)
    assert push["status"] == STATUS_SENDING  # not queued yet
    redis_client.delete(meta)  # the shard is back: the retry queues it
    wait_for(lambda: _push_row(store, push["id"])["status"] == STATUS_SENT, message="the push retried and sent")
    assert [m["content"] for m in _drain(rest, client, 1)] == ["committed first"]
    wait_for(lambda: rest.stats(app_, job)["sent"] == 1 and rest.stats(app_, job)["arrived"] == 1,
             message=f"the counts agree: {rest.stats(app_, job)}")


def test_a_broadcast_that_fails_half_way_is_finished_by_the_retry_with_counts_that_agree(
        rest, app_, store, redis_client):
    clients = [rest.register(app_, f"many-{i}") for i in range(6)]
    meta = _poison(redis_client, clients[3])  # on one Redis: clients before it are queued, it and after not
    response = rest.call("/push/all", {"msg_type": 0, "msg": "to all"}, app_, method="POST")
    assert response.status_code == 200, response.text  # answered once recorded: the retry finishes it
    msg_id = response.json()["msg_id"]
    [push] = wait_for(lambda: store.pushes_of_message(app_["id"], msg_id))
    redis_client.delete(meta)
    wait_for(lambda: _push_row(store, push["id"])["status"] == STATUS_SENT, timeout=30,
             message="the broadcast finished by a retry")
    for client in clients:
        assert [m["content"] for m in _drain(rest, client, 1)] == ["to all"], client

    def status():
        return rest.call("/manager/query_msg_status", {"msg_id": msg_id}, app_).json()["data"][0]
    wait_for(lambda: (status()["target_num"], status()["sent_num"], status()["arrived_num"]) == (6, 6, 6),
             message="target_num, sent and deliveries agree")


@pytest.fixture
def cut_database(backend_env, app_):
    """A server reaching the run's MySQL through a relay the test cuts (SQL down before the commit)."""
    if not backend_env.get("HIPUSH_DATABASE_URL", "").startswith("mysql"):
        pytest.skip("needs a MySQL database (HIPUSH_TEST_DATABASE_URL) to cut")
    url = make_url(backend_env["HIPUSH_DATABASE_URL"])
    relay = Relay(url.port or 3306).mend()
    relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    srv = Server({**backend_env, "HIPUSH_DATABASE_URL": relayed, "HIPUSH_SEND_LEASE": LEASE}, workers=1).start()
    yield srv, relay
    srv.stop()
    relay.cut()


def test_a_publish_answered_with_an_error_because_sql_is_down_is_never_delivered(
        cut_database, app_, store, redis_client):
    srv, relay = cut_database
    api = Api(srv.base)
    job = api.new_job(app_)
    client = api.register(app_, "sql-cut")
    relay.cut()
    response = api.call("/publish/private", {"job_id": job, "client_id": client["client_id"], "msg_type": 0,
                                             "content": "never", "online": "false"}, app_)
    assert response.status_code == 503, response.text
    relay.mend()
    wait_for(lambda: api.call("/publish/private", {"job_id": job, "client_id": client["client_id"], "msg_type": 0,
                                                   "content": "after", "online": "false"}, app_).status_code == 200,
             timeout=30, message="publishing again once SQL is back")
    contents = [m["content"] for m in _drain(api, client, 1)]
    assert "never" not in contents and contents.count("after") >= 1
    assert all(json.loads(p["target"])["ids"] == [client["client_id"]] for p in pushes_of_job(store, job))
    assert len(pushes_of_job(store, job)) == contents.count("after")  # a row for each delivered, none other


@pytest.mark.cluster
def test_publishes_while_a_shard_master_is_killed_are_delivered_iff_answered_ok(
        rest, app_, store, redis_client, local_cluster):
    """Unicasts to clients on every shard and a broadcast, while one master is dead and its replica not yet
    promoted: each OK is delivered (once its shard is back), each error never; the broadcast's counts agree."""
    job = rest.new_job(app_)
    clients = [rest.register(app_, f"sharded-{i}") for i in range(9)]
    victim = local_cluster.master_of(keys.client_keys(clients[0]["client_id"])["queue"])
    local_cluster.kill(victim)
    try:
        answered = {}
        for client in clients:
            response = rest.call("/publish/private", {"job_id": job, "client_id": client["client_id"],
                                                      "msg_type": 0, "content": "during", "online": "false"}, app_)
            assert response.status_code in (200, 503), response.text
            answered[client["client_id"]] = response.status_code == 200
        response = rest.call("/push/all", {"msg_type": 0, "msg": "to all"}, app_, method="POST")
        broadcast = response.json()["msg_id"] if response.status_code == 200 else None
        assert broadcast is not None or response.status_code == 503, response.text
        print(f"\nwith a master down: {sum(answered.values())} of {len(clients)} unicasts answered OK, the broadcast "
              f"{'OK' if broadcast else '503'}")
        recovery = local_cluster.node_timeout / 1000 + 30
        wait_for(lambda: all(p["status"] == STATUS_SENT for p in pushes_of_job(store, job)), timeout=recovery,
                 message="every recorded publish sent once the replica took over")
        if broadcast:
            wait_for(lambda: store.pushes_of_message(app_["id"], broadcast)[0]["status"] == STATUS_SENT,
                     timeout=recovery, message="the broadcast sent")
        for client in clients:
            contents = [m["content"] for m in _drain(rest, client, answered[client["client_id"]] + bool(broadcast))]
            assert contents.count("during") == answered[client["client_id"]], (client, contents)
            assert contents.count("to all") == bool(broadcast), (client, contents)
        assert len(pushes_of_job(store, job)) == sum(answered.values())  # a row for each OK, none other
        if broadcast:
            def status():
                return rest.call("/manager/query_msg_status", {"msg_id": broadcast}, app_).json()["data"][0]
            wait_for(lambda: (status()["target_num"], status()["sent_num"], status()["arrived_num"]) == (9, 9, 9),
                     message="target_num, sent and deliveries agree")
    finally:
        local_cluster.restart(victim)
        local_cluster.wait_healthy()
