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

TTL_MS = 30_000  # renewed with every page queued; outlives a worker that died holding it by this much
POLL_SECONDS = 0.005  # how often a waiting publish looks again
LONGEST_WAIT = 120  # seconds a publish waits before answering 503 instead


class BroadcastsInFlight:
    def __init__(self, marks):
        """marks: storage.broadcasts.BroadcastMarks"""
        self.marks = marks

    def begin(self, app_id: int) -> str:
        """Waits until no other broadcast of the app is being queued, then marks this one; returns its token."""
        token = uuid.uuid4().hex
        self._wait(lambda: self.marks.set_if_free(app_id, token, TTL_MS))
        return token

    def keep(self, pipe, app_id: int) -> None:
        """Renews the mark on a pipeline the broadcast sends anyway (one per page)."""
        self.marks.renew(pipe, app_id, TTL_MS)

    def end(self, app_id: int, token: str) -> None:
        self.marks.clear(app_id, token)

    def busy(self, app_ids) -> set:
        """Those of the apps that have a broadcast being queued."""
        return self.marks.marked(app_ids)

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
