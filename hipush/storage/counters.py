"""Live delivery counters in Redis, moved to SQL by a flusher, each count exactly once.

Per job and per push, `live` takes HINCRBYs. A flush renames `live` to
`pending` with a fresh token, adds it to the SQL row together with the token
(the SQL update is skipped when the row already carries that token), then marks
`pending` applied. A reader adds `pending` only while SQL lacks its token.
A row that SQL refuses is held back a while (its claim stays pending, with its
token), so that it is neither lost nor retried ahead of the others.
"""
import time
import uuid

from . import keys
from .redis import ScriptPipeline

COUNTER_FIELDS = ("sent", "arrived", "expired", "failed")

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


# KEYS held; ARGV now_ms: takes the held rows that are due again, returns them and the rows still held
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return {due, redis.call('ZRANGE', KEYS[1], 0, -1)}
"""


def _as_dict(flat):
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


class CounterStore:
    def __init__(self, commands):
        self.commands = commands
        self._claim = commands.register_script(_CLAIM)
        self._mark_applied = commands.register_script(_MARK_APPLIED)
        self._take_due = commands.register_script(_TAKE_DUE)

    def add(self, increments: dict, pipe=None) -> None:
        """increments: {(kind, id): {field: n}}; queued on `pipe` when given, else sent now."""
        if not increments:
            return
        own = pipe is None
        if own:
            pipe = self.commands.pipeline(transaction=False)
        for (kind, row_id), fields in increments.items():
            live, _ = keys.counter_keys(kind, row_id)
            for name, n in fields.items():
                pipe.hincrby(live, name, n)
            pipe.sadd(keys.COUNTERS_DIRTY, f"{kind}:{row_id}")
        if own:
            pipe.execute()

    def dirty(self, count: int) -> list:
        """Up to `count` rows with unflushed counts, and the held rows that are due again; rows still held wait."""
        pipe = ScriptPipeline(self.commands)
        pipe.spop(keys.COUNTERS_DIRTY, count)
        pipe.script(self._take_due, [keys.COUNTERS_HELD], [int(time.time() * 1000)])
        popped, (due, held) = pipe.execute()
        held = set(held)
        return [m.decode().split(":") for m in dict.fromkeys([*(popped or []), *due]) if m not in held]

    def hold(self, rows, seconds: float) -> None:
        """Leaves rows out of flushes for `seconds`; they are tried again after that."""
        retry_at = int((time.time() + seconds) * 1000)
        self.commands.zadd(keys.COUNTERS_HELD, {f"{kind}:{row_id}": retry_at for kind, row_id in rows})

    def mark_dirty(self, rows) -> None:
        self.commands.sadd(keys.COUNTERS_DIRTY, *(f"{kind}:{row_id}" for kind, row_id in rows))

    def claim(self, rows) -> list:
        """(kind, id, token, deltas) to apply to SQL for each (kind, id) with unflushed counts; one round trip."""
        pipe = ScriptPipeline(self.commands)
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
        pipe = ScriptPipeline(self.commands)
        for kind, row_id, token, _ in claimed:
            pipe.script(self._mark_applied, [keys.counter_keys(kind, row_id)[1]], [token, 3600])
        pipe.execute()

    def read(self, kind, row_id):
        """(pending_token, pending_counts, live_counts) read atomically."""
        live, pending = keys.counter_keys(kind, row_id)
        pipe = self.commands.pipeline(transaction=True)
        pipe.hgetall(pending)
        pipe.hgetall(live)
        pending_values, live_values = pipe.execute()
        pending_values = {k.decode(): v.decode() for k, v in pending_values.items()}
        live_values = {k.decode(): int(v) for k, v in live_values.items()}
        token = pending_values.get("token")
        return token, {k: int(v) for k, v in pending_values.items() if k in COUNTER_FIELDS}, live_values
