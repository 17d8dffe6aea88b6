"""What Redis keeps of a client: its cached token epoch and app (the SQL row is the truth), and its
place in its app's geo index."""
from . import keys

# KEYS meta; ARGV app_id epoch ttl. Never lowers a cached epoch, so a lookup that
# raced a revocation cannot bring the old epoch back.
_CACHE_META = """
local cached = redis.call('HGET', KEYS[1], 'epoch')
if cached and tonumber(cached) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'app_id', ARGV[1], 'epoch', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class ClientMeta:
    def __init__(self, pools, ttl: int):
        self.commands = pools.commands
        self.ttl = ttl
        self._cache = pools.register_script(_CACHE_META)

    def cache(self, client_id: str, app_id: int, epoch: int) -> None:
        self._cache(keys=[keys.client_meta(client_id)], args=[app_id, epoch, self.ttl])

    def get(self, client_id: str):
        """{"app_id", "epoch"} as cached, or None."""
        found = self.commands.hgetall(keys.client_meta(client_id))
        return {"app_id": int(found[b"app_id"]), "epoch": int(found[b"epoch"])} if found else None


class GeoIndex:
    """Each app's clients by last known location (GEOADD / GEOSEARCH)."""

    def __init__(self, pools):
        self.commands = pools.commands

    def add(self, app_id: int, client_id: str, lat: float, lng: float) -> None:
        self.commands.geoadd(keys.geo(app_id), (lng, lat, client_id))

    def remove(self, app_id: int, client_ids) -> None:
        self.commands.zrem(keys.geo(app_id), *client_ids)

    def near(self, app_id: int, lat: float, lng: float, radius: float) -> list:
        """Client ids within `radius` metres."""
        return [m.decode() for m in self.commands.geosearch(
            keys.geo(app_id), longitude=lng, latitude=lat, radius=radius, unit="m")]
