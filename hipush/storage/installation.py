"""Which installation a Redis belongs to.

The database holds its installation's identity (hipush_installation, written
once by ensure_schema); the Redis it works with keeps the same identity under
one key. A node never mixes one installation's database with another's Redis:
there, push 1 of a new database would inherit the counts of the old push 1,
and a first publish would get the old app's stored idempotency answer.

`python -m hipush.storage.installation` makes the schema and checks the Redis:
gunicorn's master runs it in a child before forking (so that the master never
imports redis-py or ssl before the gevent workers patch the standard library).
"""
import functools
import logging
from urllib.parse import urlsplit

import redis
import sqlalchemy as sa

from . import keys
from ..clock import now_ms
from .db import installation_id

log = logging.getLogger("hipush.installation")
RESET_COMMAND = "python app.py reset-redis"


class InstallationMismatch(RuntimeError):
    """The Redis holds another installation's data, or hipush data of unknown origin."""


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}@{host}" if parts.username else host).geturl()


class Installation:
    def __init__(self, commands, store, redis_url: str, database_url: str):
        self.commands = commands
        self.store = store
        self.redis_url = without_password(redis_url)
        self.database_url = without_password(database_url)

    @functools.cached_property
    def identity(self) -> str:
        return installation_id(self.store.engine)

    def held(self):
        """The identity the Redis holds, or None."""
        value = self.commands.get(keys.INSTALLATION)
        return value.decode() if value is not None else None

    def check(self, unreachable_ok: bool = False) -> None:
        """At start: a Redis with no hipush keys is adopted, one of this installation accepted, any other
        refused (InstallationMismatch). Hipush keys without an identity are refused too, unless the database
        is one of a hipush from before identities (an upgrade: that Redis is the one it ran with).
        unreachable_ok: when the Redis or the database does not answer (a worker restarted during an outage; the
        master checked both before any worker started), the check is left to keep()."""
        try:
            held = self.held()
            if held is None:
                if not self._holds_hipush_keys() or self.store.predates_installation():
                    self._adopt()
                held = self.held()  # or another node adopted it meanwhile (an identity comes before other keys)
            identity = self.identity  # read from the database
        except (redis.ConnectionError, redis.TimeoutError, sa.exc.OperationalError) as error:
            if not unreachable_ok:
                raise
            log.warning("Redis %s or database %s does not answer (%s): which installation the Redis belongs to "
                        "is checked once both do", self.redis_url, self.database_url, error)
            return
        if held != identity:
            raise InstallationMismatch(self._refusal(held))

    def keep(self) -> None:
        """Periodically, on a running node: a Redis emptied under it (restarted without persistence) is adopted
        again; another installation's identity in it is an error."""
        held = self.held()
        if held is None:
            self._adopt()
        elif held != self.identity:
            log.error("%s This node keeps running but mixes the two: stop it.", self._refusal(held))

    def reset(self) -> int:
        """Deletes every hipush key (hp:*) of the Redis, in batches (never FLUSHDB: the Redis may hold other
        data), then adopts it; returns how many keys were deleted."""
        deleted, batch = 0, []
        for key in self.commands.scan_iter(match=keys.EVERY_KEY, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += self.commands.unlink(*batch)
                batch = []
        if batch:
            deleted += self.commands.unlink(*batch)
        self._adopt()
        return deleted

    def _holds_hipush_keys(self) -> bool:
        return any(key != keys.INSTALLATION.encode()
                   for key in self.commands.scan_iter(match=keys.EVERY_KEY, count=1000))

    def _adopt(self) -> None:
        if not self.commands.set(keys.INSTALLATION, self.identity, nx=True):
            return  # another process adopted it first
        log.info("Redis %s now belongs to installation %s (database %s)", self.redis_url, self.identity,
                 self.database_url)
        outstanding = self.store.pushes_awaiting_delivery(now_ms())
        if outstanding:
            log.warning("Redis %s held no hipush data, so messages that were queued are lost: %d unexpired pushes "
                        "of database %s had messages not yet delivered (queued in the Redis it used before, or in "
                        "this one before a restart without persistence)", self.redis_url, outstanding,
                        self.database_url)

    def _refusal(self, held) -> str:
        if held is None:
            found = (f"Redis {self.redis_url} holds hipush data (keys hp:*) but no installation identity: data "
                     "of an older hipush or of unknown origin,")
        else:
            found = f"Redis {self.redis_url} belongs to hipush installation {held},"
        return (f"{found} and database {self.database_url} is installation {self.identity}. Their queued "
                "messages, counters and stored answers must not mix. If this database is the one to keep, "
                f"stop the nodes using that Redis and run `{RESET_COMMAND}` with this node's settings: it deletes "
                "hipush's keys from that Redis and gives it to this database; or set HIPUSH_REDIS_URL / "
                "HIPUSH_DATABASE_URL to the Redis and database that belong together.")


if __name__ == "__main__":
    import sys

    from hipush import config

    from .db import ensure_schema, make_engine
    from .redis import connect
    from .store import Store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    settings = config.load()
    engine = make_engine(settings.database_url)
    ensure_schema(engine)
    try:
        commands = connect(settings.effective_redis_url, settings.redis_cluster_nodes, 1, 0).commands
    except redis.exceptions.RedisClusterException as error:
        sys.exit(f"hipush refuses to start: cannot reach Redis {settings.redis_location}: {error}")
    installation = Installation(commands, Store(engine), settings.redis_location, settings.database_url)
    try:
        installation.check()
    except InstallationMismatch as refusal:
        sys.exit(f"hipush refuses to start: {refusal}")
    except redis.RedisError as error:
        sys.exit(f"hipush refuses to start: cannot check which installation Redis {installation.redis_url} "
                 f"belongs to: {error}")
