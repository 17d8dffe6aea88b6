"""Publishing: a message row, a push row per publish, then the push fanned out to its targets.

A push's id is its delivery id: the `id` a client sees and acknowledges. Two
publishes of one saved message are two pushes with distinct delivery ids.
Long-polling terminals get the push in their comet queue; e-mail and gateway
terminals are handed to the routes, which deliver off the request path.
Pushes to named clients, the bulk of the traffic, are recorded and queued in
batches shared by the worker's concurrent publish calls (batching.GroupCommit).
A broadcast (all, tags, org, geo) is recorded as sending and its call answers;
its clients are queued after the answer, page by page, and the push is then
marked sent (query_msg_status shows which). Later publishes of the same app wait
for it (broadcasts.BroadcastsInFlight), so per-client order is publish order.

One truth for a publish: the SQL commit. A push is recorded (status sending)
before anything is queued, so a call that fails before its commit answers an
error and was queued nowhere. Once committed, the push is delivered at least
once: it is queued, and marked sent only when every shard took it (and, with
HIPUSH_REDIS_WAIT_REPLICAS, its replicas too); a push still sending after
HIPUSH_SEND_LEASE seconds (a shard down, a worker killed, SQL gone between the
commit and the mark) is taken over by any worker (`retry_stale`) and queued
again, and the clients that have it already are skipped (queues.enqueue
remembers the pushes each client got). So the `sent` push row is the outbox:
the call answers OK once its row is committed, whatever fails after. The
counts are sent apart from the enqueue: a count that cannot land is kept and
sent again (Stats), and a retry counts only the clients it queued.
"""
import json
import logging
import time

from hipush_client.protocol import STATUS_FAILED, STATUS_SENDING, STATUS_SENT, STATUS_WAITING

from .. import metrics
from ..errors import not_found
from ..storage import queues
from ..clock import now_ms
from .batching import GroupCommit
from .stats import header_counts

log = logging.getLogger("hipush.publish")

COMET_TERMINALS = frozenset({"web", "android"})
PIPELINE_BATCH = 1000  # clients queued per Redis call of a broadcast (a page of target rows)
BEHIND_A_BROADCAST = "behind a broadcast"  # a unicast's batch result: its app has a broadcast being queued
ANSWER_HOLD_SECONDS = 2.0  # a longer broadcast lets this worker's woken polls answer while it goes on


