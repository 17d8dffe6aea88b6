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
"""
import json
import logging
import time

from hipush_client.protocol import STATUS_FAILED, STATUS_SENDING, STATUS_SENT

from ..errors import not_found
from ..storage import queues
from ..storage.db import now_ms
from .batching import GroupCommit

log = logging.getLogger("hipush.publish")

COMET_TERMINALS = frozenset({"web", "android"})
PIPELINE_BATCH = 1000  # clients queued per Redis call of a broadcast (a page of target rows)
BEHIND_A_BROADCAST = "behind a broadcast"  # a unicast's batch result: its app has a broadcast being queued
ANSWER_HOLD_SECONDS = 2.0  # a longer broadcast lets this worker's woken polls answer while it goes on


class Publisher:
    def __init__(self, store, pools, queue_ops, stats, targets, routes, answer_hold, in_flight,
                 default_expires: int):
        """pools: storage.redis.RedisPools, whose pipelines carry a publish's Redis work."""
        self.store = store
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
        return push

    def _new_push(self, app, message, target, online_only, status, push_time=None, expires_in=None) -> dict:
        now = now_ms()
        return {"app_id": app["id"], "message_id": message.get("id"), "job_id": message["job_id"],
                "target": json.dumps(target), "online_only": online_only, "status": status,
                "push_time": push_time or now, "expires_at": now + 1000 * (expires_in or self.default_expires)}

    def publish_now(self, app: dict, message: dict, target: dict, topic_ids, online_only: bool,
                    push_time: int = None, expires_in: int = None, after_answer=None) -> dict:
        """A push sent now, in publish order at every client. To a few named clients: queued before the
        call answers, together with the worker's concurrent ones. A broadcast: recorded, then queued by
        `after_answer(work)` once the call has answered (None: before returning)."""
        if target["kind"] == "clients":
            push = self._new_push(app, message, target, online_only, STATUS_SENT, push_time, expires_in)
            while self._to_clients.submit((push, message, target["ids"])) is BEHIND_A_BROADCAST:
                self.in_flight.wait_none(app["id"])
            if "id" not in push:  # not recorded: a client was deleted since Targets.check found it
                self.targets.forget(app["id"], target["ids"])
                raise not_found("no such terminal")
            return push
        mark = self.in_flight.begin(app["id"])
        try:
            push = self.create(app, message, target, topic_ids, online_only, STATUS_SENDING, push_time, expires_in)
        except Exception:
            self.in_flight.end(app["id"], mark)
            raise
        work = lambda: self._fan_out(push, message, mark)  # noqa: E731
        if after_answer is None:
            work()
        else:
            after_answer(work)
        return push

    def _send_to_clients(self, batch: list) -> list:
        """A batch of (push, message, client ids): one SQL transaction, one Redis round trip. A push of an app
        with a broadcast being queued is left out (BEHIND_A_BROADCAST): its caller waits, then tries again."""
        busy = self.in_flight.busy({push["app_id"] for push, _, _ in batch})
        sends = [send for send in batch if send[0]["app_id"] not in busy]
        if sends:
            self._record_and_queue(sends)
        return [BEHIND_A_BROADCAST if push["app_id"] in busy else None for push, _, _ in batch]

    def _record_and_queue(self, sends: list) -> None:
        with self.store.sending_to_clients(sends) as rows_of:
            pipe = self.pools.pipeline()
            queued = []
            for (push, message, _), rows in zip(sends, rows_of):
                if rows is None:
                    continue  # not recorded (Store.sending_to_clients)
                body, raw_entry = self._body_and_entry(push, message)
                queued.append((push, body, rows, self._queue(pipe, push, raw_entry, rows)))
            results = pipe.execute()
            for push, body, rows, at in queued:
                self._settle(push, body, rows, self._queued(results, at))

    def send(self, push: dict, message: dict) -> None:
        """Queues a push whose status the caller has set to sending (a timer's), in publish order."""
        self._fan_out(push, message, self.in_flight.begin(push["app_id"]))

    def _fan_out(self, push: dict, message: dict, mark: str) -> None:
        """Queues a push for its targets page by page, then clears the app's in-flight mark. A failure is
        logged and the push marked failed: its call has answered already."""
        push_id, app_id = push["id"], push["app_id"]
        targeted = 0
        started = time.monotonic()
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
                    at = self._queue(pipe, push, raw_entry, page)
                    self._settle(push, body, page, self._queued(pipe.execute(), at))
                    targeted += len(page)
                    if held_until and time.monotonic() > held_until:
                        held_until = None
                        self.answer_hold.release()
                    time.sleep(0)  # under gevent: let the worker's other requests run between batches
            self.store.finish_push(push_id, STATUS_SENT, targeted)
            log.info("push %s queued for %s targets in %.0f ms", push_id, targeted, 1000 * (time.monotonic() - started))
        except Exception:
            log.exception("push %s failed after %s targets", push_id, targeted)
            try:
                self.store.finish_push(push_id, STATUS_FAILED, targeted)
            except Exception:
                log.exception("push %s: could not record its failure", push_id)
        finally:
            if held_until:
                self.answer_hold.release()
            try:
                self.in_flight.end(app_id, mark)
            except Exception:  # Redis is down: the mark expires by itself
                log.exception("push %s: could not clear its in-flight mark", push_id)

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
        """Adds to `pipe` the push's entry for the long-polling clients among the target rows, counted as
        sent in the same round trip; returns where its result will be in the pipeline (None: no such client)."""
        comet = [client_id for client_id, terminal_type, _ in rows if terminal_type in COMET_TERMINALS]
        if not comet:
            return None
        at = self.queue_ops.enqueue(pipe, comet, raw_entry, push["online_only"])
        self.stats.count("sent", push["id"], push["job_id"], len(comet), pipe)
        return at

    def _queued(self, results: list, at) -> list:
        return [] if at is None else self.queue_ops.enqueued(results, at)

    def _settle(self, push: dict, body: dict, rows: list, results: list) -> None:
        """After queueing: takes back the count of clients skipped (online only, and offline), counts those
        the queue cap dropped, and hands the other terminals to their routes."""
        self.stats.count("sent", push["id"], push["job_id"], -sum(1 for r in results if r is None))
        self.stats.count_headers("expired", [h for r in results if r for h in r])
        routed = [row for row in rows if row[1] not in COMET_TERMINALS]
        if routed:
            self.routes.dispatch(push, body, routed)
