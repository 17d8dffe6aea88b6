"""Delivery to terminals that don't long-poll: e-mail by SMTP; sms, weixin, qq, ios by a webhook per type.

`dispatch` (on the publishing path) only queues: one job per terminal in the
terminal type's reliable Redis queue (storage/routes.py). A type with no configured
route, and an e-mail terminal without a usable address, is counted failed at
once. Every worker's `drain` (a periodic job, each second) claims due jobs
while it has free delivery slots; each claimed job is delivered in its own
greenlet (a thread outside gevent), which then goes on claiming jobs of its
type one at a time until none is due. A delivery:

- of a push that has expired: not made; counted `expired`;
- accepted by the mail server or gateway: counted `sent`;
- refused for good (5xx SMTP reply, 4xx HTTP status but 408/429): counted `failed`;
- failed otherwise (timeout, connection error, 5xx HTTP, 4xx SMTP): tried again after
  backoff, 2×backoff, 4×backoff, ... seconds; `failed` after `attempts` attempts.
"""
import json
import logging
import threading
from collections import Counter, defaultdict

from ... import metrics
from ...clock import now_ms
from ...storage.routes import Claimed, job_id
from .base import Delivery, Permanent, Retry
from .smtp import SmtpRoute
from .webhook import WebhookRoute, session

log = logging.getLogger("hipush.routes")

CLAIM_BATCH = 100
MAX_BACKOFF_S = 3600


class DeliveryTimeout(Exception):
    pass


def _gevent_timeout():
    """gevent.Timeout when gunicorn's gevent worker has patched the standard library, else None."""
    try:
        from gevent import Timeout, monkey
    except ImportError:
        return None
    return Timeout if monkey.is_module_patched("socket") else None


def build(settings) -> dict:
    """{terminal_type: route} for what `settings` (config.RouteSettings) configures."""
    routes = {}
    if settings.smtp_host:
        routes["email"] = SmtpRoute(settings.smtp_host, settings.smtp_port, settings.smtp_tls, settings.smtp_user,
                                    settings.smtp_password, settings.smtp_from, settings.timeout)
    if settings.webhooks:
        http = session(settings.concurrency)
        for terminal_type, url in settings.webhooks:
            routes[terminal_type] = WebhookRoute(terminal_type, url, settings.webhook_secret, settings.timeout, http)
    return routes


