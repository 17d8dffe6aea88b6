"""Timed pushes: the push row is the truth; whoever moves it from waiting to sending sends it.

Every worker of every node runs the same check each second (an APScheduler
interval job), so a push fires once however many run, fires late after a
restart if it came due meanwhile, and never once cancelled.
"""
from hipush_client.protocol import STATUS_CANCELLED, STATUS_SENDING, STATUS_WAITING

from ..errors import bad_param, not_found
from ..clock import now_ms


class Timers:
    def __init__(self, store, publisher):
        self.store = store
        self.publisher = publisher

    def fire(self, push_id: int) -> None:
        if self.store.move_push(push_id, STATUS_WAITING, STATUS_SENDING, send_time=now_ms()):
            push = self.store.get_push(push_id)
            self.publisher.send(push, self.store.get_message(push["app_id"], push["message_id"]))

    def fire_due(self) -> None:
        """Fires the pushes that came due, and takes over those whose sending stalled (Publisher.retry_stale)."""
        for push_id in self.store.due_pushes(STATUS_WAITING, now_ms(), 100):
            self.fire(push_id)
        self.publisher.retry_stale()

    def cancel(self, app: dict, message_id: int) -> None:
        pushes = self.store.pushes_of_message(app["id"], message_id)
        if not pushes:
            raise not_found("no such message")
        cancelled = [p for p in pushes if self.store.move_push(p["id"], STATUS_WAITING, STATUS_CANCELLED, app["id"])]
        if not cancelled:
            raise bad_param("this message has no pending timer: it was already sent or cancelled")
