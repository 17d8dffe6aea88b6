"""Per-job and per-push delivery counters: sent, arrived, expired, failed, clicked (SPEC §3)."""
import logging
import time
from collections import Counter, defaultdict

from ..storage.counters import COUNTER_FIELDS

log = logging.getLogger("hipush.stats")
HOLD_SECONDS = 60  # a counter row that SQL refuses is tried again after this, never ahead of the others


def header_counts(field: str, headers) -> list:
    """(field, push id, job id, 1) for each queue entry header b"delivery_id|job_id" (job id may be empty)."""
    return [(field, *header.decode().split("|"), 1) for header in headers]


class Stats:
    def __init__(self, store, counters):
        self.store = store
        self.counters = counters
        self._unsent = []  # increments whose shard failed: sent again by the next flush of this worker

    def _add(self, increments, pipe) -> None:
        """Counting is apart from what it counts: an increment that cannot land now is kept and sent again,
        never undoing or repeating the enqueue it counts."""
        if pipe is not None:
            self.counters.add(increments, pipe)
            return
        try:
            left = self.counters.add(increments)
        except Exception:  # the whole pipeline failed before any reply: nothing landed
            log.warning("counts not sent (Redis unavailable): kept for the next flush", exc_info=True)
            left = increments
        if left:
            self._unsent.append(left)

    def _send_unsent(self) -> None:
        unsent, self._unsent = self._unsent, []
        for increments in unsent:
            self._add(increments, None)

    def count_headers(self, field: str, headers, pipe=None) -> None:
        """Counts one `field` per queue entry header b"delivery_id|job_id", on `pipe` if given."""
        self.count_each(header_counts(field, headers), pipe)

    def count(self, field: str, push_id: int, job_id, n: int, pipe=None) -> None:
        """Counts n (may be negative: a correction) of `field` for a push and its job, on `pipe` if given."""
        self.count_each([(field, push_id, job_id, n)], pipe)

    def count_each(self, counts, pipe=None) -> None:
        """count() of each (field, push id, job id, n), in one round trip."""
        increments = defaultdict(Counter)
        for field, push_id, job_id, n in counts:
            if n:
                increments[("push", push_id)][field] += n
                if job_id:
                    increments[("job", job_id)][field] += n
        self._add(increments, pipe)

    def totals(self, kind: str, row_id: int) -> dict:
        """SQL's flushed counts plus what Redis holds that SQL does not have yet."""
        for _ in range(5):
            token_before, _, _ = self.counters.read(kind, row_id)
            row = self.store.counter_row(kind, row_id)
            token, pending, live = self.counters.read(kind, row_id)
            if token == token_before:
                break  # no flush claimed new counts between the two reads
        result = {name: int(row[name]) for name in COUNTER_FIELDS}
        if token and row["flush_token"] != token:
            for name, value in pending.items():
                result[name] += value
        for name, value in live.items():
            result[name] += value
        return result

    def arrivals(self, job_id: int) -> dict:
        """{unix minute: the job's messages that arrived in it}, kept a week after the last."""
        return self.counters.arrivals(job_id)

    def flush(self, batch: int = 1000, seconds: float = 0.5) -> int:
        """Moves unflushed counts to SQL, a transaction per batch, until none are left or `seconds` have passed
        (what is left waits for the next run); one flusher at a time across all workers and nodes. First sends
        this worker's counts that could not be sent before."""
        self._send_unsent()
        lock = self.counters.flush_lock()
        if not lock.acquire():
            return 0
        flushed, deadline = 0, time.monotonic() + seconds
        try:
            while True:
                rows = self.counters.dirty(batch)
                flushed += len(rows)
                claimed = self.counters.claim(rows) if rows else []
                if claimed:
                    try:
                        self._apply(claimed)
                    except Exception:
                        self.counters.mark_dirty(rows)  # the claims stay pending and are applied next time
                        raise
                if len(rows) < batch or time.monotonic() > deadline:
                    return flushed
        finally:
            lock.release()

    def _apply(self, claimed, first=True) -> None:
        """Adds claimed rows to SQL in one transaction and marks them applied. If that fails while the database
        answers, the rows are applied in halves, and so on, until each failing row stands alone: it is logged
        and held back, every other row lands. If the database does not answer, the error is raised."""
        try:
            self.store.apply_counter_deltas(claimed)
        except Exception as error:
            if first and not self.store.reachable():
                raise
            if len(claimed) == 1:
                self._hold(*claimed, error)
                return
            half = len(claimed) // 2
            self._apply(claimed[:half], first=False)
            self._apply(claimed[half:], first=False)
        else:
            self.counters.mark_applied(claimed)

    def _hold(self, row, error) -> None:
        kind, row_id, token, deltas = row
        log.error("counter row %s %s (flush token %s, deltas %s) was refused by the database, retried in %d s; "
                  "until it lands its counts stay in Redis (the API still adds them): %s",
                  kind, row_id, token, deltas, HOLD_SECONDS, error)
        self.counters.hold([(kind, row_id)], HOLD_SECONDS)
