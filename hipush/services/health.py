"""Readiness (GET /readyz): whether a load balancer should send this node requests now."""
import threading
import time

from ..errors import unavailable

ANSWER_WITHIN_SECONDS = 1.0


def _answers_within(checks: dict, seconds: float) -> list:
    """Runs every check (name -> callable returning truth) at once; the names of those that were not true
    within `seconds` in all. A check still running then is left to finish on its own (a thread, or a greenlet
    in a gevent worker)."""
    results = {}
    threads = [threading.Thread(target=lambda n=name, c=check: results.__setitem__(n, c()), daemon=True)
               for name, check in checks.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [name for name in checks if not results.get(name)]


class Readiness:
    def __init__(self, redis_pools, store, stopping):
        """stopping: a callable, true once this worker is stopping (Services.stopping)."""
        self.checks = {"redis": redis_pools.answers, "the database": store.reachable}
        self.stopping = stopping

    def check(self) -> None:
        """Raises 503 / 1031 when the node is stopping (first, so a load balancer drains it), or its Redis or
        database does not answer within a second, naming which."""
        if self.stopping():
            raise unavailable("not ready: this node is stopping")
        failed = _answers_within(self.checks, ANSWER_WITHIN_SECONDS)
        if failed:
            raise unavailable(f"not ready: {' and '.join(failed)} did not answer within "
                              f"{ANSWER_WITHIN_SECONDS:g} s")
