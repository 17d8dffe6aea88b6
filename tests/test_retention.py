"""Bounded data: pushes and messages whose delivery is over go once older than HIPUSH_RETENTION_DAYS; recent ones,
waiting timers, pushes with counts not yet flushed, jobs and their counters stay. "Old" rows are made by moving
a push's time back in SQL, as if days had passed."""
import tempfile

import pytest
import sqlalchemy as sa

from hipush import config as config_module
from hipush.services.retention import Retention
from hipush.storage.counters import CounterStore
from hipush.clock import now_ms
from hipush.storage.db import push_topics, pushes
from hipush.storage.runs import RunMarks
from hipush.storage.store import Store
from hipush_client.protocol import STATUS_SENT, STATUS_WAITING
from support import Api, PrivateRedis, Server, wait_for

DAY_MS = 86_400_000


def msg_status(api: Api, app: dict, msg_id: int):
    """(http status, body) of query_msg_status."""
    response = api.call("/manager/query_msg_status", {"msg_id": msg_id}, app)
    return response.status_code, response.json()


def move_back(store: Store, push_id: int, days: float, expired: bool) -> None:
    """Makes a push `days` old; `expired`: it expired an hour after it was due (else it expires tomorrow)."""
    due = now_ms() - int(days * DAY_MS)
    with store.engine.begin() as conn:
        conn.execute(pushes.update().where(pushes.c.id == push_id).values(
            push_time=due, expires_at=due + 3_600_000 if expired else now_ms() + DAY_MS))


def record_push(store: Store, app: dict, job_id, status: int, due: int, expires_at: int) -> dict:
    """A message and its push to one client that never took it, written as the publish path writes them."""
    message = {"job_id": job_id, "msg_type": 0, "content": "kept?"}
    push = {"app_id": app["id"], "message_id": None, "job_id": job_id, "target": '{"kind": "all"}',
            "online_only": False, "status": status, "push_time": due, "expires_at": expires_at, "target_num": 1}
    push["id"] = store.create_push(push, (), message)
    return push


def published(api: Api, app: dict, job_id, client: dict, content: str, acked: bool) -> dict:
    """Publishes one message to the client, which takes it ({"id": delivery id, "msg_id": ...}) and, if `acked`,
    acknowledges it."""
    api.send(app, job_id, client, content)
    message = wait_for(lambda: api.poll(client, timeout=1), message=f"{content!r} delivered")[-1]
    if acked:
        api.poll(client, ack=message["id"], timeout=0)
    return message


def flushed(store: Store, counters: CounterStore, push_id: int, arrived: int) -> bool:
    """The push's arrivals are in SQL and its flush is over: a flush marks its claim applied in Redis after the
    SQL commit, and until then the purge leaves the push be."""
    return store.counter_row("push", push_id)["arrived"] == arrived and not counters.unflushed("push", [push_id])


