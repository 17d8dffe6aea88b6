"""The long poll (SPEC §5): acknowledge, hand back unacknowledged messages, else park on the queue.

A poll holds one connection of the blocking pool for its whole life (on a
cluster, to the master of its client's slot) and registers itself as the
client's poller (HeldConnection.poller_id: the connection's client id, a serial
and, on a cluster, its master). A newer poll of the same client CLIENT UNBLOCKs
the older one, which then answers empty.
A poll that parks costs two round trips: one script that checks the token's
epoch, acks and takes; then, in one write, the wait and the take that follows it.

A stream (SSE, `stream`) is a poll that does not end when it hands messages out: the same first script
(which hands out everything still in flight), then wait-and-take steps for its whole life, each writing
what it took as events. What it sent stays in flight until POST /comet/ack (`ack`); at most STREAM_WINDOW
messages are in flight, then the stream waits for an acknowledgement. An idle stream writes a comment
every `heartbeat` seconds; a revoked token's stream is woken (Clients.revoke) and ends.
"""
import itertools
import threading
import time

from .. import metrics
from ..errors import auth_failed, unavailable
from ..storage import queues
from ..clock import now_ms
from ..storage.redis import CommandBatch
from .stats import header_counts

BATCH = 100  # most messages handed out by one poll
STREAM_WINDOW = 1000  # most messages a stream has sent and not had acknowledged
STREAM_RETRY_MS = 1000  # an EventSource reconnects this long after its stream ended
# seconds a client of a stopping worker waits before it polls again (elsewhere, or the restarted node): an answer
# at once would bring it straight back, in a loop, until the worker's listener closes
STOPPING_RETRY_AFTER = 1


