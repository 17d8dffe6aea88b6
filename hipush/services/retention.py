"""Bounded data: pushes whose delivery is over are deleted once older than HIPUSH_RETENTION_DAYS, with their tag
links and the messages no push is left of; jobs and their counters stay.

A push's age counts from its push time (when it was due). Its delivery is over when it has expired, or when every
target is counted as arrived, expired or failed (a cancelled push has none); a push still being sent is over only
once expired. Timed pushes still waiting are never deleted, nor is a push whose counts still wait in Redis for the
flusher (it is marked for the flusher, and a later round takes it). One worker across all nodes runs a round every
ROUND_SECONDS (a Redis mark): it deletes BATCH pushes at a time by primary key with a pause in between, so no
statement holds locks for long, and stops after RUN_SECONDS; a backlog goes on in the next round.
"""
import logging
import time
from collections import Counter

from hipush_client.protocol import STATUS_CANCELLED, STATUS_FAILED, STATUS_SENDING, STATUS_SENT

from ..clock import now_ms

log = logging.getLogger("hipush.retention")

BATCH = 500
PAUSE_SECONDS = 0.1
RUN_SECONDS = 20
ROUND_SECONDS = 60
CHECK_SECONDS = 15  # how often each worker tries to claim the round
DAY_MS = 86_400_000


class Retention:
    def __init__(self, store, counters, marks, days: float):
        """counters: storage.counters.CounterStore; marks: storage.runs.RunMarks."""
        self.store = store
        self.counters = counters
        self.marks = marks
        self.days = days

    def run(self) -> None:
        """The periodic job: purges if this worker claimed the round."""
        if self.marks.claim("retention", ROUND_SECONDS):
            self.purge()

    def purge(self, seconds: float = RUN_SECONDS) -> dict:
        """Deletes what is due for deletion, batch by batch, for up to `seconds`; returns the rows deleted per table."""
        started = time.monotonic()
        now = now_ms()
        due_before = now - int(self.days * DAY_MS)
        deleted, batches, longest = Counter(), 0, 0.0
        for status in (STATUS_SENT, STATUS_FAILED, STATUS_CANCELLED, STATUS_SENDING):
            after = (-1, 0)
            found = BATCH
            while found == BATCH and time.monotonic() - started < seconds:
                batch_started = time.monotonic()
                rows = self.store.finished_pushes(status, status != STATUS_SENDING, due_before, now, after, BATCH)
                found = len(rows)
                if not rows:
                    break
                after = rows[-1][:2]
                unflushed = self.counters.unflushed("push", [push_id for _, push_id, _ in rows])
                if unflushed:  # makes sure a flusher takes them (one killed mid-flush lost their marks)
                    self.counters.mark_dirty([("push", push_id) for push_id in unflushed])
                rows = [row for row in rows if row[1] not in unflushed]
                if rows:
                    deleted.update(self.store.delete_pushes([push_id for _, push_id, _ in rows],
                                                            {message_id for _, _, message_id in rows}))
                batches += 1
                longest = max(longest, time.monotonic() - batch_started)
                time.sleep(PAUSE_SECONDS)  # under gevent: lets requests run, and other writers take the locks
        log.info("retention (%g days): deleted %d pushes, %d messages, %d tag links in %d batches, %.0f ms "
                 "(longest batch %.0f ms)", self.days, deleted["pushes"], deleted["messages"], deleted["push_topics"],
                 batches, 1000 * (time.monotonic() - started), 1000 * longest)
        return dict(deleted)
