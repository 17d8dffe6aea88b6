"""Live comet nodes: each registers its public address with a heartbeat; clients are spread by rendezvous hashing."""
import hashlib
import random
import time

from ..errors import unavailable


def _weight(client_id: str, node: str) -> bytes:
    return hashlib.sha1(f"{client_id}|{node}".encode()).digest()


class Nodes:
    def __init__(self, registry, store, public_addr: str, ttl: float):
        self.registry = registry
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
        self.registry.beat(self.public_addr, now, now - 100 * self.ttl_ms)  # forgets long-dead nodes

    def leave(self) -> None:
        self.registry.remove(self.public_addr)

    def live(self) -> list:
        return self.registry.since(int(time.time() * 1000) - self.ttl_ms)

    def records(self) -> list:
        """Each live node as {"address", "heartbeat_ms"} (its last heartbeat, unix ms)."""
        return [{"address": addr, "heartbeat_ms": beat}
                for addr, beat in self.registry.beats_since(int(time.time() * 1000) - self.ttl_ms)]

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
