"""What the console shows of an app's traffic: pages of jobs and pushes with their live counts, and a job's
arrivals per minute."""
import json
import time

from hipush_client.protocol import STATUS_CANCELLED, STATUS_FAILED, STATUS_SENDING, STATUS_SENT, STATUS_WAITING

CHART_MINUTES = 24 * 60  # a job's chart shows at most its last day of arrivals
CHART_MINUTES_MIN = 30  # and at least half an hour, so that one busy minute is one bar among others
STATUS_NAMES = {STATUS_SENT: "sent", STATUS_WAITING: "waiting", STATUS_SENDING: "sending",
                STATUS_FAILED: "failed", STATUS_CANCELLED: "cancelled"}


def ratio(part: int, whole: int):
    """part / whole as a percentage, None when there is no whole."""
    return round(100 * part / whole, 1) if whole else None


class Reports:
    def __init__(self, store, stats):
        self.store = store
        self.stats = stats

    def with_counts(self, kind: str, row: dict) -> dict:
        """The row with its live counts (SQL's plus what Redis holds), and its arrival and click ratios."""
        counts = self.stats.totals(kind, row["id"])
        return {**row, **counts, "arrival_ratio": ratio(counts["arrived"], counts["sent"]),
                "click_ratio": ratio(counts["clicked"], counts["arrived"]) if "clicked" in counts else None}

    def jobs(self, app: dict, start: int, limit: int):
        total, rows = self.store.list_jobs(app["id"], start, limit)
        return total, [self.with_counts("job", row) for row in rows]

    def pushes(self, app: dict, start: int, limit: int):
        total, rows = self.store.pushes_of_app(app["id"], start, limit)
        return total, [{**self.with_counts("push", row), "target": json.loads(row["target"]),
                        "status_name": STATUS_NAMES.get(row["status"], str(row["status"]))} for row in rows]

    def arrivals(self, job_id: int) -> list:
        """(unix minute, arrivals) of each minute of the job's chart, oldest first: at least CHART_MINUTES_MIN
        minutes up to its last arrival (up to now while arrivals are recent), at most its last CHART_MINUTES."""
        per_minute = self.stats.arrivals(job_id)
        if not per_minute:
            return []
        now = int(time.time() // 60)
        end = now if now - max(per_minute) < CHART_MINUTES_MIN else max(per_minute)
        start = max(min(min(per_minute), end - CHART_MINUTES_MIN + 1), end - CHART_MINUTES + 1)
        return [(minute, per_minute.get(minute, 0)) for minute in range(start, end + 1)]