class Routes:
    def __init__(self, queue, stats, settings, routes: dict = None):
        """queue: storage.routes.DeliveryQueue; settings: config.RouteSettings; routes: {terminal_type: route}
        (default: built from settings)."""
        self.stats = stats
        self.settings = settings
        self.queue = queue
        self.routes = build(settings) if routes is None else routes
        # one delivery may take this long; its lease outlasts it, so no other worker takes a job still in hand
        self.deadline = 3 * settings.timeout
        self.lease_ms = 1000 * (4 * settings.timeout + 2)
        self._active = 0
        self._lock = threading.Lock()
        self._turn = 0
        self._unrouted_logged = set()
        self._timeout = _gevent_timeout()
        self._stopping = False

    # the publishing side

    def dispatch(self, push: dict, body: dict, rows: list) -> None:
        """Queues (client_id, terminal_type, address) rows on their routes; a type with no route counts as failed."""
        now = now_ms()
        jobs, failed = defaultdict(list), Counter()
        for client_id, terminal_type, address in rows:
            route = self.routes.get(terminal_type)
            if route is None:
                self._log_unrouted(terminal_type)
                failed[terminal_type] += 1
            elif not route.accepts(address):
                failed[terminal_type] += 1
            else:
                jobs[terminal_type].append((job_id(push["id"], client_id), {
                    "p": push["id"], "j": push["job_id"], "x": push["expires_at"], "c": client_id,
                    "a": address or ""}))
        if jobs:
            body_json = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            self.queue.add(push["id"], push["expires_at"], body_json, jobs, now)
        self.stats.count("failed", push["id"], push["job_id"], failed.total())
        for terminal_type, n in failed.items():
            metrics.route_delivery(terminal_type, "failed", n)

    def _log_unrouted(self, terminal_type) -> None:
        if terminal_type not in self._unrouted_logged:
            self._unrouted_logged.add(terminal_type)
            log.warning("no route for %s terminals: their deliveries are counted failed (see README, "
                        "Delivery routes)", terminal_type)

    # the delivering side

    def drain(self) -> None:
        """The periodic job: hands due jobs to free delivery slots; returns without waiting for deliveries."""
        if not self.routes or self._stopping:
            return
        types = list(self.routes)
        self._turn = (self._turn + 1) % len(types)
        for terminal_type in types[self._turn:] + types[:self._turn]:  # each type goes first in turn
            free = self._free_slots()
            if not free:
                return
            claimed = self.queue.claim(terminal_type, min(free, CLAIM_BATCH), now_ms(), self.lease_ms)
            bodies = self.queue.bodies({c.job["p"] for c in claimed})
            for job in claimed:
                self._start(job, bodies.get(job.job["p"]))

    def _free_slots(self) -> int:
        with self._lock:
            return self.settings.concurrency - self._active

    def _start(self, job: Claimed, body) -> None:
        with self._lock:
            self._active += 1
        try:
            threading.Thread(target=self._run, args=(job, body), daemon=True,
                             name=f"hipush-route-{job.terminal_type}").start()
        except BaseException:
            with self._lock:
                self._active -= 1
            raise

    def _run(self, job: Claimed, body) -> None:
        """Delivers `job`, then goes on with due jobs of its type, one at a time, until none is due."""
        try:
            while job is not None:
                try:
                    self.deliver(job, body)
                except Exception:  # Redis went away mid-job: the lease brings the job back
                    log.exception("delivery %s (%s) broke off", job.id, job.terminal_type)
                    return
                if self._stopping:
                    return
                claimed = self.queue.claim(job.terminal_type, 1, now_ms(), self.lease_ms)
                job = claimed[0] if claimed else None
                body = self.queue.bodies([job.job["p"]])[job.job["p"]] if job else None
        except Exception:
            log.exception("claiming %s deliveries failed", job.terminal_type if job else "")
        finally:
            with self._lock:
                self._active -= 1

    def deliver(self, job: Claimed, body) -> None:
        """One attempt at one claimed job; counts its outcome once it is final."""
        item = job.job
        now = now_ms()
        if item["x"] <= now:
            return self._done(job, "expired")
        if body is None:  # only gone if it expired or Redis lost it
            log.warning("delivery %s: its message is no longer in Redis", job.id)
            return self._done(job, "failed")
        if job.attempt > self.settings.attempts:  # the workers that held it died
            log.warning("delivery %s (%s): no attempt left after %s", job.id, job.terminal_type, job.attempt - 1)
            return self._done(job, "failed")
        delivery = Delivery(job.terminal_type, item["c"], item["a"], item["p"], body, job.attempt)
        try:
            self._send(delivery)
        except Permanent as exc:
            log.warning("delivery %s (%s) refused: %s", job.id, job.terminal_type, exc)
            return self._done(job, "failed")
        except Exception as exc:  # Retry, DeliveryTimeout, or a route's own bug
            if not isinstance(exc, (Retry, DeliveryTimeout)):
                log.exception("delivery %s (%s) raised", job.id, job.terminal_type)
            return self._again(job, exc)
        return self._done(job, "sent")

    def _send(self, delivery: Delivery) -> None:
        route = self.routes[delivery.terminal_type]
        if self._timeout is None:
            return route.send(delivery)  # the route's socket timeouts bound it
        with self._timeout(self.deadline, DeliveryTimeout(f"no answer within {self.deadline}s")):
            return route.send(delivery)

    def _again(self, job: Claimed, exc: Exception) -> None:
        if job.attempt >= self.settings.attempts:
            log.warning("delivery %s (%s) failed after %s attempts: %s", job.id, job.terminal_type, job.attempt, exc)
            return self._done(job, "failed")
        wait = min(self.settings.backoff * 2 ** (job.attempt - 1), MAX_BACKOFF_S)
        after = getattr(exc, "after", None)
        if after:
            wait = max(wait, after)
        due = now_ms() + int(wait * 1000)
        if due >= job.job["x"]:
            return self._done(job, "expired")  # it would expire before the next attempt
        log.info("delivery %s (%s) attempt %s failed (%s); next in %ss", job.id, job.terminal_type, job.attempt,
                 exc, wait)
        self.queue.retry(job, due)

    def _done(self, job: Claimed, outcome: str) -> None:
        if self.queue.finish(job):  # False: our lease ran out and another worker has the job now
            self.stats.count(outcome, job.job["p"], job.job["j"], 1)
            metrics.route_delivery(job.terminal_type, outcome)

    def stop(self) -> None:
        """The worker is stopping: claim nothing more."""
        self._stopping = True
