"""Delivery counters: live in Redis, flushed to SQL, each count exactly once (hipush.services.stats)."""
import pytest

from hipush.services.stats import Stats
from hipush.storage import keys
from hipush.storage.counters import CounterStore
from hipush.storage.db import now_ms
from support import wait_for


@pytest.fixture
def stats(store, redis_client):
    return Stats(store, CounterStore(redis_client), redis_client)


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


def _push_rest(api, store, app, client, **params) -> int:
    """/push/terminal to one client; returns the id of its push row (where its counters are flushed to)."""
    response = api.call("/push/terminal", {"terminal_ids": client["client_id"], "msg_type": 0, "msg": "m", **params},
                        app, method="POST")
    assert response.status_code == 200, response.text
    return wait_for(lambda: store.pushes_of_message(app["id"], response.json()["msg_id"]))[0]["id"]


def _sql_counts(store, kind, row_id) -> tuple:
    row = store.counter_row(kind, row_id)
    return row["sent"], row["arrived"]


def test_counts_that_cancel_out_never_stall_the_flush(server, api, app_, store, redis_client):
    """An online-only push to a client that is not polling counts sent +1 and takes it back: a counter row
    of all zeros, which once made an UPDATE with no assignments that failed every flush from then on."""
    client = api.register(app_, "never-polled")
    cancelled = _push_rest(api, store, app_, client, online="true")
    wait_for(lambda: redis_client.hget(keys.counter_keys("push", cancelled)[1], "applied") == b"1",
             message="the zero row flushed")
    job = api.new_job(app_)
    api.send(app_, job, client, "legacy")
    pushed = _push_rest(api, store, app_, client)
    assert len(api.receive(client, 2)) == 2  # acknowledged: arrived
    # the SQL rows themselves, not the API (which adds what Redis still holds)
    wait_for(lambda: _sql_counts(store, "job", job) == (1, 1) and _sql_counts(store, "push", pushed) == (1, 1),
             message="the counts in SQL")
    assert _sql_counts(store, "push", cancelled) == (0, 0)
