"""Live delivery counters in Redis, moved to SQL by a flusher, each count exactly once.

Per job and per push, `live` takes HINCRBYs. A flush renames `live` to
`pending` with a fresh token, adds it to the SQL row together with the token
(the SQL update is skipped when the row already carries that token), then marks
`pending` applied. A reader adds `pending` only while SQL lacks its token.
Rows with unflushed counts are marked in dirty sets, spread over keys.DIRTY_SHARDS
keys (so over a cluster's masters); one flusher at a time holds the flush lock.
A row that SQL refuses is held back a while (its claim stays pending, with its
token), so that it is neither lost nor retried ahead of the others.
"""
import time
import uuid
import zlib

from . import keys

COUNTER_FIELDS = ("sent", "arrived", "expired", "failed", "clicked")
ARRIVALS_KEPT_MS = 7 * 86400 * 1000  # a job's arrivals per minute are kept a week after its last arrival
# A flush works 0.5 s at most (Stats.flush); a worker killed while holding the lock holds every node's flushes
# back until it expires. Two flushers at once would still count each row once (claims carry their token).
FLUSH_LOCK_SECONDS = 10

# KEYS live pending; ARGV token ttl_s
_CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('HGET', KEYS[2], 'applied') ~= '1' then
  return redis.call('HGETALL', KEYS[2])
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('DEL', KEYS[2])
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[2], 'token', ARGV[1])
return redis.call('HGETALL', KEYS[2])
"""

# KEYS pending; ARGV token ttl_s
_MARK_APPLIED = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'applied', '1')
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1
"""

# KEYS live pending: 1 while either half holds counts SQL does not have yet
_UNFLUSHED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('HGET', KEYS[2], 'applied') ~= '1' then return 1 end
return 0
"""

# KEYS live pending. Both halves at once: a flush renames one into the other between two plain reads.
_READ = """
return {redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[1])}
"""


def _dirty_key(member: str) -> str:
    return keys.counters_dirty(zlib.crc32(member.encode()) % keys.DIRTY_SHARDS)


# KEYS held; ARGV now_ms: takes the held rows that are due again, returns them and the rows still held
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return {due, redis.call('ZRANGE', KEYS[1], 0, -1)}
"""


def _as_dict(flat):
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


