"""A reliable Redis queue of delivery jobs, one per terminal type (keys.route_keys).

A job is one message to one terminal: its id is "push_id:client_id", its JSON
lives in the `jobs` hash, and the `due` sorted set holds when it is next due
(unix ms). A worker claims due jobs with a script that, in one step, pushes
each job's score forward to the end of a lease, records the claim's token in
`lease` and counts the attempt in `tries`. The job stays in Redis while it is
delivered: if the worker dies, its lease runs out, the job is due again and
another worker claims it (the attempt it spent counts). Finishing or
rescheduling a job checks the token first, so a worker whose lease ran out
and whose job was claimed again changes nothing and counts nothing.

Delivery is at least once: a worker that dies after the gateway accepted a
message but before it finished the job makes the message go out again (with
the same delivery_id and client_id, so a gateway can drop the repeat).
"""
import json
import uuid
from dataclasses import dataclass

from . import keys

ADD_BATCH = 500

# KEYS due jobs; ARGV now id1 job1 id2 job2 ...
_ADD = """
local added = 0
for i = 2, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
    added = added + 1
  end
end
return added
"""

# KEYS due jobs lease tries; ARGV now lease_until limit token
_CLAIM = """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local job = redis.call('HGET', KEYS[2], id)
  if job then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('HSET', KEYS[3], id, ARGV[4])
    out[#out + 1] = {id, job, redis.call('HINCRBY', KEYS[4], id, 1)}
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
  end
end
return out
"""

# KEYS due jobs lease tries; ARGV id token
_FINISH = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"""

# KEYS due lease; ARGV id token due
_RETRY = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


@dataclass
class Claimed:
    """A job this worker holds until its lease ends: its payload and which attempt this is."""

    terminal_type: str
    id: str
    job: dict
    attempt: int
    token: str


def job_id(push_id: int, client_id: str) -> str:
    return f"{push_id}:{client_id}"


class DeliveryQueue:
    def __init__(self, pools):
        self.pools = pools
        self.commands = pools.commands
        self._add = pools.register_script(_ADD)
        self._claim = pools.register_script(_CLAIM)
        self._finish = pools.register_script(_FINISH)
        self._retry = pools.register_script(_RETRY)

    def add(self, push_id: int, expires_at: int, body_json: str, jobs_by_type: dict, now: int) -> int:
        """jobs_by_type: {terminal_type: [(job id, job dict)]}. Stores the push's body (until it expires)
        and the jobs, each due now; a job id already queued is not queued again. Returns how many were added."""
        pipe = self.pools.pipeline()
        pipe.set(keys.route_body(push_id), body_json, px=max(expires_at - now, 0) + 60_000)
        for terminal_type, jobs in jobs_by_type.items():
            k = keys.route_keys(terminal_type)
            for start in range(0, len(jobs), ADD_BATCH):
                args = [now]
                for jid, job in jobs[start:start + ADD_BATCH]:
                    args += [jid, json.dumps(job, ensure_ascii=False, separators=(",", ":"))]
                pipe.script(self._add, [k["due"], k["jobs"]], args)
        return sum(pipe.execute()[1:])

    def claim(self, terminal_type: str, limit: int, now: int, lease_ms: int) -> list:
        k = keys.route_keys(terminal_type)
        token = uuid.uuid4().hex
        rows = self._claim(keys=[k["due"], k["jobs"], k["lease"], k["tries"]],
                           args=[now, now + lease_ms, limit, token])
        return [Claimed(terminal_type, jid.decode(), json.loads(job), int(attempt), token)
                for jid, job, attempt in rows]

    def finish(self, claimed: Claimed) -> bool:
        """Drops a job this claim still holds; False: its lease ran out and another claim took it."""
        k = keys.route_keys(claimed.terminal_type)
        return bool(self._finish(keys=[k["due"], k["jobs"], k["lease"], k["tries"]],
                                 args=[claimed.id, claimed.token]))

    def retry(self, claimed: Claimed, due: int) -> bool:
        """Makes a job this claim still holds due again at `due` (unix ms)."""
        k = keys.route_keys(claimed.terminal_type)
        return bool(self._retry(keys=[k["due"], k["lease"]], args=[claimed.id, claimed.token, due]))

    def bodies(self, push_ids) -> dict:
        """{push_id: message dict or None when it is gone}"""
        push_ids = list(push_ids)
        if not push_ids:
            return {}
        values = self.pools.mget([keys.route_body(p) for p in push_ids])
        return {p: json.loads(v) if v is not None else None for p, v in zip(push_ids, values)}

    def pending(self, terminal_type: str) -> int:
        """Jobs queued or being delivered."""
        return self.commands.hlen(keys.route_keys(terminal_type)["jobs"])
