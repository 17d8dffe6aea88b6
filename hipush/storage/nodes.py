"""The registry of live comet nodes: public address -> last heartbeat (unix ms), one sorted set."""
from . import keys


class NodeRegistry:
    def __init__(self, pools):
        self.commands = pools.commands

    def beat(self, addr: str, now_ms: int, forget_before_ms: int) -> None:
        """Records a heartbeat of `addr` and forgets nodes silent since before `forget_before_ms`."""
        pipe = self.commands.pipeline(transaction=False)
        pipe.zadd(keys.NODES, {addr: now_ms})
        pipe.zremrangebyscore(keys.NODES, 0, forget_before_ms)
        pipe.execute()

    def remove(self, addr: str) -> None:
        self.commands.zrem(keys.NODES, addr)

    def beats_since(self, since_ms: int) -> list:
        """(address, last heartbeat in unix ms) of the nodes heard from at or after `since_ms`, by address."""
        return sorted((n.decode(), int(ms)) for n, ms in
                      self.commands.zrangebyscore(keys.NODES, since_ms, "+inf", withscores=True))

    def since(self, since_ms: int) -> list:
        """Addresses whose last heartbeat is at or after `since_ms`, sorted."""
        return sorted(n.decode() for n in self.commands.zrangebyscore(keys.NODES, since_ms, "+inf"))