class CounterStore:
    def __init__(self, pools):
        self.pools = pools
        self.commands = pools.commands
        self._claim = pools.register_script(_CLAIM)
        self._mark_applied = pools.register_script(_MARK_APPLIED)
        self._read = pools.register_script(_READ)
        self._unflushed = pools.register_script(_UNFLUSHED)
        self._take_due = pools.register_script(_TAKE_DUE)

    def add(self, increments: dict, pipe=None) -> dict:
        """increments: {(kind, id): {field: n}}; queued on `pipe` when given, else sent now. Sent now, returns
        those that did not land (their shard failed: the others did), to be sent again."""
        if not increments:
            return {}
        own = pipe is None
        if own:
            pipe = self.pools.pipeline()
        sent = []  # per command: (row, field or None for the dirty mark, n)
        for (kind, row_id), fields in increments.items():
            live, _ = keys.counter_keys(kind, row_id)
            for name, n in fields.items():
                pipe.hincrby(live, name, n)
                sent.append(((kind, row_id), name, n))
            member = f"{kind}:{row_id}"
            pipe.sadd(_dirty_key(member), member)
            sent.append(((kind, row_id), None, 0))
        if not own:
            return {}
        left = {}
        for (row, name, n), result in zip(sent, pipe.execute(raise_on_error=False)):
            if isinstance(result, Exception):
                fields = left.setdefault(row, {})  # an empty one: just the dirty mark again
                if name is not None:
                    fields[name] = n
        return left

    def dirty(self, count: int) -> list:
        """Up to `count` rows with unflushed counts from all the dirty sets (fewer once they are drained), and
        the held rows that are due again; rows still held wait. Two round trips: the sets' sizes and the due
        rows, then the pops."""
        dirty_sets = [*map(keys.counters_dirty, range(keys.DIRTY_SHARDS)), keys.COUNTERS_DIRTY_BEFORE_SHARDS]
        pipe = self.pools.pipeline()
        for name in dirty_sets:
            pipe.scard(name)
        pipe.script(self._take_due, [keys.COUNTERS_HELD], [int(time.time() * 1000)])
        *sizes, (due, held) = pipe.execute()
        pipe, left = self.pools.pipeline(), count
        for name, size in zip(dirty_sets, sizes):
            take = min(size, left)
            if take:
                pipe.spop(name, take)
                left -= take
        popped = [m for members in (pipe.execute() if left < count else []) for m in members]
        held = set(held)
        return [m.decode().split(":") for m in dict.fromkeys([*popped, *due]) if m not in held]

    def hold(self, rows, seconds: float) -> None:
        """Leaves rows out of flushes for `seconds`; they are tried again after that."""
        retry_at = int((time.time() + seconds) * 1000)
        self.commands.zadd(keys.COUNTERS_HELD, {f"{kind}:{row_id}": retry_at for kind, row_id in rows})

    def mark_dirty(self, rows) -> None:
        pipe = self.pools.pipeline()
        for kind, row_id in rows:
            member = f"{kind}:{row_id}"
            pipe.sadd(_dirty_key(member), member)
        pipe.execute()

    def flush_lock(self):
        """The lock one flusher at a time holds (a redis-py Lock: acquire(), release())."""
        return self.commands.lock(keys.FLUSH_LOCK, timeout=FLUSH_LOCK_SECONDS, blocking=False)

    def claim(self, rows) -> list:
        """(kind, id, token, deltas) to apply to SQL for each (kind, id) with unflushed counts; one round trip."""
        pipe = self.pools.pipeline()
        token = uuid.uuid4().hex  # one per flush: SQL applies the rows of one token in few statements
        for kind, row_id in rows:
            pipe.script(self._claim, keys.counter_keys(kind, row_id), [token])
        claimed = []
        for (kind, row_id), flat in zip(rows, pipe.execute()):
            values = _as_dict(flat)
            if values:
                token = values.pop("token")
                claimed.append((kind, row_id, token,
                                {k: int(v) for k, v in values.items() if k in COUNTER_FIELDS}))
        return claimed

    def mark_applied(self, claimed) -> None:
        """Marks the claims applied, and adds the jobs' arrivals to their per-minute counts (the flush's minute,
        a second or so after the acks): in the flush, not on the poll path, and in the same round trip as the
        marks, so a claim applied again after a failed mark is not counted twice."""
        pipe = self.pools.pipeline()
        minute = int(time.time() // 60)
        for kind, row_id, token, deltas in claimed:
            pipe.script(self._mark_applied, [keys.counter_keys(kind, row_id)[1]], [token, 3600])
            if kind == "job" and deltas.get("arrived"):
                arrivals = keys.job_arrivals(row_id)
                pipe.hincrby(arrivals, minute, deltas["arrived"])
                pipe.pexpire(arrivals, ARRIVALS_KEPT_MS)
        pipe.execute()

    def unflushed(self, kind: str, row_ids) -> set:
        """Those of the rows whose counts are not all in SQL yet (waiting for, or in, a flush); one round trip."""
        row_ids = list(row_ids)
        pipe = self.pools.pipeline()
        for row_id in row_ids:
            pipe.script(self._unflushed, keys.counter_keys(kind, row_id), [])
        return {row_id for row_id, flag in zip(row_ids, pipe.execute() if row_ids else []) if flag}

    def arrivals(self, job_id) -> dict:
        """{unix minute: messages of the job that arrived in it} (for a week after the last)."""
        return {int(minute): int(n) for minute, n in self.commands.hgetall(keys.job_arrivals(job_id)).items()}

    def read(self, kind, row_id):
        """(pending_token, pending_counts, live_counts) read atomically."""
        pending_values, live_values = map(_as_dict, self._read(keys=keys.counter_keys(kind, row_id)))
        live_values = {k: int(v) for k, v in live_values.items()}
        token = pending_values.get("token")
        return token, {k: int(v) for k, v in pending_values.items() if k in COUNTER_FIELDS}, live_values
