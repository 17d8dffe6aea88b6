"""Builds every service over the storage layer; views reach them through `services()`."""
import logging
import threading
import time

from flask import current_app

from ..storage.counters import CounterStore
from ..storage.db import ensure_schema, make_engine
from ..storage.queues import Queues
from ..storage.embedded import EmbeddedRedis
from ..storage.redis import RedisPools
from ..storage.store import Store
from .apps import Apps
from .clients import Clients
from .comet import Comet
from .jobs import Jobs
from .nodes import Nodes
from .publish import Publisher
from .stats import Stats
from .topics import Topics

log = logging.getLogger("hipush")


class Services:
    def __init__(self, config):
        self.config = config
        if config.embedded_redis:
            EmbeddedRedis(config.data_dir).ensure_running(detach=True)  # no-op when gunicorn's master started it
        self.engine = make_engine(config.database_url)
        ensure_schema(self.engine)
        self.store = Store(self.engine)
        self.redis = RedisPools(config.effective_redis_url, config.max_parked_polls, config.poll_timeout_max)
        commands = self.redis.commands
        self.queues = Queues(commands, config.limits.queue_length)
        self.stats = Stats(self.store, CounterStore(commands), commands)
        self.apps = Apps(self.store, commands)
        self.clients = Clients(self.store, commands, config.secret_key, config.token_lifetime)
        self.jobs = Jobs(self.store, self.stats)
        self.topics = Topics(self.store)
        self.publisher = Publisher(self.store, commands, self.queues, self.stats, config.default_expires)
        self.comet = Comet(self.redis, self.queues, self.stats, config.presence_grace)
        self.nodes = Nodes(commands, config.public_addr, config.node_ttl)
        self._stop = threading.Event()
        self._embedded = EmbeddedRedis(config.data_dir) if config.embedded_redis else None

    def start_background(self) -> None:
        """Node heartbeats and counter flushes, in a daemon thread (a greenlet under gevent)."""
        if "comet" in self.config.roles:
            self._safely(self.nodes.heartbeat)  # live from the moment we answer requests
        threading.Thread(target=self._background_loop, name="hipush-background", daemon=True).start()

    def _background_loop(self) -> None:
        next_heartbeat = time.monotonic() + self.config.node_heartbeat
        while not self._stop.wait(1.0):
            if "comet" in self.config.roles and time.monotonic() >= next_heartbeat:
                next_heartbeat = time.monotonic() + self.config.node_heartbeat
                self._safely(self.nodes.heartbeat)
            if self._embedded:
                self._safely(self._revive_embedded_redis)
            self._safely(self.stats.flush)

    def _revive_embedded_redis(self) -> None:
        if not self._embedded.alive():
            log.warning("the embedded redis-server is down; starting it again")
            self._embedded.ensure_running(detach=True)

    @staticmethod
    def _safely(task) -> None:
        try:
            task()
        except Exception as exc:  # Redis or the database is down: say so, retry next round
            log.warning("background %s failed: %s", task.__qualname__, exc)

    def shutdown(self) -> None:
        """The worker is stopping: leave the node registry and answer parked polls at once."""
        self._stop.set()
        if "comet" in self.config.roles:
            self._safely(self.nodes.leave)  # the node's other workers re-register it within a heartbeat
        self._safely(self.comet.release_all)


def services() -> Services:
    return current_app.extensions["hipush"]
