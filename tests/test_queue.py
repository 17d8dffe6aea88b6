"""The client queue with its ack cursor (hipush.storage.queues), against the run's real Redis."""
import time
import uuid

import pytest

from hipush.storage import keys, queues

NOW = int(time.time() * 1000)
LATER = NOW + 3_600_000


@pytest.fixture
def ops(pools):
    return queues.Queues(pools, queue_length=5)


@pytest.fixture
def client_id():
    return uuid.uuid4().hex


def publish(ops, redis_client, client_id, delivery_id, expires=LATER, online_only=False, job=7):
    pipe = ops.pools.pipeline()
    at = ops.enqueue(pipe, [client_id], queues.entry(delivery_id, job, expires, f'{{"id":{delivery_id}}}'), online_only)
    return ops.enqueued(pipe.execute(), at)[0]


def begin(ops, redis_client, client_id, ack=None, me="p1", now=NOW, limit=100):
    return ops.begin_poll(redis_client, client_id, me, ack, now, limit, 60_000, 1000)


def ids(step):
    return [int(queues.message_json(e)[6:-1]) for e in step.entries]


def test_messages_stay_in_flight_until_acknowledged(ops, redis_client, client_id):
    for i in (1, 2, 3):
        publish(ops, redis_client, client_id, i)
    assert ids(begin(ops, redis_client, client_id)) == [1, 2, 3]
    assert ids(begin(ops, redis_client, client_id)) == [1, 2, 3]  # not acknowledged: handed out again
    step = begin(ops, redis_client, client_id, ack="2")
    assert step.acked == [b"1|7", b"2|7"]
    assert ids(step) == [3]
    assert begin(ops, redis_client, client_id, ack="3").entries == []


def test_ack_of_an_unknown_id_acknowledges_nothing(ops, redis_client, client_id):
    publish(ops, redis_client, client_id, 10)
    begin(ops, redis_client, client_id)
    step = begin(ops, redis_client, client_id, ack="1")  # "1" is a prefix of "10", not the same id
    assert step.acked == [] and ids(step) == [10]


def test_redelivery_comes_first_then_new_messages_in_publish_order(ops, redis_client, client_id):
    publish(ops, redis_client, client_id, 1)
    begin(ops, redis_client, client_id)
    publish(ops, redis_client, client_id, 2)
    assert ids(begin(ops, redis_client, client_id)) == [1, 2]


def test_expired_messages_are_dropped_and_reported(ops, redis_client, client_id):
    publish(ops, redis_client, client_id, 1, expires=NOW - 1)
    publish(ops, redis_client, client_id, 2)
    step = begin(ops, redis_client, client_id)
    assert step.expired == [b"1|7"] and ids(step) == [2]
    step = begin(ops, redis_client, client_id, now=LATER + 1)  # 2 expires while in flight
    assert step.expired == [b"2|7"] and step.entries == []


def test_queue_cap_drops_the_oldest_and_counts_them_missed(ops, redis_client, client_id):
    dropped = [publish(ops, redis_client, client_id, i) for i in range(1, 8)]
    assert dropped[:5] == [[]] * 5 and dropped[5:] == [[b"1|7"], [b"2|7"]]
    step = begin(ops, redis_client, client_id)
    assert ids(step) == [3, 4, 5, 6, 7] and step.missed == 2
    assert begin(ops, redis_client, client_id).missed == 0


def test_online_only_skips_a_client_without_presence(ops, redis_client, client_id):
    assert publish(ops, redis_client, client_id, 1, online_only=True) is None
    begin(ops, redis_client, client_id)  # a poll marks the client online
    assert publish(ops, redis_client, client_id, 2, online_only=True) == []


def test_a_poll_limit_leaves_the_rest_queued(ops, redis_client, client_id):
    for i in (1, 2, 3):
        publish(ops, redis_client, client_id, i)
    assert ids(begin(ops, redis_client, client_id, limit=2)) == [1, 2]
    assert ids(begin(ops, redis_client, client_id, ack="2", limit=2)) == [3]


def held_connection(ops, client_id):
    return ops.hold(client_id)


def wait_and_take(ops, held, client_id, me, timeout=0.05, now=NOW, before=()):
    return ops.wait_and_take(held, client_id, me, timeout, now, 100, 1000, before=before)


def test_newer_poller_replaces_the_older(ops, redis_client, client_id):
    begin(ops, redis_client, client_id, me="old")
    assert begin(ops, redis_client, client_id, me="new").poller == "old"
    publish(ops, redis_client, client_id, 1)
    held = held_connection(ops, client_id)
    try:
        step = wait_and_take(ops, held, client_id, "old")
        assert step.poller == "new" and step.entries == [] and not step.ended
        assert ops.states([client_id]) == [(True, 1, 0)]  # what woke it stays queued for the newer poll
        ops.end_poll(redis_client, client_id, "old", 1000)  # not current: leaves the poller alone
        assert redis_client.get(keys.client_keys(client_id)["poller"]) == b"new"
        step = wait_and_take(ops, held, client_id, "new")
        assert ids(step) == [1] and step.ended
        assert redis_client.get(keys.client_keys(client_id)["poller"]) is None  # handing out messages ended it
        assert redis_client.pttl(keys.client_keys(client_id)["online"]) <= 1000
    finally:
        held.release()