class AnswerHold:
    """Lets a broadcast finish queueing before the polls it wakes in this worker answer.

    A broadcast wakes thousands of parked polls at once; under gevent each woken poll would answer (and
    take its client's next poll) before the broadcast got its turn again, so its later pages, and the other
    workers' clients on them, would wait for this worker's answers. While held, a woken poll parks here for
    the price of a greenlet switch. Measured at 10,000 subscribers on 2 workers: the last one has it after
    2.3-3.3 s with the hold, 4.0 s without.
    """

    def __init__(self):
        self._holders = 0
        self._open = threading.Event()  # gevent's, once the worker is patched
        self._open.set()

    def hold(self) -> None:
        self._holders += 1
        self._open.clear()

    def release(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            self._open.set()

    def wait(self) -> None:
        if self._holders:
            self._open.wait()


class Comet:
    def __init__(self, queue_ops, stats, clients, answer_hold: AnswerHold, presence_grace: int):
        self.answer_hold = answer_hold
        self.queue_ops = queue_ops
        self.stats = stats
        self.clients = clients
        self.grace_ms = presence_grace * 1000
        self.parked = set()  # poller ids of the polls this worker runs
        self.serial = itertools.count()  # with the connection's client id, names each poll uniquely
        self.stopping = False

    def poll(self, client_id: str, epoch: int, ack, timeout: int) -> dict:
        """{"app_id", "messages": [json text, ...], "missed": n} once messages wait or `timeout` seconds pass.
        `epoch`: the token's (Clients.token_epoch); a revoked one is refused with 401 / 1028.
        A stopping worker refuses it with 503 / 1031 and Retry-After."""
        if self.stopping:
            raise unavailable("this node is stopping, poll again shortly", retry_after=STOPPING_RETRY_AFTER)
        # Yield once first: answers already due in this worker (a broadcast's) go out before the polls
        # their clients send next.
        time.sleep(0)
        conn = self.queue_ops.hold(client_id)
        me = conn.poller_id(next(self.serial))
        self.parked.add(me)
        metrics.poll_began()
        try:
            return self._poll(conn, me, client_id, epoch, ack, timeout)
        finally:
            self.parked.discard(me)
            metrics.poll_ended()
            conn.release()

    def ack(self, client_id: str, epoch: int, ack: str) -> int:
        """Acknowledges the client's messages up to and including `ack` (a stream's client); its app id.
        A revoked token is refused with 401 / 1028."""
        step = self.queue_ops.ack(client_id, ack, epoch, STREAM_WINDOW)
        if step.auth == "missing" and self.clients.cache_meta(client_id):
            step = self.queue_ops.ack(client_id, ack, epoch, STREAM_WINDOW)
        if step.auth != "ok":
            raise auth_failed("token revoked")
        self.stats.count_headers("arrived", step.acked)
        metrics.acked(step.acked_at)
        return step.app_id

    def open_stream(self, client_id: str, epoch: int, heartbeat: float, max_age: float) -> tuple:
        """(app id, the stream's text chunks) once the token is checked and the stream is the client's; refused
        as a poll is. Closing the iterator ends the stream (what it sent stays in flight)."""
        chunks = self._stream(client_id, epoch, heartbeat, max_age)
        return next(chunks), chunks

    def _stream(self, client_id, epoch, heartbeat, max_age):
        """Yields the app id first, then text/event-stream chunks until `max_age` passes, a newer poll or stream
        of the client replaces it, its token is revoked or the worker stops."""
        if self.stopping:
            raise unavailable("this node is stopping, connect again shortly", retry_after=STOPPING_RETRY_AFTER)
        time.sleep(0)
        deadline = time.monotonic() + max_age
        online_ms = int(2 * heartbeat * 1000) + self.grace_ms  # refreshed by every step, at least once a heartbeat
        conn = self.queue_ops.hold(client_id)
        me = conn.poller_id(next(self.serial))
        self.parked.add(me)
        counts = CommandBatch()
        try:
            step = self._begin(conn, me, client_id, epoch, None, online_ms, STREAM_WINDOW, keep=True)
            self._unblock(step.poller)
            self._count(step, counts)
            yield step.app_id
            yield f"retry: {STREAM_RETRY_MS}\n\n" + _events(step)
            cursor = _last_id(step.entries)
            in_flight = len(step.entries)
            while not self.stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0.01:
                    break
                step = self.queue_ops.wait_and_stream(
                    conn, client_id, me, min(heartbeat, remaining), now_ms(), STREAM_WINDOW, online_ms, cursor, epoch,
                    before=counts.take(), full=in_flight >= STREAM_WINDOW)
                if step.ended:
                    break
                self._count(step, counts)
                in_flight = step.in_flight
                cursor = _last_id(step.entries) or cursor
                if step.entries:
                    self.answer_hold.wait()
                yield _events(step) or ": heartbeat\n\n"
        finally:
            self.parked.discard(me)
            try:
                self.queue_ops.end_poll(conn, client_id, me, self.grace_ms)
                self._send(conn, counts)
            finally:
                conn.release()

    def release_all(self) -> None:
        """Worker shutdown: every parked poll answers (empty) now instead of at its timeout, every stream ends;
        later polls and streams are refused."""
        self.stopping = True
        for poller in list(self.parked):
            self.queue_ops.unblock(poller)

    def _begin(self, conn, me, client_id, epoch, ack, online_ms, limit=BATCH, keep=False):
        args = (conn, client_id, me, ack, now_ms(), limit, online_ms, self.grace_ms, epoch, keep)
        step = self.queue_ops.begin_poll(*args)
        if step.auth == "missing" and self.clients.cache_meta(client_id):  # not cached yet: from SQL
            step = self.queue_ops.begin_poll(*args)
        if step.auth != "ok":
            raise auth_failed("token revoked")
        return step

    def _poll(self, conn, me, client_id, epoch, ack, timeout):
        deadline = time.monotonic() + timeout
        step = self._begin(conn, me, client_id, epoch, ack, timeout * 1000 + self.grace_ms)
        app_id = step.app_id
        self._unblock(step.poller)
        counts = CommandBatch()  # sent with the wait, or at the end: no round trip of their own
        self._count(step, counts)
        missed = step.missed
        ended = bool(step.entries)  # a step that took messages has ended the poll itself
        while not ended and not self.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0.01:
                break
            step = self.queue_ops.wait_and_take(conn, client_id, me, remaining, now_ms(), BATCH, self.grace_ms,
                                                before=counts.take())
            self._count(step, counts)
            missed += step.missed
            if step.poller != me:  # a newer poll replaced this one (and finds in the queue what woke this one)
                self._send(conn, counts)
                return {"app_id": app_id, "messages": [], "missed": missed}
            ended = step.ended
        if step.entries:
            self.answer_hold.wait()
        if not ended:
            self.queue_ops.end_poll(conn, client_id, me, self.grace_ms)
        self._send(conn, counts)
        return {"app_id": app_id, "messages": [queues.message_json(e) for e in step.entries], "missed": missed}

    @staticmethod
    def _send(conn, counts) -> None:
        conn.send(counts.take())

    def _unblock(self, poller: str) -> None:
        if poller:
            self.queue_ops.unblock(poller)

    def _count(self, step, counts) -> None:
        self.stats.count_each(header_counts("arrived", step.acked) + header_counts("expired", step.expired), counts)
        metrics.acked(step.acked_at)
        metrics.expired(len(step.expired))


def _events(step) -> str:
    """A step's messages as server-sent events (id: the delivery id, data: the message as a poll shows it),
    then its missed count as a `missed` event."""
    events = "".join(f"id: {queues.delivery_id(e)}\ndata: {queues.message_json(e)}\n\n" for e in step.entries)
    if step.missed:
        events += f'event: missed\ndata: {{"missed":{step.missed}}}\n\n'
    return events


def _last_id(entries) -> str:
    return queues.delivery_id(entries[-1]) if entries else ""
