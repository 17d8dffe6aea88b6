"""Live comet nodes: each registers its public address with a heartbeat; clients are spread by rendezvous hashing.

Each heartbeat (every worker of the node beats) also records the node's figures, which any node can show
for all (`live_with_figures`, e.g. an operator console):

- `workers`: the node's live gunicorn workers;
- `parked_polls`: long polls the node is answering now;
- `requests_per_second`: HTTP requests it finished per second over the last minute;
- `p99_ms`: the 99th percentile of their latency over that minute, in ms, long polls left out (their
  duration is their wait); 0 with no such request.

They come from the node's Prometheus metrics (hipush/metrics.py), so they agree with `/metrics`.
"""
import hashlib
import random
import time

from ..errors import unavailable

FIGURES = ("workers", "parked_polls", "requests_per_second", "p99_ms")


def _weight(client_id: str, node: str) -> bytes:
    return hashlib.sha1(f"{client_id}|{node}".encode()).digest()


class Nodes:
    def __init__(self, registry, store, public_addr: str, ttl: float, figures):
        """figures: a callable giving this node's figures now (metrics.node_figures)."""
        self.registry = registry
        self.figures = figures
        self.store = store
        self.public_addr = public_addr
        self.ttl_ms = int(ttl * 1000)

    def heartbeat(self) -> None:
        """Advertises this node while it can serve: its database answers and Redis takes the beat. A node
        whose database fails leaves at once (and comes back with its next beat once it answers); one whose
        Redis fails cannot beat, and is no longer handed out once the TTL has passed."""
        if not self.store.reachable():
            self.leave()
            raise RuntimeError("the database does not answer: this node left the registry")
        now = int(time.time() * 1000)
        self.registry.beat(self.public_addr, now, now - 100 * self.ttl_ms, self.figures())  # forgets long-dead nodes

    def leave(self) -> None:
        self.registry.remove(self.public_addr)

    def live(self) -> list:
        return self.registry.since(int(time.time() * 1000) - self.ttl_ms)

    def live_with_figures(self) -> list:
        """The live nodes, sorted by address: {"addr", "heartbeat_age_ms", "workers", "parked_polls",
        "requests_per_second", "p99_ms"} (figures missing from a node of an earlier version are None)."""
        now = int(time.time() * 1000)
        return [{"addr": addr, "heartbeat_age_ms": max(0, now - beat_ms),
                 **{name: figures.get(name) for name in FIGURES}}
                for addr, beat_ms, figures in self.registry.since_with_figures(now - self.ttl_ms)]

    def _address(self, node: str) -> dict:
        host, _, port = node.rpartition(":")
        return {"ip": host, "port": int(port)}

    def _require_live(self) -> list:
        nodes = self.live()
        if not nodes:
            raise unavailable("no live comet node")
        return nodes

    def for_client(self, client_id: str) -> dict:
        """Stable for a client while the set of live nodes is unchanged; moves only its share when it changes."""
        return self._address(max(self._require_live(), key=lambda node: _weight(client_id, node)))

    def any(self) -> dict:
        return self._address(random.choice(self._require_live()))