class Publisher:
    def __init__(self, store, pools, queue_ops, stats, targets, routes, answer_hold, in_flight,
                 default_expires: int, send_lease: float, wait_replicas: int = 0, wait_timeout_ms: int = 0):
        """pools: storage.redis.RedisPools, whose pipelines carry a publish's Redis work. send_lease: seconds a
        push may stay sending without a sign of life before another worker takes it over. wait_replicas: the
        replicas of each master written that must have a push before it counts as queued."""
        self.store = store
        self.send_lease_ms = int(send_lease * 1000)
        self.wait = (wait_replicas, wait_timeout_ms)
        self.answer_hold = answer_hold
        self.in_flight = in_flight
        self.pools = pools
        self.queue_ops = queue_ops
        self.stats = stats
        self.targets = targets
        self.routes = routes
        self.default_expires = default_expires
        self._known_jobs = set()
        self._to_clients = GroupCommit(self._send_to_clients)

    def check_job(self, app: dict, job_id) -> None:
        """404 for a job the app does not have; jobs are never deleted, so known ones are remembered."""
        if job_id is None or (app["id"], job_id) in self._known_jobs:
            return
        if self.store.get_job(app["id"], job_id) is None:
            raise not_found("no such job")
        if len(self._known_jobs) > 100_000:
            self._known_jobs.clear()
        self._known_jobs.add((app["id"], job_id))

    def new_message(self, app: dict, job_id, msg_type: int, content: str, content_format: str = "text") -> dict:
        """A message (its job checked) not yet recorded: `save_message` or `create` records it."""
        self.check_job(app, job_id)
        return {"job_id": job_id, "msg_type": msg_type, "content": content, "content_format": content_format}

    def save_message(self, app: dict, job_id, msg_type: int, content: str, content_format: str = "text") -> dict:
        """Records a message (checking its job) and returns it as its row reads."""
        message = self.new_message(app, job_id, msg_type, content, content_format)
        message["id"] = self.store.create_message(app["id"], **message)
        return message

    def message(self, app: dict, message_id: int) -> dict:
        message = self.store.get_message(app["id"], message_id)
        if message is None:
            raise not_found("no such message")
        return message

    def create(self, app: dict, message: dict, target: dict, topic_ids, online_only: bool, status: int,
               push_time: int = None, expires_in: int = None) -> dict:
        """Records a push of `message` (and the message, if new) to a target the caller has checked
        (Targets.check gave topic_ids)."""
        push = self._new_push(app, message, target, online_only, status, push_time, expires_in)
        push["id"] = self.store.create_push(push, topic_ids, None if "id" in message else message)
        if status == STATUS_WAITING:
            metrics.published("timed")
        return push

    def _new_push(self, app, message, target, online_only, status, push_time=None, expires_in=None) -> dict:
        now = now_ms()
        return {"app_id": app["id"], "message_id": message.get("id"), "job_id": message["job_id"],
                "target": json.dumps(target), "online_only": online_only, "status": status,
                "push_time": push_time or now, "expires_at": now + 1000 * (expires_in or self.default_expires),
                "send_time": now if status == STATUS_SENDING else None}

    def publish_now(self, app: dict, message: dict, target: dict, topic_ids, online_only: bool,
                    push_time: int = None, expires_in: int = None, after_answer=None) -> dict:
        """A push sent now, in publish order at every client. To a few named clients: queued before the
        call answers, together with the worker's concurrent ones. A broadcast: recorded, then queued by
        `after_answer(work)` once the call has answered (None: before returning)."""
        if target["kind"] == "clients":
            push = self._new_push(app, message, target, online_only, STATUS_SENDING, push_time, expires_in)
            while self._to_clients.submit((push, message, target["ids"])) is BEHIND_A_BROADCAST:
                self.in_flight.wait_none(app["id"])
            if "id" not in push:  # not recorded: a client was deleted since Targets.check found it
                self.targets.forget(app["id"], target["ids"])
                raise not_found("no such terminal")
            metrics.published("unicast")
            return push
        mark = self.in_flight.begin(app["id"])
        try:
            push = self.create(app, message, target, topic_ids, online_only, STATUS_SENDING, push_time, expires_in)
        except Exception:
            self.in_flight.end(app["id"], mark)
            raise
        metrics.published("broadcast")
        work = lambda: self._fan_out(push, message, mark)  # noqa: E731
        if after_answer is None:
            work()
        else:
            after_answer(work)
        return push

    def publish_batch(self, app: dict, sends: list) -> None:
        """Pushes sent now to named clients (POST /push/batch): sends are (message, target, online_only,
        expires_in), recorded in one SQL transaction and queued in one Redis round trip per slot, behind the
        app's broadcasts. All or nothing: a client deleted since Targets.check leaves every push unrecorded."""
        batch = [(self._new_push(app, message, target, online, STATUS_SENDING, None, expires_in), message,
                  target["ids"])
                 for message, target, online, expires_in in sends]
        self.in_flight.wait_none(app["id"])
        self._record_and_queue(batch, whole=True)

    def _send_to_clients(self, batch: list) -> list:
        """A batch of (push, message, client ids): one SQL transaction, one Redis round trip. A push of an app
        with a broadcast being queued is left out (BEHIND_A_BROADCAST): its caller waits, then tries again."""
        busy = self.in_flight.busy({push["app_id"] for push, _, _ in batch})
        sends = [send for send in batch if send[0]["app_id"] not in busy]
        if sends:
            self._record_and_queue(sends)
        return [BEHIND_A_BROADCAST if push["app_id"] in busy else None for push, _, _ in batch]

    def _record_and_queue(self, sends: list, whole: bool = False) -> None:
        """Commits the pushes (the truth: from here on each call answers OK), then queues them in one round
        trip and marks sent those wholly queued; the others stay sending, for `retry_stale`. whole: a push that
        could not be recorded (its rows None) refuses them all (404, nothing recorded)."""
        rows_of = self.store.record_sends(sends, whole)
        if whole and None in rows_of:
            self.targets.forget(sends[0][0]["app_id"], [c for _, _, ids in sends for c in ids])
            raise not_found(f"no such terminal (messages[{rows_of.index(None)}])")
        pages = []
        for (push, message, _), rows in zip(sends, rows_of):
            if rows is not None:  # else not recorded (Store.record_sends)
                pages.append((push, *self._body_and_entry(push, message), rows))
        queued = self._queue_pages(self.pools.pipeline(), pages)
        try:
            self.store.move_pushes([page[0]["id"] for page, (done, _) in zip(pages, queued) if done],
                                   STATUS_SENDING, STATUS_SENT)
        except Exception:
            log.exception("pushes queued but not marked sent: retry_stale will find them queued")

    def send(self, push: dict, message: dict, retry: bool = False) -> None:
        """Queues a push whose status the caller has set to sending (a timer's, a retried one), in publish order."""
        self._fan_out(push, message, self.in_flight.begin(push["app_id"]), retry)

    def retry_stale(self) -> None:
        """Takes over the pushes left sending longer than the lease (their queueing failed, or their worker died)
        and queues them again: clients that got them already are skipped. One worker wins each (a compare-and-set
        on send_time)."""
        for push_id, send_time in self.store.stale_pushes(STATUS_SENDING, now_ms() - self.send_lease_ms, 100):
            if self.store.touch_push(push_id, STATUS_SENDING, send_time, now_ms()):
                push = self.store.get_push(push_id)
                log.warning("push %s: still sending after its lease, queued again", push_id)
                self.send(push, self.store.get_message(push["app_id"], push["message_id"]), retry=True)

    def _fan_out(self, push: dict, message: dict, mark: str, retry: bool = False) -> None:
        """Queues a push for its targets page by page, then marks it sent and clears the app's in-flight mark.
        A failure is logged and the push left sending, for `retry_stale` (its call has answered already).
        A retry that reaches every target also sets its `sent` count right: an earlier attempt may have queued
        clients whose replies (and so counts) it never got."""
        push_id, app_id = push["id"], push["app_id"]
        targeted, served, complete = 0, 0, True
        started = touched = time.monotonic()
        self.answer_hold.hold()
        held_until = time.monotonic() + ANSWER_HOLD_SECONDS
        try:
            if push["expires_at"] <= now_ms():
                self.store.finish_push(push_id, STATUS_FAILED, 0)  # expired before it could be sent
                return
            body, raw_entry = self._body_and_entry(push, message)
            for rows in self.targets.resolve(app_id, json.loads(push["target"])):
                for start in range(0, len(rows), PIPELINE_BATCH):
                    page = rows[start:start + PIPELINE_BATCH]
                    pipe = self.pools.pipeline()
                    self.in_flight.keep(pipe, app_id)  # also on pages of routed terminals only: a long one keeps it
                    [(done, have)] = self._queue_pages(pipe, [(push, body, raw_entry, page)], replicated=not retry)
                    complete, served = complete and done, served + have
                    targeted += len(page)
                    if time.monotonic() - touched > self.send_lease_ms / 3000:  # a sign of life, for retry_stale
                        touched, now = time.monotonic(), now_ms()
                        if not self.store.touch_push(push_id, STATUS_SENDING, push["send_time"], now):
                            log.warning("push %s: taken over by another worker after %s targets", push_id, targeted)
                            return
                        push["send_time"] = now
                    if held_until and time.monotonic() > held_until:
                        held_until = None
                        self.answer_hold.release()
                    time.sleep(0)  # under gevent: let the worker's other requests run between batches
            if complete:
                if retry:
                    self.stats.count("sent", push_id, push["job_id"],
                                     served - self.stats.totals("push", push_id)["sent"])
                self.store.finish_push(push_id, STATUS_SENT, targeted)
            log.info("push %s queued for %s targets in %.0f ms%s", push_id, targeted,
                     1000 * (time.monotonic() - started), "" if complete else ", some not yet: to be retried")
        except Exception:
            log.exception("push %s failed after %s targets: to be retried", push_id, targeted)
        finally:
            if held_until:
                self.answer_hold.release()
            try:
                self.in_flight.end(app_id, mark)
            except Exception:  # Redis is down: the mark expires by itself
                log.exception("push %s: could not clear its in-flight mark", push_id)

    def _queue_pages(self, pipe, pages: list, replicated: bool = True) -> list:
        """pages: (push, body, raw entry, target rows) each. Queues each push for its long-polling clients in one
        round trip on `pipe` (then WAITs for the replicas, if set), counts what each queued, hands the other
        terminals to their routes. Returns per page whether its push is now wholly queued (and, if `replicated`,
        on the replicas WAIT asked for), and how many of its clients have it. A retry does not WAIT: once it has
        queued again what a failover lost, a shard left with too few replicas must neither hold the push for ever
        nor make every retry wait the whole timeout."""
        at = [self._queue(pipe, push, raw_entry, rows) for push, _, raw_entry, rows in pages]
        if replicated:
            pipe.wait_for_replicas(*self.wait)
        try:
            results = pipe.execute(raise_on_error=False)
        except Exception:
            log.warning("queueing %s pushes failed: to be retried", len(pages), exc_info=True)
            return [(False, 0)] * len(pages)
        done, sent, dropped = [], [], []
        for (push, body, _, rows), where in zip(pages, at):
            outcome = self._queued(results, where)
            queued = [r for r in outcome if isinstance(r, list)]  # not those skipped, nor those a retry found served
            sent.append(("sent", push["id"], push["job_id"], len(queued)))
            dropped += [header for r in queued for header in r]
            have = len(queued) + sum(1 for r in outcome if r is queues.ALREADY)
            try:
                done.append((self._settle(push, body, rows, outcome) and (pipe.replicated or not replicated), have))
            except Exception:
                log.exception("push %s: its routed terminals are not queued: to be retried", push["id"])
                done.append((False, have))
        # the clients queued now and what the queue cap dropped, in one round trip for all pages
        self.stats.count_each(sent + header_counts("expired", dropped))
        metrics.expired(len(dropped))
        return done

    @staticmethod
    def _body_and_entry(push: dict, message: dict):
        """The message as clients see it, and its queue entry."""
        body = {"id": push["id"], "msg_id": message["id"], "job_id": message["job_id"],
                "msg_type": message["msg_type"],
                "content": json.loads(message["content"]) if message["content_format"] == "json"
                else message["content"], "ts": now_ms()}
        return body, queues.entry(push["id"], message["job_id"], push["expires_at"],
                                  json.dumps(body, ensure_ascii=False, separators=(",", ":")))

    def _queue(self, pipe, push: dict, raw_entry: str, rows: list):
        """Adds to `pipe` the push's entry for the long-polling clients among the target rows; returns where its
        results will be in the pipeline (None: no such client)."""
        comet = [client_id for client_id, terminal_type, _ in rows if terminal_type in COMET_TERMINALS]
        if not comet:
            return None
        return self.queue_ops.enqueue(pipe, comet, raw_entry, push["online_only"])

    def _queued(self, results: list, at) -> list:
        return [] if at is None else self.queue_ops.enqueued(results, at)

    def _settle(self, push: dict, body: dict, rows: list, results: list) -> bool:
        """After queueing: hands the terminals that do not poll to their routes. False if a shard failed: its
        clients wait for the retry."""
        if any(isinstance(r, Exception) for r in results):
            return False
        routed = [row for row in rows if row[1] not in COMET_TERMINALS]
        if routed:
            self.routes.dispatch(push, body, routed)
        return True
