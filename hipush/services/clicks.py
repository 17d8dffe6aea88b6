"""Clicks: a client reports that its user opened a delivered message; each (delivery, client) counts once."""
from .. import metrics
from ..errors import not_found

DAY_SECONDS = 86400


class Clicks:
    def __init__(self, store, marks, stats, retention_days: float):
        """marks: storage.clicks.ClickMarks. A mark lives as long as its push may (HIPUSH_RETENTION_DAYS, at least
        a day): a click after the push is deleted is refused anyway, as an unknown id."""
        self.store = store
        self.marks = marks
        self.stats = stats
        self.mark_seconds = max(DAY_SECONDS, int(retention_days * DAY_SECONDS))

    def record(self, app_id: int, client_id: str, push_id: int) -> None:
        """Counts a click of `client_id` on the delivery `push_id` as `clicked` of the push and its job, once.
        A delivery of another app (or none) is 404 / 1026."""
        push = self.store.get_push(push_id)
        if push is None or push["app_id"] != app_id:
            raise not_found("no such delivery id")
        if self.marks.first(push_id, client_id, self.mark_seconds):
            self.stats.count("clicked", push_id, push["job_id"], 1)
            metrics.clicked()