def test_a_wait_takes_what_woke_it_into_flight_in_one_write(ops, redis_client, client_id):
    begin(ops, redis_client, client_id, me="p")
    publish(ops, redis_client, client_id, 1)
    publish(ops, redis_client, client_id, 2)
    held = held_connection(ops, client_id)
    try:
        counted = f"test:{client_id}"  # commands sent in the same write, ahead of the wait
        step = wait_and_take(ops, held, client_id, "p", before=[("HINCRBY", counted, "n", 2)])
        assert ids(step) == [1, 2] and step.ended
        k = keys.client_keys(client_id)
        assert redis_client.llen(k["queue"]) == 0 and redis_client.llen(k["inflight"]) == 2
        assert redis_client.hget(counted, "n") == b"2"
    finally:
        held.release()


def test_a_wait_that_runs_out_ends_the_poll(ops, redis_client, client_id):
    begin(ops, redis_client, client_id, me="p")
    held = held_connection(ops, client_id)
    try:
        step = wait_and_take(ops, held, client_id, "p")
        assert step.entries == [] and step.ended
        assert redis_client.get(keys.client_keys(client_id)["poller"]) is None
    finally:
        held.release()


def test_a_wake_up_for_expired_messages_only_keeps_the_poll_waiting(ops, redis_client, client_id):
    begin(ops, redis_client, client_id, me="p")
    publish(ops, redis_client, client_id, 1, expires=NOW - 1)
    held = held_connection(ops, client_id)
    try:
        step = wait_and_take(ops, held, client_id, "p")
        assert step.expired == [b"1|7"] and step.entries == [] and not step.ended
        assert redis_client.get(keys.client_keys(client_id)["poller"]) == b"p"
    finally:
        held.release()


def test_the_first_script_checks_the_token_epoch_before_changing_anything(ops, redis_client, client_id):
    publish(ops, redis_client, client_id, 1)
    assert begin_with_epoch(ops, redis_client, client_id, 3).auth == "missing"
    redis_client.hset(keys.client_meta(client_id), mapping={"app_id": 9, "epoch": 4})
    assert begin_with_epoch(ops, redis_client, client_id, 3).auth == "revoked"
    assert redis_client.get(keys.client_keys(client_id)["poller"]) is None  # nothing changed
    step = begin_with_epoch(ops, redis_client, client_id, 4)
    assert step.auth == "ok" and step.app_id == 9 and ids(step) == [1]


def test_a_removed_client_is_emptied_refused_and_queued_for_no_more_until_revived(ops, redis_client, client_id):
    for i in (1, 2, 3):
        publish(ops, redis_client, client_id, i)
    begin(ops, redis_client, client_id, limit=1)  # 1 handed out, not acknowledged
    redis_client.set(keys.client_keys(client_id)["poller"], "42:7")
    pipe = ops.pools.pipeline()
    ops.remove(pipe, client_id, 9, 60)
    assert ops.removed(pipe.execute()[0]) == ("42:7", [b"1|7", b"2|7", b"3|7"])  # what it never got, in order
    assert [k for k in keys.client_keys(client_id).values() if redis_client.exists(k)] == []
    # a publish that read the client's row before it was deleted queues nothing (counted as skipped)
    assert publish(ops, redis_client, client_id, 4) is None
    assert begin_with_epoch(ops, redis_client, client_id, 0).auth == "revoked"
    ops.revive(client_id)  # registered again
    assert publish(ops, redis_client, client_id, 5) == []
    assert begin_with_epoch(ops, redis_client, client_id, 0).auth == "missing"  # cached afresh from SQL


def begin_with_epoch(ops, redis_client, client_id, epoch):
    return ops.begin_poll(redis_client, client_id, "p", None, NOW, 100, 60_000, 1000, epoch=epoch)


def test_a_script_redis_lost_is_loaded_again(ops, redis_client, client_id):
    """ScriptPipeline sends EVALSHA alone; after SCRIPT FLUSH (or a Redis restart) it loads and re-runs."""
    publish(ops, redis_client, client_id, 1)
    redis_client.script_flush()
    publish(ops, redis_client, client_id, 2)
    assert ids(begin(ops, redis_client, client_id)) == [1, 2]


def test_a_wait_whose_take_script_was_lost_loads_it_and_takes(ops, redis_client, client_id):
    """The first poll on a server without the take script (a restart, a failover, a cluster master's first
    poll) loads it and hands out what woke it."""
    begin(ops, redis_client, client_id, me="p")
    publish(ops, redis_client, client_id, 1)
    redis_client.script_flush()
    held = held_connection(ops, client_id)
    try:
        step = wait_and_take(ops, held, client_id, "p")
        assert ids(step) == [1] and step.ended
    finally:
        held.release()
