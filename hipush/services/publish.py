"""Publishing: a message row, a push row per publish, then the push appended to each target's queue.

A push's id is its delivery id: the `id` a client sees and acknowledges. Two
publishes of one saved message are two pushes with distinct delivery ids.
"""
import json
import time

from ..errors import not_found
from ..storage import queues
from ..storage.db import now_ms

STATUS_SENT, STATUS_WAITING, STATUS_SENDING, STATUS_FAILED, STATUS_CANCELLED = 0, 1, 2, 3, 4
PIPELINE_BATCH = 500


class Publisher:
    def __init__(self, store, commands, queue_ops, stats, default_expires: int):
        self.store = store
        self.commands = commands
        self.queue_ops = queue_ops
        self.stats = stats
        self.default_expires = default_expires

    def save_message(self, app: dict, job_id, msg_type: int, content: str) -> int:
        if job_id is not None and self.store.get_job(app["id"], job_id) is None:
            raise not_found("no such job")
        return self.store.create_message(app["id"], job_id, msg_type, content)

    def message(self, app: dict, message_id: int) -> dict:
        message = self.store.get_message(app["id"], message_id)
        if message is None:
            raise not_found("no such message")
        return message

    def publish(self, app: dict, message: dict, target: str, target_value, batches, online_only: bool,
                expires_in: int = None) -> int:
        """Sends one push of `message` to every client id in `batches` (an iterable of lists); returns its id."""
        expires_at = now_ms() + 1000 * (expires_in or self.default_expires)
        push_id = self.store.create_push(app["id"], message, target, target_value, online_only,
                                         STATUS_SENDING, expires_at)
        body = json.dumps({
            "id": push_id, "msg_id": message["id"], "job_id": message["job_id"],
            "msg_type": message["msg_type"], "content": message["content"], "ts": now_ms(),
        }, ensure_ascii=False, separators=(",", ":"))
        raw_entry = queues.entry(push_id, message["job_id"], expires_at, body)
        targeted = 0
        for batch in batches:
            targeted += len(batch)
            for start in range(0, len(batch), PIPELINE_BATCH):
                self._enqueue(push_id, message["job_id"], batch[start:start + PIPELINE_BATCH], raw_entry, online_only)
                time.sleep(0)  # under gevent: let the worker's other requests run between batches
        self.store.finish_push(push_id, STATUS_SENT, targeted)
        return push_id

    def _enqueue(self, push_id, job_id, client_ids, raw_entry, online_only) -> None:
        pipe = self.commands.pipeline(transaction=False)
        for client_id in client_ids:
            self.queue_ops.enqueue(pipe, client_id, raw_entry, online_only)
        results = pipe.execute()
        self.stats.count("sent", push_id, job_id, sum(1 for r in results if r is not None))
        self.stats.count_headers("expired", [h for r in results if r for h in r])
