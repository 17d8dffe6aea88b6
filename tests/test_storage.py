"""Contract of the Redis seam (hipush/storage): the same tests on every Redis the run has.

Always on an embedded redis-server of their own; also on the machine's Redis when HIPUSH_TEST_REDIS_URL
is set, and on the session's local Redis Cluster under HIPUSH_TEST_REDIS_CLUSTER=1, where keys of many
clients, rows and apps fall in different slots on different masters.
"""
import contextlib
import random
import threading
import time
import uuid

import pytest

from conftest import TEST_REDIS_CLUSTER, TEST_REDIS_URL
from hipush import config
from hipush.storage import keys, queues
from hipush.storage import redis as redis_pools
from hipush.storage.broadcasts import BroadcastMarks
from hipush.storage.clients import ClientMeta, GeoIndex
from hipush.storage.counters import CounterStore
from hipush.storage.embedded import EmbeddedRedis
from hipush.storage.guards import IdempotentAnswers, Nonces, RateWindows
from hipush.storage.nodes import NodeRegistry
from hipush.storage.routes import DeliveryQueue
from support import wait_for

LATER = int(time.time() * 1000) + 3_600_000
# ids of rows, apps and pushes no other run used: a Redis the run shares may hold an earlier run's keys
RUN = random.randrange(10**9, 2 * 10**9)
BACKENDS = ["embedded", *(["redis"] if TEST_REDIS_URL else []), *(["cluster"] if TEST_REDIS_CLUSTER else [])]


@pytest.fixture(scope="module", params=BACKENDS)
def seam(request, tmp_path_factory, local_cluster, redis_client):
    """RedisPools (storage/redis.py) on one backend, as a server makes them. (redis_client: the run's Redis
    belongs to the run's database before these tests write to it, or its servers would refuse it.)"""
    embedded = None
    if request.param == "embedded":
        embedded = EmbeddedRedis(tmp_path_factory.mktemp("seam", numbered=True))
        embedded.ensure_running(detach=False)
        made = redis_pools.connect(f"unix://{embedded.socket}", "", 20, 60)
    elif request.param == "redis":
        made = redis_pools.connect(TEST_REDIS_URL, "", 20, 60)
    else:
        made = redis_pools.connect("", local_cluster.seeds, 20, 60)
    yield made
    made.commands.close()
    if embedded:
        embedded.stop()


def test_a_page_enqueue_answers_in_client_order_across_slots(seam):
    """One script call per slot; each client's result comes back at its place in the page."""
    ops = queues.Queues(seam, queue_length=2)
    clients = [uuid.uuid4().hex for _ in range(40)]
    online = set(clients[::3])
    for client_id in online:
        seam.commands.set(keys.client_keys(client_id)["online"], 1, px=60_000)
    full = clients[1]
    for delivery in (1, 2):
        pipe = seam.pipeline()
        ops.enqueue(pipe, [full], queues.entry(delivery, 7, LATER, "{}"), False)
        pipe.execute()
    pipe = seam.pipeline()
    at = ops.enqueue(pipe, clients, queues.entry(3, 7, LATER, "{}"), True)
    results = ops.enqueued(pipe.execute(), at)
    assert len(at) == (1 if not seam.cluster else len({seam.slot(keys.client_keys(c)["queue"]) for c in clients}))
    assert results == [[] if c in online else None for c in clients]
    pipe = seam.pipeline()
    at = ops.enqueue(pipe, clients, queues.entry(4, 7, LATER, "{}"), False)
    results = ops.enqueued(pipe.execute(), at)
    assert results[1] == [b"1|7"]  # offline, it skipped 3; the cap of 2 dropped the oldest
    assert all(r == [] for i, r in enumerate(results) if i != 1)


def test_a_newer_poll_unblocks_the_older_where_it_is_parked(seam):
    ops = queues.Queues(seam, queue_length=10)
    client_id = uuid.uuid4().hex
    older = ops.hold(client_id)
    me = older.poller_id(1)
    ops.begin_poll(older, client_id, me, None, int(time.time() * 1000), 10, 60_000, 1000)
    steps = []
    waiter = threading.Thread(target=lambda: steps.append(
        ops.wait_and_take(older, client_id, me, 30, int(time.time() * 1000), 10, 1000)))
    waiter.start()
    try:
        newer = ops.hold(client_id)
        try:
            wait_for(lambda: _blocked(seam, older), message="the older poll to park")
            step = ops.begin_poll(newer, client_id, newer.poller_id(2), None, int(time.time() * 1000), 10, 60_000, 1000)
            assert step.poller == me
            ops.unblock(step.poller)
            waiter.join(10)
            assert not waiter.is_alive() and steps[0].poller == newer.poller_id(2)
        finally:
            newer.release()
    finally:
        waiter.join(30)
        older.release()


