"""Every Prometheus metric hipush exports, named here and nowhere else; views and services call the small
functions below (no prometheus_client import in views or services).

Under gunicorn, every worker of a node writes its figures to files in one directory (prometheus-client's
multiprocess mode: PROMETHEUS_MULTIPROC_DIR, which gunicorn.conf.py makes and empties when the master
starts), and `/metrics`, answered by any worker, adds them up: one view of the whole node. A dead worker's
counts stay in its files, so no counter goes backwards when a worker is recycled; its share of the
parked-polls gauge is dropped (gunicorn.conf.py's child_exit). Without that variable (a process of its
own, e.g. in-process tests) the figures are this process's.

Counting is plain Python (a dict update, no lock, no file); flush() writes what this process counted since
its last flush to the metric objects (under gunicorn, this worker's memory-mapped files): once a second on
the services' scheduler, before this process answers /metrics or reports the node's figures, and when the
worker exits (gunicorn.conf.py's worker_exit). Counting a delivered message costs 2.2 µs of CPU this way,
15.6 µs when each event wrote its file (a lock, a pid check and an mmap write each), measured by
`python -m bench.metrics_counting`. A worker that is SIGKILLed loses at most the last second's counts; no
counter goes backwards.
"""
import glob
import os
import threading
import time
from bisect import bisect_left
from collections import deque

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, multiprocess)

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
CONTENT_TYPE = CONTENT_TYPE_LATEST
POLL_ENDPOINT = "/comet/poll"  # its duration is mostly its wait: left out of the node's p99 latency
UNMATCHED = "unmatched"  # the endpoint label of a request no route takes (404), so no raw URL becomes a label

PARKED_POLLS = Gauge("hipush_parked_polls", "Long polls this node is answering now", multiprocess_mode="livesum")
POLLS = Counter("hipush_polls", "Long polls received (/comet/poll)")
PUBLISHED = Counter("hipush_messages_published", "Pushes published, by kind: unicast (named clients), "
                    "broadcast (all, tags, org, place), timed (a push_time in the future)", ["kind"])
ACKED = Counter("hipush_messages_acked", "Messages that clients acknowledged")
CLICKED = Counter("hipush_messages_clicked", "Clicks on delivered messages (once per delivery and client)")
EXPIRED = Counter("hipush_messages_expired", "Messages that expired or the queue cap dropped before delivery")
ROUTE_DELIVERIES = Counter("hipush_route_deliveries", "Final outcomes of deliveries by e-mail and gateway "
                           "(outcome: sent, failed, expired)", ["type", "outcome"])
