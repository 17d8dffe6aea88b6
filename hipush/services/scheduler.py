"""Each worker's periodic jobs, run by APScheduler (its gevent scheduler under gunicorn's gevent workers).

APScheduler only wakes the worker up; what a job does is safe to run in every
worker at once (claims in SQL or Redis decide who acts).
"""
import logging

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger("hipush")
logging.getLogger("apscheduler").setLevel(logging.WARNING)  # it logs every run at INFO


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


def safely(task):
    def run():
        try:
            task()
        except Exception as exc:  # Redis or the database is down: say so, retry next round
            log.warning("periodic %s failed: %s", getattr(task, "__qualname__", task), exc)
    return run


def start(jobs) -> object:
    """jobs: (callable, every_seconds) pairs; each runs at once and then on its interval, never overlapping itself."""
    if _gevent_patched():
        from apscheduler.schedulers.gevent import GeventScheduler as Scheduler
    else:
        Scheduler = BackgroundScheduler
    scheduler = Scheduler(daemon=True)
    for task, seconds in jobs:
        scheduler.add_job(safely(task), "interval", seconds=seconds, max_instances=1, coalesce=True,
                          misfire_grace_time=max(1, int(seconds * 5)), name=getattr(task, "__qualname__", str(task)))
    scheduler.start()
    return scheduler
