"""Every Redis key hipush uses, in one place.

Keys used together in one script share a hash tag (the part in braces), so
that a move to Redis Cluster needs no redesign: a client's queue, in-flight
list, poller, presence and missed-count live in one slot, and so do the live
and pending halves of one counter.
"""
PREFIX = "hp"
EVERY_KEY = f"{PREFIX}:*"  # a pattern: every key of hipush, and none of anything else sharing the Redis
INSTALLATION = f"{PREFIX}:installation"  # the installation this Redis belongs to (storage/installation.py); no TTL
NODES = f"{PREFIX}:nodes"  # sorted set: public addr -> last heartbeat (unix ms)
COUNTERS_HELD = f"{PREFIX}:cnt:held"  # sorted set: "kind:id" that SQL refused -> unix ms of its next try
FLUSH_LOCK = f"{PREFIX}:lock:flush"
DIRTY_SHARDS = 16  # every counter update adds to one of them: spread over a cluster's masters


def node_figures(addr: str) -> str:
    """A comet node's figures as of its last heartbeat (JSON, services/nodes.py); expires with the node."""
    return f"{PREFIX}:node:{addr}"


def run_mark(job: str) -> str:
    """Claimed by the one worker that runs a periodic job this round (storage/runs.py); expires by itself."""
    return f"{PREFIX}:run:{job}"


def counters_dirty(shard: int) -> str:
    """A set of "kind:id" with unflushed counts (storage/counters.py picks the shard of each)."""
    return f"{PREFIX}:cnt:dirty:{shard}"


COUNTERS_DIRTY_BEFORE_SHARDS = f"{PREFIX}:cnt:dirty"  # the one set of earlier versions: still drained, never added to


def _client(client_id: str, part: str) -> str:
    return f"{PREFIX}:{{c:{client_id}}}:{part}"


def client_keys(client_id: str) -> dict:
    """wake: a list an acknowledgement pushes to, waking the client's stream when its window was full."""
    return {part: _client(client_id, part) for part in ("queue", "inflight", "missed", "poller", "online", "wake")}


def client_meta(client_id: str) -> str:
    """Cached token epoch and app of a client (the SQL row is the truth)."""
    return _client(client_id, "meta")


def client_pushes(client_id: str) -> str:
    """Sorted set: push id -> unix ms it was queued for the client, for the last few minutes (queues.PUSHES_KEPT_MS):
    a push queued again (a retried publish) skips the clients that have it. Expires with the client's silence."""
    return _client(client_id, "pushes")


def counter_keys(kind: str, row_id) -> tuple:
    tag = f"{PREFIX}:{{cnt:{kind}:{row_id}}}"
    return f"{tag}:live", f"{tag}:pending"


def clicked(push_id, client_id: str) -> str:
    """Set by a client's first click on a delivery (storage/clicks.py): later clicks of it count nothing."""
    return f"{PREFIX}:click:{push_id}:{client_id}"


def job_arrivals(job_id) -> str:
    """Hash: unix minute -> messages of the job that arrived in it (the console's chart); in the job's counter slot."""
    return f"{PREFIX}:{{cnt:job:{job_id}}}:arrivals"


def geo(app_id) -> str:
    """The app's clients by last known location (GEOADD / GEOSEARCH)."""
    return f"{PREFIX}:geo:{app_id}"


def broadcasting(app_id) -> str:
    """Set while one of the app's broadcasts is being queued (storage/broadcasts.py)."""
    return f"{PREFIX}:bcast:{app_id}"


def rate(scope: str, window_number: int) -> str:
    """Calls counted in one fixed window of a rate limit."""
    return f"{PREFIX}:rate:{scope}:{window_number}"


def idempotency(api: str, app_id, key: str) -> str:
    """A publish call's answer, kept 24 hours under its idempotency_key; each API (legacy, REST) apart."""
    return f"{PREFIX}:idem:{api}:{app_id}:{key}"


def nonce(app_key: str, value: str) -> str:
    return f"{PREFIX}:nonce:{app_key}:{value}"


def route_keys(terminal_type: str) -> dict:
    """A terminal type's delivery queue (hipush/storage/routes.py), one slot:
    due (sorted set: job id -> unix ms it is due, or its lease ends), jobs (hash: job id -> JSON),
    lease (hash: job id -> token of the claim delivering it), tries (hash: job id -> attempts claimed)."""
    tag = f"{PREFIX}:{{route:{terminal_type}}}"
    return {part: f"{tag}:{part}" for part in ("due", "jobs", "lease", "tries")}


def route_body(push_id) -> str:
    """A push's message as its routed deliveries send it; expires a minute after the push does."""
    return f"{PREFIX}:route:body:{push_id}"
