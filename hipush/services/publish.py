"""Publishing: a message row, a push row per publish, then the push fanned out to its targets.

A push's id is its delivery id: the `id` a client sees and acknowledges. Two
publishes of one saved message are two pushes with distinct delivery ids.
Long-polling terminals get the push in their comet queue; e-mail and gateway
terminals are handed to the routes, which deliver off the request path.
"""
import json
import logging
import time

from ..errors import not_found
from ..storage import queues
from ..storage.db import now_ms

log = logging.getLogger("hipush.publish")

STATUS_SENT, STATUS_WAITING, STATUS_SENDING, STATUS_FAILED, STATUS_CANCELLED = 0, 1, 2, 3, 4
COMET_TERMINALS = frozenset({"web", "android"})
PIPELINE_BATCH = 500


class Publisher:
    def __init__(self, store, commands, queue_ops, stats, targets, routes, default_expires: int):
        self.store = store
        self.commands = commands
        self.queue_ops = queue_ops
        self.stats = stats
        self.targets = targets
        self.routes = routes
        self.default_expires = default_expires
        self._known_jobs = set()

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
        now = now_ms()
        push = {"app_id": app["id"], "message_id": message.get("id"), "job_id": message["job_id"],
                "target": json.dumps(target), "online_only": online_only, "status": status,
                "push_time": push_time or now, "expires_at": now + 1000 * (expires_in or self.default_expires)}
        push["id"] = self.store.create_push(push, topic_ids, None if "id" in message else message)
        return push

    def publish_now(self, app: dict, message: dict, target: dict, topic_ids, online_only: bool) -> None:
        """The legacy calls: the push is sent before the call answers."""
        self.send(self.create(app, message, target, topic_ids, online_only, STATUS_SENDING), message)

    def send(self, push: dict, message: dict) -> None:
        """Fans out a push whose status the caller has set to sending."""
        push_id = push["id"]
        if push["expires_at"] <= now_ms():
            self.store.finish_push(push_id, STATUS_FAILED, 0)  # expired before it could be sent
            return
        body = {"id": push_id, "msg_id": message["id"], "job_id": message["job_id"], "msg_type": message["msg_type"],
                "content": json.loads(message["content"]) if message["content_format"] == "json"
                else message["content"], "ts": now_ms()}
        raw_entry = queues.entry(push_id, message["job_id"], push["expires_at"],
                                 json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        targeted = 0
        try:
            for batch in self.targets.resolve(push["app_id"], json.loads(push["target"])):
                targeted += len(batch)
                comet = [client_id for client_id, terminal_type, _ in batch if terminal_type in COMET_TERMINALS]
                for start in range(0, len(comet), PIPELINE_BATCH):
                    self._enqueue(push, comet[start:start + PIPELINE_BATCH], raw_entry)
                    time.sleep(0)  # under gevent: let the worker's other requests run between batches
                routed = [row for row in batch if row[1] not in COMET_TERMINALS]
                if routed:
                    self.routes.dispatch(push, body, routed)
        except Exception:
            log.exception("push %s failed after %s targets", push_id, targeted)
            self.store.finish_push(push_id, STATUS_FAILED, targeted)
            raise
        self.store.finish_push(push_id, STATUS_SENT, targeted)

    def _enqueue(self, push: dict, client_ids: list, raw_entry: str) -> None:
        pipe = self.commands.pipeline(transaction=False)
        for client_id in client_ids:
            self.queue_ops.enqueue(pipe, client_id, raw_entry, push["online_only"])
        results = pipe.execute()
        self.stats.count("sent", push["id"], push["job_id"], sum(1 for r in results if r is not None))
        self.stats.count_headers("expired", [h for r in results if r for h in r])
