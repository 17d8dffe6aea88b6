"""Builds every service over the storage layer; views reach them through `services()`."""
import logging

from flask import current_app

from .. import metrics
from ..storage import redis as redis_pools
from ..storage.broadcasts import BroadcastMarks
from ..storage.clicks import ClickMarks
from ..storage.clients import ClientMeta, GeoIndex
from ..storage.counters import CounterStore
from ..storage.db import ensure_schema, make_engine
from ..storage.embedded import EmbeddedRedis
from ..storage.guards import IdempotentAnswers, Nonces, RateWindows
from ..storage.installation import Installation
from ..storage.nodes import NodeRegistry
from ..storage.queues import Queues
from ..storage.routes import DeliveryQueue
from ..storage.runs import RunMarks
from ..storage.store import Store
from . import scheduler
from .apps import Apps
from .audit import Audit
from .broadcasts import BroadcastsInFlight
from .clicks import Clicks
from .clients import META_TTL, Clients
from .comet import AnswerHold, Comet
from .guards import Idempotency, RateLimiter
from .health import Readiness
from .jobs import Jobs
from .nodes import Nodes
from .operators import Operators
from .publish import Publisher
from .reports import Reports
from .retention import CHECK_SECONDS as RETENTION_CHECK_SECONDS, Retention
from .routes import Routes
from .stats import Stats
from .targets import Targets
from .terminals import Terminals
from .timers import Timers
from .topics import Topics

log = logging.getLogger("hipush")


class Services:
    def __init__(self, config):
        self.config = config
        self.embedded = EmbeddedRedis(config.data_dir) if config.embedded_redis else None
        if self.embedded:
            self.embedded.ensure_running(detach=True)  # no-op when gunicorn's master started it
        self.engine = make_engine(config.database_url)
        ensure_schema(self.engine, unreachable_ok=True)  # gunicorn's master made it before forking
        self.store = Store(self.engine)
        pools = self.redis = redis_pools.connect(config.effective_redis_url, config.redis_cluster_nodes,
                                                 config.max_parked_polls, config.poll_timeout_max)
        self.installation = Installation(pools.commands, self.store, config.redis_location, config.database_url)
        # raises InstallationMismatch for another installation's Redis (gunicorn's master checked it already)
        self.installation.check(unreachable_ok=True)
        self.queues = Queues(pools, config.limits.queue_length)
        counters = CounterStore(pools)
        self.stats = Stats(self.store, counters)
        self.retention = Retention(self.store, counters, RunMarks(pools), config.retention_days)
        self.apps = Apps(self.store, Nonces(pools))
        self.rate_limiter = RateLimiter(RateWindows(pools))
        self.idempotency = Idempotency(IdempotentAnswers(pools))
        geo = GeoIndex(pools)
        self.clients = Clients(self.store, ClientMeta(pools, META_TTL), geo, self.queues, config.secret_key,
                               config.token_lifetime)
        self.jobs = Jobs(self.store, self.stats)
        self.clicks = Clicks(self.store, ClickMarks(pools), self.stats, config.retention_days)
        self.topics = Topics(self.store)
        self.targets = Targets(self.store, geo)
        self.terminals = Terminals(self.store, self.queues, self.stats, self.clients, self.targets, META_TTL,
                                   config.presence_grace)
        self.routes = Routes(DeliveryQueue(pools), self.stats, config.routes)
        answer_hold = AnswerHold()
        self.publisher = Publisher(self.store, pools, self.queues, self.stats, self.targets, self.routes, answer_hold,
                                   BroadcastsInFlight(BroadcastMarks(pools)), config.default_expires,
                                   config.send_lease, config.redis_wait_replicas, config.redis_wait_timeout)
        self.timers = Timers(self.store, self.publisher)
        self.comet = Comet(self.queues, self.stats, self.clients, answer_hold, config.presence_grace)
        self.nodes = Nodes(NodeRegistry(pools), self.store, config.public_addr, config.node_ttl, metrics.node_figures)
        self.readiness = Readiness(pools, self.store, lambda: self.stopping)
        self.audit = Audit(self.store)
        self.operators = Operators(self.store, self.audit)
        self.reports = Reports(self.store, self.stats)
        self.scheduler = None
        self.stopping = False

    def start_background(self) -> None:
        """Heartbeats, counter and metric flushes, timed pushes, retention and the Redis' installation identity, on
        APScheduler."""
        jobs = [(self.stats.flush, 1), (metrics.flush, 1), (self.timers.fire_due, 1),
                (self.retention.run, RETENTION_CHECK_SECONDS), (self.installation.keep, 5)]
        if self.routes.routes:
            jobs.append((self.routes.drain, 1))  # e-mail and gateway deliveries, off the request path
        if "comet" in self.config.roles:
            scheduler.safely(self.nodes.heartbeat)()  # live from the moment we answer requests
            jobs.append((self.nodes.heartbeat, self.config.node_heartbeat))
        if self.embedded:
            jobs.append((self._revive_embedded_redis, 2))
        self.scheduler = scheduler.start(jobs)

    def _revive_embedded_redis(self) -> None:
        if not self.embedded.alive():
            log.warning("the embedded redis-server is down; starting it again")
            self.embedded.ensure_running(detach=True)

    def shutdown(self) -> None:
        """The worker is stopping: answer parked polls at once, refuse new ones, leave the node registry.
        Once: Ctrl-C signals a worker twice (the terminal's SIGINT, then the master's SIGQUIT)."""
        if self.stopping:
            return
        self.stopping = True
        if self.scheduler:
            self.scheduler.shutdown(wait=False)
        self.routes.stop()  # claims no more deliveries; the ones in hand finish or their leases run out
        try:
            self.comet.release_all()  # refuses new polls even when Redis is down
            if "comet" in self.config.roles:
                self.nodes.leave()  # the node's other workers re-register it within a heartbeat
        except redis_pools.ERRORS as exc:  # parked polls failed with it already (503); the registry entry expires
            log.warning("stopping while redis is unavailable: %s", exc)


def services() -> Services:
    return current_app.extensions["hipush"]