def test_old_finished_deliveries_go_recent_and_unfinished_stay(server, api, app_, store, pools):
    client = api.register(app_, "d")
    job = api.new_job(app_)
    counted = published(api, app_, job, client, "arrived long ago", acked=True)
    late = published(api, app_, job, client, "acknowledged late", acked=False)
    counters = CounterStore(pools)
    wait_for(lambda: flushed(store, counters, counted["id"], 1), message="the arrival flushed to SQL")
    stats_before = api.stats(app_, job)
    assert (stats_before["sent"], stats_before["arrived"]) == (2, 1)
    now = now_ms()
    lost = record_push(store, app_, job, STATUS_SENT, now - 2 * DAY_MS, now - 2 * DAY_MS + 3_600_000)
    undelivered = record_push(store, app_, job, STATUS_SENT, now - 2 * DAY_MS, now + DAY_MS)
    recent = record_push(store, app_, job, STATUS_SENT, now - DAY_MS // 2, now - 1)
    timer = record_push(store, app_, job, STATUS_WAITING, now + 3_600_000, now + DAY_MS)
    topic = store.topic_id(app_["id"], "old-news", create=True)
    with store.engine.begin() as conn:
        conn.execute(push_topics.insert().values(topic_id=topic, push_id=lost["id"]))
    move_back(store, counted["id"], 2, expired=False)  # not expired, but its one target counted
    move_back(store, late["id"], 2, expired=True)
    flush_lock = counters.flush_lock()
    wait_for(flush_lock.acquire, message="the flush lock")  # no flusher anywhere until released
    try:
        api.poll(client, ack=late["id"], timeout=0)  # its count waits in Redis: the push must stay
        # ...and as a flusher killed mid-flush leaves it: its row's mark taken, the count never applied
        marked = counters.dirty(1_000_000)
        counters.mark_dirty([(kind, row_id) for kind, row_id in marked if (kind, row_id) != ("push", str(late["id"]))])
        retention = Retention(store, counters, RunMarks(pools), days=1)
        deleted = retention.purge()
        assert deleted["pushes"] >= 2 and deleted["messages"] >= 2 and deleted["push_topics"] >= 1
        assert msg_status(api, app_, counted["msg_id"])[0] == 404
        assert msg_status(api, app_, lost["message_id"]) == (404, {"status": 0, "error_code": 1026,
                                                                   "error": "no such message"})
        for kept in (late["msg_id"], undelivered["message_id"], recent["message_id"], timer["message_id"]):
            assert msg_status(api, app_, kept)[0] == 200
        assert store.get_message(app_["id"], lost["message_id"]) is None
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(push_topics)
                                .where(push_topics.c.push_id == lost["id"])).scalar() == 0
    finally:
        flush_lock.release()
    wait_for(lambda: flushed(store, counters, late["id"], 1), message="the held count flushed (marked again by the purge)")
    retention.purge()
    assert msg_status(api, app_, late["msg_id"])[0] == 404  # its count is in SQL now
    for kept in (undelivered["message_id"], recent["message_id"], timer["message_id"]):
        assert msg_status(api, app_, kept)[0] == 200
    assert api.stats(app_, job) == {**stats_before, "arrived": 2}  # the job and its counters stay


def test_the_periodic_job_purges_on_a_running_node(backend_env, store, api, server):
    """A node with HIPUSH_RETENTION_DAYS=1 (and a Redis of its own: no other node takes its rounds) purges at its
    first check (15 s after a worker starts), then each minute."""
    app = store.create_app("retention")
    old = record_push(store, app, None, STATUS_SENT, now_ms() - 2 * DAY_MS, now_ms() - DAY_MS)
    young = record_push(store, app, None, STATUS_SENT, now_ms() - DAY_MS // 2, now_ms() - 1)
    private_redis = PrivateRedis()
    private_redis.start()
    node = None
    try:
        env = {name: value for name, value in backend_env.items() if name != "HIPUSH_REDIS_CLUSTER_NODES"}
        node = Server({**env, "HIPUSH_REDIS_URL": private_redis.url, "HIPUSH_RETENTION_DAYS": "1"}).start()
        wait_for(lambda: msg_status(api, app, old["message_id"])[0] == 404, timeout=60, interval=0.5,
                 message="the old push purged")
        assert msg_status(api, app, young["message_id"])[0] == 200
        wait_for(lambda: "retention (1 days): deleted" in node.log_path.read_text(), message="the run logged")
    finally:
        if node:
            node.stop()
        private_redis.stop()


def test_retention_days_setting():
    env = {"HIPUSH_ENV_FILE": "/nonexistent", "HIPUSH_SECRET_KEY": "k", "HIPUSH_DATA_DIR": tempfile.gettempdir()}
    assert config_module.load(env).retention_days == 30
    assert config_module.load({**env, "HIPUSH_RETENTION_DAYS": "0.5"}).retention_days == 0.5
    for bad in ("-1", "forever", "nan"):
        with pytest.raises(config_module.ConfigError, match="HIPUSH_RETENTION_DAYS must be"):
            config_module.load({**env, "HIPUSH_RETENTION_DAYS": bad})
