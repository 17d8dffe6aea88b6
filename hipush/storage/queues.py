"""A client's message queue with an acknowledgement cursor.

Each client has two Redis lists: `queue` (published, not yet handed out) and
`inflight` (handed to a poll or a stream, not yet acknowledged). Messages only ever move
between them inside a Lua script, so a message popped for a poll whose client vanished is
still in `inflight` and is handed out again on the next poll. `ack=ID` drops `inflight` up to
and including ID. A parked poll waits with BLMOVE from `queue` to itself: it wakes when a message
comes but moves nothing, so a poll that a newer one replaced while it waited leaves the message
in `queue`, where the newer one's wait finds it whenever it parks (a CLIENT UNBLOCK could reach it
before it parked, and be lost).

An entry is "delivery_id|job_id|expires_ms|json", the JSON being the message
exactly as the poll answer shows it. Scripts hand back only "delivery_id|job_id"
headers of what they acked, expired or dropped, for the counters (and, of what a
poll acked, when it was queued: the JSON's last field "ts", for the metrics).

A stream (SSE) is a poll that goes on after handing messages out: it remembers the id of the last entry
it sent (its cursor) and each of its steps hands out only the `inflight` entries after that one, plus what
it moves there from `queue`. At most `window` entries are in flight; a full window waits on the `wake`
list, which an acknowledgement (POST /comet/ack) pushes to.

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

_QUEUED_AT = """
-- the unix ms a message was queued at: its JSON ends with "ts" (Publisher._body_and_entry); 0 if not found
local function queued_at(e) return tonumber(string.match(string.sub(e, -24), '"ts":(%d+)}$') or '0') end
"""

# KEYS queue inflight missed poller online meta; ARGV me ack now limit online_ms grace_ms epoch keep.
# keep '1' (a stream): the poll stays the client's after handing messages out. With an epoch, the client's cached
# token epoch is checked first (the revocation check rides along):
# a missing cache entry or another epoch answers {'missing'} / {'revoked'} and changes nothing.
_BEGIN_POLL = _HELPERS + _END_IF_TAKEN + _QUEUED_AT + """
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
if ARGV[8] ~= '1' then end_if_taken(entries, KEYS[4], KEYS[5], ARGV[6]) end
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

# KEYS queue inflight missed poller online meta wake; ARGV me now window online_ms cursor epoch. A stream's step
# after a wait: {'replaced', current poller} when another poll or stream is the client's, {'revoked', ''} when
# the token's epoch is no longer the client's; else the entries after the cursor (the expired ones dropped)
# and as many moved from the queue as the window allows, with how many are in flight then.
_STREAM_TAKE = _HELPERS + """
local current = redis.call('GET', KEYS[4]) or ''
if current ~= ARGV[1] then return {'replaced', current} end
local epoch = redis.call('HGET', KEYS[6], 'epoch')
if epoch and epoch ~= ARGV[6] then return {'revoked', ''} end
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[4])
redis.call('SET', KEYS[5], '1', 'PX', ARGV[4])
redis.call('DEL', KEYS[7])
local now, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local f = redis.call('LRANGE', KEYS[2], 0, -1)
local start = 1
if ARGV[5] ~= '' then
  for i, e in ipairs(f) do
    if string.sub(e, 1, #ARGV[5] + 1) == ARGV[5] .. '|' then start = i + 1; break end
  end
end
local keep, fresh, popped, expired = {}, {}, {}, {}
for i = 1, start - 1 do keep[#keep + 1] = f[i] end
for i = start, #f do
  if expires(f[i]) < now then expired[#expired + 1] = header(f[i])
  else keep[#keep + 1] = f[i]; fresh[#fresh + 1] = f[i] end
end
if #keep < #f then
  redis.call('DEL', KEYS[2])
  if #keep > 0 then redis.call('RPUSH', KEYS[2], unpack(keep)) end
end
while #keep + #popped < window do
  local e = redis.call('LPOP', KEYS[1])
  if not e then break end
  if expires(e) < now then expired[#expired + 1] = header(e)
  else popped[#popped + 1] = e; fresh[#fresh + 1] = e end
end
if #popped > 0 then redis.call('RPUSH', KEYS[2], unpack(popped)) end
return {'ok', current, expired, fresh, tonumber(redis.call('GETDEL', KEYS[3]) or '0'), #keep + #popped}
"""

