"""The one clock of records, queues and answers: unix milliseconds."""
import time


def now_ms() -> int:
    return int(time.time() * 1000)
