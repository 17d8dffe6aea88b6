"""Delivery counters: live in Redis, flushed to SQL, each count exactly once (hipush.services.stats)."""
import logging

import pytest
import sqlalchemy as sa

from hipush.services.stats import Stats
from hipush.storage import keys
from hipush.storage import redis as redis_pools
from hipush.storage.counters import CounterStore
from hipush.clock import now_ms
from hipush.storage.db import make_engine
from hipush.storage.store import Store
from support import free_port, wait_for


@pytest.fixture
def stats(store, pools):
    return Stats(store, CounterStore(pools))


@pytest.fixture
def app_id(store):
    return store.create_app("stats")["id"]


@pytest.fixture
def job(store, app_id):
    return store.create_job(app_id, "j", "t")


@pytest.fixture
def pushes(store, app_id, job):
    """Two push rows of the job: counts given to a made-up push id would reach another test's real push."""
    return [store.create_push({"app_id": app_id, "job_id": job, "target": "{}", "online_only": False, "status": 0,
                               "push_time": now_ms(), "expires_at": now_ms()}, message={"msg_type": 0, "content": "c"})
            for _ in range(2)]


def test_totals_are_the_same_before_and_after_a_flush(stats, job, pushes):
    stats.count("sent", pushes[0], job, 3)
    stats.count_headers("arrived", [f"{pushes[0]}|{job}".encode(), f"{pushes[1]}|{job}".encode()])
    before = stats.totals("job", job)
    assert (before["sent"], before["arrived"]) == (3, 2)
    while stats.flush():
        pass
    assert stats.totals("job", job) == before
    stats.count("expired", pushes[0], job, 1)
    assert stats.totals("job", job)["expired"] == 1


def test_a_flush_interrupted_after_its_claim_is_applied_exactly_once(stats, store, job, pushes):
    stats.count("sent", pushes[0], job, 4)
    claimed = stats.counters.claim([("job", job)])  # the flusher dies here, before SQL
    assert stats.totals("job", job)["sent"] == 4  # still counted, from the pending half
    store.apply_counter_deltas(claimed)  # ...or here, after SQL, before marking applied
    assert stats.totals("job", job)["sent"] == 4
    stats.counters.mark_dirty([("job", job)])
    while stats.flush():
        pass
    assert stats.totals("job", job)["sent"] == 4
    assert store.counter_row("job", job)["sent"] == 4


def test_a_row_sql_refuses_is_logged_and_held_back_and_every_other_row_lands(store, app_id, spare_redis, caplog):
    """A counter row that cannot be applied (here: its id is no number) once failed its whole batch on every
    flush. Now it is found alone, logged at ERROR with its counts, and left out of the flushes for a while."""
    stats = Stats(store, CounterStore(_pools(spare_redis)))  # the only flusher of this Redis
    jobs = [store.create_job(app_id, "j", "t") for _ in range(20)]
    for n, job in enumerate(jobs):
        stats.count("sent", 0, job, n + 1)  # push id 0: no such row, the job rows are what is looked at
    stats.counters.add({("job", "bad"): {"sent": 7}, ("push", "worse"): {"arrived": 2}})
    with caplog.at_level(logging.ERROR, logger="hipush.stats"):
        stats.flush()
    assert [store.counter_row("job", job)["sent"] for job in jobs] == list(range(1, 21))
    refused = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert len(refused) == 2
    assert refused[0].startswith("counter row job bad (flush token ") and "{'sent': 7}" in refused[0]
    assert refused[1].startswith("counter row push worse (flush token ") and "{'arrived': 2}" in refused[1]
    assert stats.totals("job", jobs[0])["sent"] == 1
    caplog.clear()
    stats.count("arrived", 0, jobs[0], 1)
    stats.counters.add({("job", "bad"): {"sent": 1}})  # new counts of a held row wait with it
    with caplog.at_level(logging.ERROR, logger="hipush.stats"):
        stats.flush()
    assert store.counter_row("job", jobs[0])["arrived"] == 1
    assert not caplog.records  # not tried again at once
    assert {m for m in spare_redis.zrange(keys.COUNTERS_HELD, 0, -1)} == {b"job:bad", b"push:worse"}


def test_a_database_that_does_not_answer_holds_no_row_back(spare_redis):
    """When the database itself fails, no row is to blame: every row waits for the next flush, none is held."""
    unreachable = Store(make_engine(f"mysql+pymysql://root@127.0.0.1:{free_port()}/hipush"))
    stats = Stats(unreachable, CounterStore(_pools(spare_redis)))
    stats.count("sent", 1, 1, 3)
    with pytest.raises(sa.exc.OperationalError):
        stats.flush()
    assert spare_redis.zcard(keys.COUNTERS_HELD) == 0
    assert set().union(*(spare_redis.smembers(keys.counters_dirty(shard)) for shard in range(keys.DIRTY_SHARDS))) \
        == {b"push:1", b"job:1"}


def _pools(spare_redis):
    return redis_pools.connect(spare_redis.url, "", 5, 60)


def _push_rest(api, store, app, client, **params) -> int:
    """/push/terminal to one client; returns the id of its push row (where its counters are flushed to)."""
    response = api.call("/push/terminal", {"terminal_ids": client["client_id"], "msg_type": 0, "msg": "m", **params},
                        app, method="POST")
    assert response.status_code == 200, response.text
    return wait_for(lambda: store.pushes_of_message(app["id"], response.json()["msg_id"]))[0]["id"]


def _sql_counts(store, kind, row_id) -> tuple:
    row = store.counter_row(kind, row_id)
    return row["sent"], row["arrived"]


def test_counts_that_cancel_out_never_stall_the_flush(server, api, app_, store, redis_client, pools):
    """A counter row of all zeros (counts that cancel out) once made an UPDATE with no assignments that failed
    every flush from then on."""
    client = api.register(app_, "never-polled")
    cancelled = _push_rest(api, store, app_, client, online="true")  # not queued: counts nothing
    CounterStore(pools).add({("push", cancelled): {"sent": 0}})
    # generous deadlines: a worker an earlier test killed may hold the flush lock until it expires
    wait_for(lambda: redis_client.hget(keys.counter_keys("push", cancelled)[1], "applied") == b"1",
             timeout=45, message="the zero row flushed")
    job = api.new_job(app_)
    api.send(app_, job, client, "legacy")
    pushed = _push_rest(api, store, app_, client)
    assert len(api.receive(client, 2)) == 2  # acknowledged: arrived
    # the SQL rows themselves, not the API (which adds what Redis still holds)
    wait_for(lambda: _sql_counts(store, "job", job) == (1, 1) and _sql_counts(store, "push", pushed) == (1, 1),
             timeout=45, message="the counts in SQL")
    assert _sql_counts(store, "push", cancelled) == (0, 0)
