"""A client's message queue with an acknowledgement cursor.

Each client has two Redis lists: `queue` (published, not yet handed out) and
`inflight` (handed to a poll, not yet acknowledged). Messages only ever move
between them inside Redis (a Lua script or BLMOVE), so a message popped for a
poll whose client vanished is still in `inflight` and is handed out again on
the next poll. `ack=ID` drops `inflight` up to and including ID.

An entry is "delivery_id|job_id|expires_ms|json", the JSON being the message
exactly as the poll answer shows it. Scripts hand back only "delivery_id|job_id"
headers of what they acked, expired or dropped, for the counters (and, of what a
poll acked, when it was queued: the JSON's last field "ts", for the metrics).

A deleted client leaves a tombstone in its cached meta (token epoch DELETED_EPOCH): no token of it is
accepted, and nothing is queued for it, even by a publish that read its row before it was deleted.
"""
import time
from dataclasses import dataclass, field

from redis.exceptions import NoScriptError

from . import keys

DELETED_EPOCH = "1000000000000000"  # a tombstone's token epoch: above any a token can carry (12 digits)
# How long a client remembers the pushes queued for it: a retry of a publish within this skips it (exactly once);
# a later one (a shard down longer) may queue it twice, which the at-least-once guarantee allows.
PUSHES_KEPT_MS = 600_000
ALREADY = "already"  # an enqueue's result for a client that had the push before (a retry)

_HELPERS = """
local function header(e) return string.match(e, '^[^|]*|[^|]*') end
local function expires(e) return tonumber(string.match(e, '^[^|]*|[^|]*|([^|]*)|')) end
local function take(q, f, missed, now, limit, expired)
  local keep = {}
  local changed = false
  for _, e in ipairs(redis.call('LRANGE', f, 0, -1)) do
    if expires(e) < now then expired[#expired + 1] = header(e); changed = true else keep[#keep + 1] = e end
  end
  if changed then
    redis.call('DEL', f)
    if #keep > 0 then redis.call('RPUSH', f, unpack(keep)) end
  end
  while #keep < limit do
    local e = redis.call('LPOP', q)
    if not e then break end
    if expires(e) < now then expired[#expired + 1] = header(e)
    else redis.call('RPUSH', f, e); keep[#keep + 1] = e end
  end
  return keep, tonumber(redis.call('GETDEL', missed) or '0')
end
"""

# A poll that hands out messages is over: the script that found them also ends it (one round trip less).
_END_IF_TAKEN = """
local function end_if_taken(entries, poller, online, grace_ms)
  if #entries > 0 then
    redis.call('DEL', poller)
    redis.call('SET', online, '1', 'PX', grace_ms)
  end
end
"""

# KEYS queue inflight missed poller online meta; ARGV me ack now limit online_ms grace_ms epoch.
# With an epoch, the client's cached token epoch is checked first (the revocation check rides along):
# a missing cache entry or another epoch answers {'missing'} / {'revoked'} and changes nothing.
_BEGIN_POLL = _HELPERS + _END_IF_TAKEN + """
-- the unix ms a message was queued at: its JSON ends with "ts" (Publisher._body_and_entry); 0 if not found
local function queued_at(e) return tonumber(string.match(string.sub(e, -24), '"ts":(%d+)}$') or '0') end
local app_id = ''
if ARGV[7] ~= '' then
  local meta = redis.call('HMGET', KEYS[6], 'app_id', 'epoch')
  if not meta[1] then return {'missing'} end
  if meta[2] ~= ARGV[7] then return {'revoked'} end
  app_id = meta[1]
end
local previous = redis.call('GET', KEYS[4]) or ''
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[5])
redis.call('SET', KEYS[5], '1', 'PX', ARGV[5])
local acked, acked_at = {}, {}
if ARGV[2] ~= '' then
  local f = redis.call('LRANGE', KEYS[2], 0, -1)
  for i, e in ipairs(f) do
    if string.sub(e, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then
      for j = 1, i do acked[j] = header(f[j]); acked_at[j] = queued_at(f[j]) end
      redis.call('LTRIM', KEYS[2], i, -1)
      break
    end
  end
end
local expired = {}
local entries, missed = take(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[3]), tonumber(ARGV[4]), expired)
end_if_taken(entries, KEYS[4], KEYS[5], ARGV[6])
return {'ok', app_id, previous, acked, expired, entries, missed, acked_at}
"""

# KEYS queue inflight missed poller online; ARGV me now limit grace_ms. Runs right after a wait, in the
# same write. Ends the poll when it takes messages, and when it finds nothing at all (the wait ran out,
# or was cut short); only a wake-up for messages that had all expired lets the poll wait on.
_TAKE_IF_CURRENT = _HELPERS + """
local current = redis.call('GET', KEYS[4]) or ''
if current ~= ARGV[1] then return {current, {}, {}, 0, 0} end
local expired = {}
local entries, missed = take(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[2]), tonumber(ARGV[3]), expired)
if #entries > 0 or #expired == 0 then
  redis.call('DEL', KEYS[4])
  redis.call('SET', KEYS[5], '1', 'PX', ARGV[4])
  return {current, expired, entries, missed, 1}
end
return {current, expired, entries, missed, 0}
"""