def test_a_message_that_wakes_a_replaced_poll_stays_queued_for_the_newer_one(seam):
    """The newer poll's CLIENT UNBLOCK can miss the older one (not parked yet); a message that then wakes the
    older one is left in the queue, where the newer poll's wait finds it at once, not after its timeout."""
    ops = queues.Queues(seam, queue_length=10)
    client_id, now = uuid.uuid4().hex, int(time.time() * 1000)
    older, newer = ops.hold(client_id), ops.hold(client_id)
    try:
        ops.begin_poll(older, client_id, older.poller_id(1), None, now, 10, 60_000, 1000)
        steps = []
        waiter = threading.Thread(target=lambda: steps.append(
            ops.wait_and_take(older, client_id, older.poller_id(1), 30, now, 10, 1000)))
        waiter.start()
        wait_for(lambda: _blocked(seam, older), message="the older poll to park")
        ops.begin_poll(newer, client_id, newer.poller_id(2), None, now, 10, 60_000, 1000)  # its unblock is lost
        pipe = seam.pipeline()
        ops.enqueue(pipe, [client_id], queues.entry(5, 7, LATER, "{}"), False)
        pipe.execute()
        waiter.join(10)
        assert not waiter.is_alive() and steps[0].poller == newer.poller_id(2) and steps[0].entries == []
        assert ops.states([client_id]) == [(True, 1, 0)]  # still queued, not moved in flight by the older wait
        step = ops.wait_and_take(newer, client_id, newer.poller_id(2), 30, now, 10, 1000)
        assert [queues.delivery_id(e) for e in step.entries] == ["5"]
    finally:
        older.release()
        newer.release()


def _blocked(seam, conn) -> bool:
    lists = seam.commands.execute_command("CLIENT LIST", **(
        {"target_nodes": seam.commands.get_node(node_name=conn.node)} if seam.cluster else {}))
    return any(c["id"] == str(conn.redis_client_id) and "b" in c["flags"] for c in lists)


def test_counters_of_many_rows_reach_their_flush_exactly_once(seam):
    counters = CounterStore(seam)
    rows = [("push", RUN + i) for i in range(50)]
    with _flushing_alone(counters):
        counters.add({row: {"sent": 2, "arrived": 1} for row in rows})
        assert counters.read(*rows[0]) == (None, {}, {"sent": 2, "arrived": 1})
        assert sorted(_take_dirty(counters, rows, 20)) == sorted(rows)
        claimed = counters.claim(rows)
        assert {(kind, row_id): deltas for kind, row_id, _, deltas in claimed} == \
            {row: {"sent": 2, "arrived": 1} for row in rows}
        token, pending, live = counters.read(*rows[0])
        assert token and pending == {"sent": 2, "arrived": 1} and live == {}
        counters.mark_applied(claimed)
        assert counters.claim(rows) == []


@contextlib.contextmanager
def _flushing_alone(counters):
    """Holds the flush lock, so that the run's servers (sharing this Redis) take none of the test's rows."""
    lock = counters.flush_lock()
    wait_for(lock.acquire, timeout=70, message="the flush lock (a killed flusher holds it for at most 60 s)")
    try:
        yield
    finally:
        lock.release()


def test_broadcast_marks_of_many_apps(seam):
    marks = BroadcastMarks(seam)
    apps = [RUN + i for i in range(30)]
    for app_id in apps[::2]:
        assert marks.set_if_free(app_id, "t", 30_000)
    assert not marks.set_if_free(apps[0], "u", 30_000)
    assert marks.marked(apps) == set(apps[::2])
    pipe = seam.pipeline()
    marks.renew(pipe, apps[0], 60_000)
    pipe.execute()
    marks.clear(apps[0], "someone else")
    assert apps[0] in marks.marked(apps)
    for app_id in apps[::2]:
        marks.clear(app_id, "t")
    assert marks.marked(apps) == set()


def test_route_jobs_of_many_pushes(seam):
    queue = DeliveryQueue(seam)
    terminal_type = f"t{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    first, second, gone = RUN + 1, RUN + 2, RUN + 3
    for push_id in (first, second):
        jobs = {terminal_type: [(f"{push_id}:c{i}", {"p": push_id, "i": i}) for i in range(3)]}
        assert queue.add(push_id, LATER, f'{{"id":{push_id}}}', jobs, now) == 3
    assert queue.add(first, LATER, f'{{"id":{first}}}', {terminal_type: [(f"{first}:c0", {})]}, now) == 0
    claimed = queue.claim(terminal_type, 10, now, 60_000)
    assert len(claimed) == 6 and queue.pending(terminal_type) == 6
    assert queue.bodies([first, second, gone]) == {first: {"id": first}, second: {"id": second}, gone: None}
    assert all(queue.finish(job) for job in claimed)
    assert queue.pending(terminal_type) == 0


