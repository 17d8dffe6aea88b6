"""What hipush's metrics counting costs per delivered long-poll message, timed in-process: the counting calls
one delivery makes (its publish, its poll's start and end, the ack, two request durations) and a write to the
metric files every FLUSH_EVERY deliveries (a worker writes once a second), under gevent's patches and with
prometheus-client's multiprocess files, as in a gunicorn worker. Precise where the A/B of
whole servers (scenarios.metrics_cost) is not: prints the CPU µs per delivery as JSON.

    .venv/bin/python -m bench.metrics_counting
"""
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

DELIVERIES = 200_000
FLUSH_EVERY = 1000  # about a second's deliveries at the long-poll ceiling


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hp-metrics-") as files:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = files
        from hipush import metrics

        started = time.process_time()
        for n in range(1, DELIVERIES + 1):
            metrics.poll_began()
            metrics.published("unicast")
            metrics.request_done("/publish/private", 0.002)
            metrics.acked([time.time() * 1000 - 5])
            metrics.poll_ended()
            metrics.request_done("/comet/poll", 0.010)
            if n % FLUSH_EVERY == 0:
                metrics.flush()
        seconds = time.process_time() - started
    print(json.dumps({"deliveries": DELIVERIES, "flush_every": FLUSH_EVERY, "us_per_delivery": round(1e6 * seconds / DELIVERIES, 2)}))


if __name__ == "__main__":
    main()
