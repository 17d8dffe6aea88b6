"""Group commit: concurrent calls of one worker share one run of a batch function.

Publishing a unicast costs a few SQL and Redis round trips, mostly waiting on
the other side. Under load, calls that arrive while a batch runs queue up and
the next batch takes them all: one SQL transaction and one Redis pipeline for
many publishes. Alone, a call runs at once as a batch of one. The caller that
finds no batch running leads (runs the batch); the others wait for their
outcome. Works with threads and with gevent's patched threading alike.
"""
import threading


class _Waiter:
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item):
        self.item = item
        self.done = False
        self.result = None
        self.error = None


class GroupCommit:
    def __init__(self, run_batch, max_batch: int = 200):
        """run_batch(items) -> one result per item, in order; if it raises, every caller of the batch gets it."""
        self.run_batch = run_batch
        self.max_batch = max_batch
        self._queue = []
        self._running = False
        self._changed = threading.Condition()

    def submit(self, item):
        waiter = _Waiter(item)
        with self._changed:
            self._queue.append(waiter)
        while True:
            with self._changed:
                while self._running and not waiter.done:
                    self._changed.wait()
                if waiter.done:
                    break
                self._running = True
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            self._lead(batch)
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    def _lead(self, batch):
        try:
            for w, result in zip(batch, self.run_batch([w.item for w in batch])):
                w.result = result
        except BaseException as exc:
            # every caller of the batch re-raises it; an interrupted leader (gevent.Timeout, GreenletExit)
            # is not an error of the others' calls
            for w in batch:
                w.error = exc if isinstance(exc, Exception) else RuntimeError("the batch was interrupted")
            if not isinstance(exc, Exception):
                raise
        finally:
            with self._changed:
                for w in batch:
                    w.done = True
                self._running = False
                self._changed.notify_all()