# KEYS inflight meta wake; ARGV ack epoch window. An acknowledgement on its own (a stream's client): the token's
# epoch checked as a poll's, then `inflight` dropped up to and including `ack`; a full window wakes its stream.
_ACK = _QUEUED_AT + """
local meta = redis.call('HMGET', KEYS[2], 'app_id', 'epoch')
if not meta[1] then return {'missing'} end
if meta[2] ~= ARGV[2] then return {'revoked'} end
local f = redis.call('LRANGE', KEYS[1], 0, -1)
local acked, acked_at = {}, {}
for i, e in ipairs(f) do
  if string.sub(e, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
    for j = 1, i do acked[j] = string.match(f[j], '^[^|]*|[^|]*'); acked_at[j] = queued_at(f[j]) end
    redis.call('LTRIM', KEYS[1], i, -1)
    if #f >= tonumber(ARGV[3]) then
      redis.call('RPUSH', KEYS[3], '1')
      redis.call('PEXPIRE', KEYS[3], 60000)
    end
    break
  end
end
return {'ok', meta[1], acked, acked_at}
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


def delivery_id(raw_entry: bytes) -> str:
    return raw_entry.split(b"|", 1)[0].decode()


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
    ended: bool = False  # take: the step ended the poll (a stream's: another one replaced it, or it was revoked)
    acked_at: list = field(default_factory=list)  # begin, ack: unix ms each acked message was queued at (0: unknown)
    in_flight: int = 0  # a stream's take: entries in flight after it


class Queues:
    """The scripts, registered once per process; a poll's calls name the held connection to use."""

    def __init__(self, pools, queue_length: int):
        self.pools = pools
        self.queue_length = queue_length
        self._begin = pools.register_script(_BEGIN_POLL)
        self._take = pools.register_script(_TAKE_IF_CURRENT)
        self._end = pools.register_script(_END_POLL)
        self._stream_take = pools.register_script(_STREAM_TAKE)
        self._ack = pools.register_script(_ACK)
        self._enqueue = pools.register_script(_ENQUEUE)
        self._remove = pools.register_script(_REMOVE)
        self._revive = pools.register_script(_REVIVE)

    def enqueue(self, pipe, client_ids, raw_entry: str, online_only: bool) -> list:
        """Queues one entry for every client on a ScriptPipeline: one script call per slot (on one Redis
        server, one call for them all). Queueing an entry of the same delivery id again is a no-op at the
        clients that have it. Returns where the results will be, for `enqueued`."""
        delivery_id, now_ms = raw_entry.split("|", 1)[0], int(time.time() * 1000)
        groups = {}  # slot -> (positions in client_ids, their script keys); each client's keys built once
        for i, client_id in enumerate(client_ids):
            k = keys.client_keys(client_id)
            positions, script_keys = groups.setdefault(self.pools.slot(k["queue"]), ([], []))
            positions.append(i)
            script_keys += (k["queue"], k["online"], k["missed"], keys.client_meta(client_id),
                            keys.client_pushes(client_id))
        calls = []
        for positions, script_keys in groups.values():
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

    def wake(self, client_id) -> None:
        """Wakes the client's parked poll or stream, if it has one (to see that its token was revoked)."""
        poller = self.pools.commands.get(keys.client_keys(client_id)["poller"])
        if poller:
            self.unblock(poller.decode())

    def presence(self, client_id) -> tuple:
        """(whether a poll of the client is in progress, ms its presence has left or None): every poll sets
        the presence to last its timeout plus the grace, and to the grace alone when it ends."""
        k = keys.client_keys(client_id)
        pipe = self.pools.commands.pipeline(transaction=False)
        pipe.exists(k["poller"])
        pipe.pttl(k["online"])
        polling, left = pipe.execute()
        return bool(polling), left if left > 0 else None

    def begin_poll(self, conn, client_id, me, ack, now_ms, limit, online_ms, grace_ms, epoch=None,
                   keep=False) -> PollStep:
        """Acks, then takes what waits; a poll that found messages has ended (end_poll is for empty ones),
        unless `keep` (a stream's first step). With `epoch`, first checks it against the client's cached token
        epoch (step.auth)."""
        k = keys.client_keys(client_id)
        reply = self._begin(
            keys=[k["queue"], k["inflight"], k["missed"], k["poller"], k["online"], keys.client_meta(client_id)],
            args=[me, ack or "", now_ms, limit, online_ms, grace_ms, "" if epoch is None else epoch, int(keep)],
            client=conn)
        if reply[0] != b"ok":
            return PollStep(auth=reply[0].decode())
        _, app_id, previous, acked, expired, entries, missed, acked_at = reply
        return PollStep(entries, acked, expired, missed, previous.decode(), app_id=int(app_id) if app_id else None,
                        acked_at=acked_at)

    def wait_and_take(self, conn, client_id, me, timeout: float, now_ms, limit, grace_ms, before=()) -> PollStep:
        """Parks on the queue, then takes what waits if `me` is still the client's poll, in one write.
        `before`: commands sent ahead of the wait (their replies are dropped; on a cluster, on their own)."""
        k = keys.client_keys(client_id)
        reply = self._wait_then(conn, _wait_for(k["queue"], timeout), self._take,
                                [k["queue"], k["inflight"], k["missed"], k["poller"], k["online"]],
                                [me, now_ms, limit, grace_ms], before)
        current, expired, entries, missed, ended = reply
        return PollStep(entries, [], expired, missed, current.decode(), ended=bool(ended))

    def wait_and_stream(self, conn, client_id, me, timeout: float, now_ms, window, online_ms, cursor, epoch,
                        before=(), full=False) -> PollStep:
        """A stream's step: parks on the queue (a `full` window: on the wake list, until an ack), then hands
        out what is in flight after `cursor` and what the window takes from the queue, in one write."""
        k = keys.client_keys(client_id)
        wait = ("BLPOP", k["wake"], timeout) if full else _wait_for(k["queue"], timeout)
        reply = self._wait_then(
            conn, wait, self._stream_take,
            [k["queue"], k["inflight"], k["missed"], k["poller"], k["online"], keys.client_meta(client_id), k["wake"]],
            [me, now_ms, window, online_ms, cursor, epoch], before)
        if reply[0] != b"ok":
            return PollStep(poller=reply[1].decode(), auth="revoked" if reply[0] == b"revoked" else "ok", ended=True)
        _, current, expired, entries, missed, in_flight = reply
        return PollStep(entries, [], expired, missed, current.decode(), in_flight=in_flight)

    def _wait_then(self, conn, wait: tuple, script, script_keys, script_args, before):
        """The reply of a script run right after a blocking command (which moves nothing: its reply is dropped),
        both sent in one write on a held connection; `before`: commands sent ahead of both (replies dropped)."""
        replies = conn.execute_commands([*conn.riders(before), wait, script.command(script_keys, script_args)],
                                        raise_on_error=False)
        for reply in replies[:-1]:
            if isinstance(reply, Exception):
                raise reply
        reply = replies[-1]
        if isinstance(reply, NoScriptError):  # this server lacks the script (a restart, a failover): load, run
            return script(keys=script_keys, args=script_args, client=conn)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def ack(self, client_id, ack, epoch, window) -> PollStep:
        """Drops the client's in-flight entries up to and including `ack` once `epoch` is checked (step.auth as
        begin_poll's); a stream whose window was full is woken."""
        k = keys.client_keys(client_id)
        reply = self._ack(keys=[k["inflight"], keys.client_meta(client_id), k["wake"]], args=[ack, epoch, window])
        if reply[0] != b"ok":
            return PollStep(auth=reply[0].decode())
        return PollStep(acked=reply[2], app_id=int(reply[1]), acked_at=reply[3])

    def end_poll(self, conn, client_id, me, grace_ms) -> None:
        k = keys.client_keys(client_id)
        self._end(keys=[k["poller"], k["online"]], args=[me, grace_ms], client=conn)


def _wait_for(queue: str, timeout: float) -> tuple:
    """Blocks until `queue` holds a message, moving nothing: BLMOVE of its head back onto its head."""
    return ("BLMOVE", queue, queue, "LEFT", "LEFT", timeout)
