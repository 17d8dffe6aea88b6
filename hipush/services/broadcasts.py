"""Publish order while a broadcast is queued after its call has answered.

A broadcast's call answers once its push is recorded, and its clients are queued
afterwards (see Publisher.publish_now). A later publish by the same app, taken
by any worker of any node, must not overtake it at any client. So while an app
has a broadcast being queued, its key in Redis is set: a later broadcast waits
to set it itself, a unicast waits for it to clear. The key expires if its worker
dies mid-broadcast, so nothing waits for ever.
"""
import time
import uuid

from ..errors import unavailable
from ..storage import keys

TTL_MS = 30_000  # renewed with every page queued; outlives a worker that died holding it by this much
POLL_SECONDS = 0.005  # how often a waiting publish looks again
LONGEST_WAIT = 120  # seconds a publish waits before answering 503 instead

# KEYS key; ARGV token. Only the holder clears it (it may have expired and been taken by another broadcast).
_END = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class BroadcastsInFlight:
    def __init__(self, commands):
        self.commands = commands
        self._end = commands.register_script(_END)

    def begin(self, app_id: int) -> str:
        """Waits until no other broadcast of the app is being queued, then marks this one; returns its token."""
        token = uuid.uuid4().hex
        self._wait(lambda: self.commands.set(keys.broadcasting(app_id), token, nx=True, px=TTL_MS))
        return token

    def keep(self, pipe, app_id: int) -> None:
        """Renews the mark on a pipeline the broadcast sends anyway (one per page)."""
        pipe.pexpire(keys.broadcasting(app_id), TTL_MS)

    def end(self, app_id: int, token: str) -> None:
        self._end(keys=[keys.broadcasting(app_id)], args=[token])

    def busy(self, app_ids) -> set:
        """Those of the apps that have a broadcast being queued."""
        app_ids = list(app_ids)
        marks = self.commands.mget([keys.broadcasting(app_id) for app_id in app_ids])
        return {app_id for app_id, mark in zip(app_ids, marks) if mark is not None}

    def wait_none(self, app_id: int) -> None:
        """Returns once the app has no broadcast being queued."""
        self._wait(lambda: not self.busy([app_id]))

    @staticmethod
    def _wait(done) -> None:
        deadline = time.monotonic() + LONGEST_WAIT
        while not done():
            if time.monotonic() > deadline:
                raise unavailable("an earlier broadcast of this app is still being queued")
            time.sleep(POLL_SECONDS)
