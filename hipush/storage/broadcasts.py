"""Marks of apps whose broadcast is being queued (services/broadcasts.py says why), one key per app."""
from . import keys

# KEYS key; ARGV token. Only the holder clears it (it may have expired and been taken by another broadcast).
_CLEAR = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class BroadcastMarks:
    def __init__(self, pools):
        self.pools = pools
        self.commands = pools.commands
        self._clear = pools.register_script(_CLEAR)

    def set_if_free(self, app_id: int, token: str, ttl_ms: int) -> bool:
        return bool(self.commands.set(keys.broadcasting(app_id), token, nx=True, px=ttl_ms))

    def renew(self, pipe, app_id: int, ttl_ms: int) -> None:
        """On a ScriptPipeline the caller sends anyway."""
        pipe.pexpire(keys.broadcasting(app_id), ttl_ms)

    def clear(self, app_id: int, token: str) -> None:
        self._clear(keys=[keys.broadcasting(app_id)], args=[token])

    def marked(self, app_ids) -> set:
        """Those of the apps that have a mark."""
        app_ids = list(app_ids)
        marks = self.pools.mget([keys.broadcasting(app_id) for app_id in app_ids])
        return {app_id for app_id, mark in zip(app_ids, marks) if mark is not None}