REQUEST_SECONDS = Histogram("hipush_http_request_duration_seconds", "HTTP requests by endpoint (the route's "
                            "rule); a long poll's duration includes its wait", ["endpoint"],
                            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
PUBLISH_TO_ACK_SECONDS = Histogram("hipush_publish_to_ack_seconds", "From a message's queueing to its "
                                   "client's acknowledgement", buckets=(.005, .01, .025, .05, .1, .25, .5, 1,
                                                                        2.5, 5, 10, 30, 60, 300, 3600))
REDIS_ERRORS = Counter("hipush_redis_errors", "Calls answered 503 because Redis did not answer")
DB_ERRORS = Counter("hipush_db_errors", "Calls answered 503 because the database did not answer")

# What this process counted so far (never reset), and what flush() last wrote of it.
_counted = {}  # (counter, label values) -> count
_observed = {}  # (histogram, label values) -> [observations per bucket, ..., sum of observations]
_written = {}  # either key -> its count or tally when flush() last wrote it
_parked = 0  # this process's parked polls and streams
_flushing = threading.Lock()  # outside gevent, the scheduler's thread and a request's may flush at once


def _count(counter, labels=(), n=1) -> None:
    key = (counter, labels)
    _counted[key] = _counted.get(key, 0) + n


def _observe(histogram, labels, seconds: float) -> None:
    tally = _observed.get((histogram, labels))
    if tally is None:
        tally = _observed[(histogram, labels)] = [0] * (len(histogram._upper_bounds) + 1)
    tally[bisect_left(histogram._upper_bounds, seconds)] += 1  # the first bucket whose bound is >= seconds
    tally[-1] += seconds


def poll_began() -> None:
    global _parked
    _count(POLLS)
    _parked += 1


def poll_ended() -> None:
    global _parked
    _parked -= 1


def published(kind: str) -> None:
    _count(PUBLISHED, (kind,))


def acked(queued_at_ms: list) -> None:
    """Acknowledged messages, by the unix ms each was queued at (0: not known, an entry of an older version)."""
    if queued_at_ms:
        _count(ACKED, n=len(queued_at_ms))
        now_ms = time.time() * 1000
        for at in queued_at_ms:
            if at:
                _observe(PUBLISH_TO_ACK_SECONDS, (), max(0, now_ms - at) / 1000)


def clicked() -> None:
    _count(CLICKED)


def expired(n: int) -> None:
    if n:
        _count(EXPIRED, n=n)


def route_delivery(terminal_type: str, outcome: str, n: int = 1) -> None:
    if n:
        _count(ROUTE_DELIVERIES, (terminal_type, outcome), n)


def request_done(endpoint: str, seconds: float) -> None:
    _observe(REQUEST_SECONDS, (endpoint,), seconds)


def redis_error() -> None:
    _count(REDIS_ERRORS)


def db_error() -> None:
    _count(DB_ERRORS)


def flush() -> None:
    """Writes what this process counted since the last flush to its metrics (under gunicorn, its files)."""
    with _flushing:
        for key, count in list(_counted.items()):
            written = _written.get(key, 0)
            if count != written:
                _labelled(*key).inc(count - written)
                _written[key] = count
        for key, tally in list(_observed.items()):
            tally, written = list(tally), _written.get(key) or [0] * len(tally)  # a copy: counting goes on
            if tally != written:
                histogram = _labelled(*key)
                # prometheus-client's Histogram.observe() writes one bucket and the sum: these, by many at once
                for value, now, before in zip(histogram._buckets + [histogram._sum], tally, written):
                    if now != before:
                        value.inc(now - before)
                _written[key] = tally
        PARKED_POLLS.set(_parked)


def _labelled(metric, labels):
    return metric.labels(*labels) if labels else metric


def exposition() -> bytes:
    """The node's metrics in Prometheus' text format."""
    flush()
    if not MULTIPROCESS_DIR:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, MULTIPROCESS_DIR)
    return generate_latest(registry)


# The node's figures for the node registry (services/nodes.py): the request histogram's totals, kept for a
# minute, give requests per second and p99 latency over that minute.
FIGURES_WINDOW_SECONDS = 60
_history = deque()  # (monotonic time, requests, {upper bound: requests at or below it, long polls left out})


def _samples():
    """(live workers, the node's merged samples of the two metrics the figures need): under gunicorn, from
    every worker's files; a live worker is one with a parked-polls file (the master removes a dead one's)."""
    if not MULTIPROCESS_DIR:
        return 1, [m for m in REGISTRY.collect() if m.name in (PARKED_POLLS._name, REQUEST_SECONDS._name)]
    live = glob.glob(os.path.join(MULTIPROCESS_DIR, "gauge_livesum_*.db"))
    files = live + glob.glob(os.path.join(MULTIPROCESS_DIR, "histogram_*.db"))
    return len(live), multiprocess.MultiProcessCollector.merge(files, accumulate=True)


def _quantile(q: float, buckets: dict) -> float:
    """Prometheus' histogram_quantile over cumulative `buckets` ({upper bound: count})."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if total <= 0:
        return 0.0
    rank, lower, below = q * total, 0.0, 0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            inside = buckets[bound] - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1)
        lower, below = bound, buckets[bound]
    return lower


def node_figures() -> dict:
    """{"workers", "parked_polls", "requests_per_second", "p99_ms"}: this node's live workers and parked polls,
    its requests per second and the p99 latency of its requests but long polls, over the last minute."""
    flush()
    parked, requests, buckets = 0, 0, {}
    workers, metrics = _samples()
    for metric in metrics:
        for sample in metric.samples:
            if metric.name == PARKED_POLLS._name:
                parked += sample.value
            elif metric.name != REQUEST_SECONDS._name:
                continue
            elif sample.name.endswith("_count"):
                requests += sample.value
            elif sample.name.endswith("_bucket") and sample.labels["endpoint"] != POLL_ENDPOINT:
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0) + sample.value
    now = time.monotonic()
    _history.append((now, requests, buckets))
    while now - _history[0][0] > FIGURES_WINDOW_SECONDS:
        _history.popleft()
    then, requests_then, buckets_then = _history[0]
    recent = {bound: count - buckets_then.get(bound, 0) for bound, count in buckets.items()}
    return {"workers": workers, "parked_polls": int(parked),
            "requests_per_second": round((requests - requests_then) / (now - then), 2) if now > then else 0.0,
            "p99_ms": round(1000 * _quantile(0.99, recent), 1)}