def test_guards_nodes_and_client_meta(seam):
    tag = uuid.uuid4().hex
    windows = RateWindows(seam)
    assert [windows.hit(tag, 1, 1) for _ in range(3)] == [1, 2, 3]
    nonces = Nonces(seam)
    assert nonces.use("k", tag, 60) and not nonces.use("k", tag, 60)
    answers = IdempotentAnswers(seam)
    assert answers.claim("rest", 1, tag, "in-progress", 60) and not answers.claim("rest", 1, tag, "x", 60)
    assert answers.claim("legacy", 1, tag, "in-progress", 60)
    answers.put("rest", 1, tag, "done", 60)
    assert answers.get("rest", 1, tag) == b"done"
    answers.drop("rest", 1, tag)
    assert answers.get("rest", 1, tag) is None
    registry = NodeRegistry(seam)
    now = int(time.time() * 1000)
    registry.beat(f"10.0.0.1:{tag[:4]}", now, now - 60_000, {"parked_polls": 3})
    assert f"10.0.0.1:{tag[:4]}" in registry.since(now)
    assert (f"10.0.0.1:{tag[:4]}", now, {"parked_polls": 3}) in registry.since_with_figures(now)
    registry.remove(f"10.0.0.1:{tag[:4]}")
    assert f"10.0.0.1:{tag[:4]}" not in registry.since(0)
    meta = ClientMeta(seam, ttl=60)
    meta.cache(tag, 5, 3)
    meta.cache(tag, 5, 2)  # never lowers a cached epoch
    assert meta.get(tag) == {"app_id": 5, "epoch": 3}
    geo = GeoIndex(seam)
    geo.add(RUN, tag, 48.85, 2.35)
    assert geo.near(RUN, 48.851, 2.351, 1000) == [tag]


@pytest.mark.parametrize("env, complaint", [
    ({"HIPUSH_REDIS_CLUSTER_NODES": "10.0.0.1"}, "must be host:port"),
    ({"HIPUSH_REDIS_CLUSTER_NODES": "10.0.0.1:6379,:6380"}, "must be host:port"),
    ({"HIPUSH_REDIS_CLUSTER_NODES": "10.0.0.1:6379", "HIPUSH_REDIS_URL": "redis://h:6379/3"}, "database 0"),
    ({"HIPUSH_REDIS_CLUSTER_NODES": "10.0.0.1:6379", "HIPUSH_REDIS_URL": "unix:///tmp/r.sock"}, "redis:// or rediss://"),
])
def test_bad_cluster_settings_are_refused_with_a_clear_message(env, complaint, tmp_path):
    with pytest.raises(config.ConfigError, match=complaint):
        config.load({"HIPUSH_DATA_DIR": str(tmp_path), "HIPUSH_ENV_FILE": "/nonexistent", **env})


def test_cluster_settings_take_the_password_and_tls_from_the_redis_url(tmp_path):
    settings = config.load({"HIPUSH_DATA_DIR": str(tmp_path), "HIPUSH_ENV_FILE": "/nonexistent",
                            "HIPUSH_REDIS_CLUSTER_NODES": " 10.0.0.1:6379, 10.0.0.2:6380 ",
                            "HIPUSH_REDIS_URL": "rediss://user:secret@ignored:1/0"})
    assert settings.redis_cluster_nodes == "10.0.0.1:6379,10.0.0.2:6380" and not settings.embedded_redis
    assert settings.effective_redis_url == "rediss://user:secret@ignored:1/0"


def test_rows_marked_dirty_by_an_earlier_version_are_still_flushed(seam):
    """Before the dirty set was spread over shards, every row went to hp:cnt:dirty: an upgrade keeps them."""
    counters = CounterStore(seam)
    row = ("job", RUN + 100)
    with _flushing_alone(counters):
        seam.commands.sadd(keys.COUNTERS_DIRTY_BEFORE_SHARDS, f"{row[0]}:{row[1]}")
        assert _take_dirty(counters, [row], 1000) == [row]


def _take_dirty(counters, rows, batch) -> list:
    """Those of `rows` the dirty sets held, taken out by batches of `batch`; the rows of the run's servers go back."""
    taken = []
    while True:
        popped = [(kind, int(row_id)) for kind, row_id in counters.dirty(batch)]
        taken += popped
        if len(popped) < batch:
            break
    counters.mark_dirty([row for row in taken if row not in rows])
    return [row for row in taken if row in rows]


def test_scripts_a_server_lost_are_loaded_again_where_they_run(seam):
    """After a restart or a failover a master has no scripts: each call that misses loads its own on its master."""
    ops, counters = queues.Queues(seam, queue_length=5), CounterStore(seam)
    clients = [uuid.uuid4().hex for _ in range(20)]
    seam.commands.script_flush()
    pipe = seam.pipeline()
    at = ops.enqueue(pipe, clients, queues.entry(1, 7, LATER, "{}"), False)
    assert ops.enqueued(pipe.execute(), at) == [[]] * len(clients)
    seam.commands.script_flush()
    assert counters.read("push", RUN + 200) == (None, {}, {})