# KEYS poller online; ARGV me grace_ms
_END_POLL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
end
return 1
"""

# KEYS queue, online, missed, meta, pushes of each client in turn; ARGV entry cap online_only deleted_epoch delivery_id
# now_ms kept_ms. One call queues a push for many clients (a broadcast's page): per client -1 (it has this push
# already: the call is a retry), 0 (skipped: offline, or deleted) or the headers the cap dropped.
_ENQUEUE = """
local results = {}
local cap = tonumber(ARGV[2])
for i = 1, #KEYS, 5 do
  if redis.call('ZSCORE', KEYS[i + 4], ARGV[5]) then
    results[#results + 1] = -1
  elseif (ARGV[3] == '1' and redis.call('EXISTS', KEYS[i + 1]) == 0)
      or redis.call('HGET', KEYS[i + 3], 'epoch') == ARGV[4] then
    results[#results + 1] = 0
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[i + 4], '-inf', tonumber(ARGV[6]) - tonumber(ARGV[7]))
    redis.call('ZADD', KEYS[i + 4], ARGV[6], ARGV[5])
    redis.call('PEXPIRE', KEYS[i + 4], ARGV[7])
    local over = redis.call('RPUSH', KEYS[i], ARGV[1]) - cap
    local dropped = {}
    if over > 0 then
      for j = 1, over do dropped[j] = string.match(redis.call('LPOP', KEYS[i]), '^[^|]*|[^|]*') end
      redis.call('INCRBY', KEYS[i + 2], over)
    end
    results[#results + 1] = dropped
  end
end
return results
"""

# KEYS queue inflight missed poller online meta; ARGV app_id deleted_epoch tombstone_ttl_s. A deleted client:
# the headers of every message it held (never to be delivered), its parked poll (to release), and its meta
# made a tombstone.
_REMOVE = _HELPERS + """
local dropped = {}
for _, list in ipairs({KEYS[2], KEYS[1]}) do
  for _, e in ipairs(redis.call('LRANGE', list, 0, -1)) do dropped[#dropped + 1] = header(e) end
end
local poller = redis.call('GET', KEYS[4]) or ''
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('HSET', KEYS[6], 'app_id', ARGV[1], 'epoch', ARGV[2])
redis.call('EXPIRE', KEYS[6], ARGV[3])
return {poller, dropped}
"""

# KEYS meta; ARGV deleted_epoch. A client registered again: its tombstone goes.
_REVIVE = """
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


def entry(delivery_id: int, job_id, expires_ms: int, message_json: str) -> str:
    return f"{delivery_id}|{job_id or ''}|{expires_ms}|{message_json}"


def message_json(raw_entry: bytes) -> str:
    return raw_entry.decode("utf-8").split("|", 3)[3]


@dataclass
class PollStep:
    """What one step of a poll found: messages to hand out, and headers to count."""

    entries: list = field(default_factory=list)
    acked: list = field(default_factory=list)
    expired: list = field(default_factory=list)
    missed: int = 0
    poller: str = ""  # begin: the poll this one replaced; take: the current poll
    auth: str = "ok"  # begin with an epoch: "ok", "missing" (no cached epoch) or "revoked"
    app_id: int = None  # begin with an epoch: the client's app
    ended: bool = False  # take: the step ended the poll
    moved: bool = False  # take: its wait moved a message into inflight
    acked_at: list = field(default_factory=list)  # begin: unix ms each acked message was queued at (0: unknown)


class Queues:
    """The scripts, registered once per process; a poll's calls name the held connection to use."""

    def __init__(self, pools, queue_length: int):
        self.pools = pools
        self.queue_length = queue_length
        self._begin = pools.register_script(_BEGIN_POLL)
        self._take = pools.register_script(_TAKE_IF_CURRENT)
        self._end = pools.register_script(_END_POLL)
        self._enqueue = pools.register_script(_ENQUEUE)
        self._remove = pools.register_script(_REMOVE)
        self._revive = pools.register_script(_REVIVE)

    def enqueue(self, pipe, client_ids, raw_entry: str, online_only: bool) -> list:
        """Queues one entry for every client on a ScriptPipeline: one script call per slot (on one Redis
        server, one call for them all). Queueing an entry of the same delivery id again is a no-op at the
        clients that have it. Returns where the results will be, for `enqueued`."""
        delivery_id, now_ms = raw_entry.split("|", 1)[0], int(time.time() * 1000)
        groups = {}  # slot -> positions in client_ids
        for i, client_id in enumerate(client_ids):
            groups.setdefault(self.pools.slot(keys.client_keys(client_id)["queue"]), []).append(i)
        calls = []
        for positions in groups.values():
            script_keys = []
            for i in positions:
                k = keys.client_keys(client_ids[i])
                script_keys += (k["queue"], k["online"], k["missed"], keys.client_meta(client_ids[i]),
                                keys.client_pushes(client_ids[i]))
            calls.append((len(pipe), positions))
            pipe.script(self._enqueue, script_keys, [raw_entry, self.queue_length, int(online_only), DELETED_EPOCH,
                                                     delivery_id, now_ms, PUSHES_KEPT_MS])
        return calls

    @staticmethod
    def enqueued(results: list, calls: list) -> list:
        """Per client of an `enqueue`, in its order: the headers dropped by the cap (a list: it was queued now),
        None (skipped: offline, or deleted), ALREADY (queued before), or the error of its shard."""
        per_client = [None] * sum(len(positions) for _, positions in calls)
        for at, positions in calls:
            for n, i in enumerate(positions):
                r = results[at]
                per_client[i] = r if isinstance(r, Exception) else None if r[n] == 0 else ALREADY if r[n] == -1 \
                    else r[n]
        return per_client

    def hold(self, client_id: str):
        """A blocking connection for a poll of this client (on a cluster: to the master of its slot)."""
        return self.pools.hold(keys.client_keys(client_id)["queue"])

    def unblock(self, poller: str) -> None:
        """Wakes the parked poll `poller` names (HeldConnection.poller_id)."""
        self.pools.unblock(poller)

    def remove(self, pipe, client_id, app_id, tombstone_ttl: int) -> None:
        """Empties a deleted client's queues and leaves its tombstone, on a ScriptPipeline; `removed` reads
        the result."""
        k = keys.client_keys(client_id)
        pipe.script(self._remove, [k["queue"], k["inflight"], k["missed"], k["poller"], k["online"],
                                   keys.client_meta(client_id)], [app_id, DELETED_EPOCH, tombstone_ttl])

    @staticmethod
    def removed(result):
        """(poller, headers) of a `remove`: the poll to release ("" if none), what the client never got."""
        poller, dropped = result
        return poller.decode(), dropped

    def revive(self, client_id) -> None:
        """A deleted client registered again: its tombstone goes, so that it is queued for and polls again."""
        self._revive(keys=[keys.client_meta(client_id)], args=[DELETED_EPOCH])

    def states(self, client_ids) -> list:
        """(online, queued, unacknowledged) of each client: its presence, and the lengths of its lists."""
        pipe = self.pools.commands.pipeline(transaction=False)
        for client_id in client_ids:
            k = keys.client_keys(client_id)
            pipe.exists(k["online"])
            pipe.llen(k["queue"])
            pipe.llen(k["inflight"])
        replies = pipe.execute()
        return [(bool(replies[i]), replies[i + 1], replies[i + 2]) for i in range(0, len(replies), 3)]

    def begin_poll(self, conn, client_id, me, ack, now_ms, limit, online_ms, grace_ms, epoch=None) -> PollStep:
        """Acks, then takes what waits; a poll that found messages has ended (end_poll is for empty ones).
        With `epoch`, first checks it against the client's cached token epoch (step.auth)."""
        k = keys.client_keys(client_id)
        reply = self._begin(
            keys=[k["queue"], k["inflight"], k["missed"], k["poller"], k["online"], keys.client_meta(client_id)],
            args=[me, ack or "", now_ms, limit, online_ms, grace_ms, "" if epoch is None else epoch], client=conn)
        if reply[0] != b"ok":
            return PollStep(auth=reply[0].decode())
        _, app_id, previous, acked, expired, entries, missed, acked_at = reply
        return PollStep(entries, acked, expired, missed, previous.decode(), app_id=int(app_id) if app_id else None,
                        acked_at=acked_at)

    def wait_and_take(self, conn, client_id, me, timeout: float, now_ms, limit, grace_ms, before=()) -> PollStep:
        """Parks on the queue, then takes what waits if `me` is still the client's poll, in one write: the
        wait moves the first message into inflight atomically, the take hands it out with any that followed.
        `before`: commands sent ahead of the wait (their replies are dropped; on a cluster, on their own)."""
        k = keys.client_keys(client_id)
        take_keys = [k["queue"], k["inflight"], k["missed"], k["poller"], k["online"]]
        take_args = [me, now_ms, limit, grace_ms]
        replies = conn.execute_commands([
            *conn.riders(before), ("BLMOVE", k["queue"], k["inflight"], "LEFT", "RIGHT", timeout),
            self._take.command(take_keys, take_args)], raise_on_error=False)
        for reply in replies[:-1]:
            if isinstance(reply, Exception):
                raise reply
        moved, reply = replies[-2:]
        if isinstance(reply, NoScriptError):  # this server lacks the script (a restart, a failover): load, take
            reply = self._take(keys=take_keys, args=take_args, client=conn)
        elif isinstance(reply, Exception):
            raise reply
        current, expired, entries, missed, ended = reply
        return PollStep(entries, [], expired, missed, current.decode(), ended=bool(ended), moved=moved is not None)

    def end_poll(self, conn, client_id, me, grace_ms) -> None:
        k = keys.client_keys(client_id)
        self._end(keys=[k["poller"], k["online"]], args=[me, grace_ms], client=conn)
