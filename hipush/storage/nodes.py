"""The registry of live comet nodes: public address -> last heartbeat (unix ms), one sorted set; and each
node's figures as of that heartbeat, a JSON string of its own."""
import json

from . import keys


class NodeRegistry:
    def __init__(self, pools):
        self.pools = pools
        self.commands = pools.commands

    def beat(self, addr: str, now_ms: int, forget_before_ms: int, figures: dict) -> None:
        """Records a heartbeat of `addr` with its figures, and forgets nodes silent since before
        `forget_before_ms` (their figures expire by then too)."""
        pipe = self.commands.pipeline(transaction=False)
        pipe.zadd(keys.NODES, {addr: now_ms})
        pipe.zremrangebyscore(keys.NODES, 0, forget_before_ms)
        pipe.set(keys.node_figures(addr), json.dumps(figures), px=now_ms - forget_before_ms)
        pipe.execute()

    def remove(self, addr: str) -> None:
        self.commands.zrem(keys.NODES, addr)

    def since(self, since_ms: int) -> list:
        """Addresses whose last heartbeat is at or after `since_ms`, sorted."""
        return sorted(n.decode() for n in self.commands.zrangebyscore(keys.NODES, since_ms, "+inf"))

    def since_with_figures(self, since_ms: int) -> list:
        """(address, last heartbeat in unix ms, figures or {}) of the nodes `since` names, sorted."""
        beats = self.commands.zrangebyscore(keys.NODES, since_ms, "+inf", withscores=True)
        addrs = sorted(addr.decode() for addr, _ in beats)
        at = {addr.decode(): int(score) for addr, score in beats}
        figures = self.pools.mget([keys.node_figures(addr) for addr in addrs])
        return [(addr, at[addr], json.loads(raw) if raw else {}) for addr, raw in zip(addrs, figures)]
