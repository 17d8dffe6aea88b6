"""Delivery counters: live in Redis, flushed to SQL, each count exactly once (hipush.services.stats)."""
import pytest

from hipush.services.stats import Stats
from hipush.storage.counters import CounterStore


@pytest.fixture
def stats(store, pools):
    return Stats(store, CounterStore(pools))


@pytest.fixture
def job(store):
    app = store.get_app(store.create_app("stats")["app_key"])
    return store.create_job(app["id"], "j", "t")


def test_totals_are_the_same_before_and_after_a_flush(stats, job):
    stats.count("sent", 1, job, 3)
    stats.count_headers("arrived", [f"1|{job}".encode(), f"2|{job}".encode()])
    before = stats.totals("job", job)
    assert (before["sent"], before["arrived"]) == (3, 2)
    while stats.flush():
        pass
    assert stats.totals("job", job) == before
    stats.count("expired", 1, job, 1)
    assert stats.totals("job", job)["expired"] == 1


def test_a_flush_interrupted_after_its_claim_is_applied_exactly_once(stats, store, job):
    stats.count("sent", 1, job, 4)
    claimed = stats.counters.claim([("job", job)])  # the flusher dies here, before SQL
    assert stats.totals("job", job)["sent"] == 4  # still counted, from the pending half
    store.apply_counter_deltas(claimed)  # ...or here, after SQL, before marking applied
    assert stats.totals("job", job)["sent"] == 4
    stats.counters.mark_dirty([("job", job)])
    while stats.flush():
        pass
    assert stats.totals("job", job)["sent"] == 4
    assert store.counter_row("job", job)["sent"] == 4
