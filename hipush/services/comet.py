"""The long poll (SPEC §5): acknowledge, hand back unacknowledged messages, else park on the queue.

A poll holds one connection of the blocking pool for its whole life and
registers itself as the client's poller ("redis client id:random"). A newer
poll of the same client CLIENT UNBLOCKs the older one, which then answers empty.
"""
import time
import uuid

import redis

from ..storage import queues
from ..storage.db import now_ms

BATCH = 100  # most messages handed out by one poll


class Comet:
    def __init__(self, pools, queue_ops, stats, presence_grace: int):
        self.pools = pools
        self.queue_ops = queue_ops
        self.stats = stats
        self.grace_ms = presence_grace * 1000

    def poll(self, client_id: str, ack, timeout: int) -> dict:
        """{"messages": [json text, ...], "missed": n} once messages wait or `timeout` seconds pass."""
        conn = redis.Redis(connection_pool=self.pools.blocking, single_connection_client=True)
        try:
            return self._poll(conn, client_id, ack, timeout)
        finally:
            conn.close()

    def _poll(self, conn, client_id, ack, timeout):
        me = f"{conn.connection.redis_client_id}:{uuid.uuid4().hex[:12]}"
        deadline = time.monotonic() + timeout
        step = self.queue_ops.begin_poll(conn, client_id, me, ack, now_ms(), BATCH,
                                         timeout * 1000 + self.grace_ms)
        self._unblock(step.poller)
        self._count(step)
        missed = step.missed
        while not step.entries:
            remaining = deadline - time.monotonic()
            if remaining <= 0.01:
                break
            self.queue_ops.wait(conn, client_id, remaining)
            step = self.queue_ops.take_if_current(conn, client_id, me, now_ms(), BATCH)
            self._count(step)
            missed += step.missed
            if step.poller != me:
                # a newer poll replaced this one; if the wait moved a message into inflight,
                # wake the newer poll so it hands it out now rather than at its timeout
                self._unblock(step.poller)
                return {"messages": [], "missed": missed}
        self.queue_ops.end_poll(conn, client_id, me, self.grace_ms)
        return {"messages": [queues.message_json(e) for e in step.entries], "missed": missed}

    def _unblock(self, poller: str) -> None:
        if poller:
            self.pools.commands.client_unblock(int(poller.split(":")[0]))

    def _count(self, step) -> None:
        self.stats.count_headers("arrived", step.acked)
        self.stats.count_headers("expired", step.expired)
