"""gunicorn.conf.py with hipush's metrics counting nothing, for the bench's metrics-cost A/B only
(bench/cpu_per_message.py --config bench/metrics_off.py): every function views and services call to count
(hipush/metrics.py) becomes a no-op in each worker; /metrics still answers, with nothing counted."""
from pathlib import Path

exec(compile(Path(__file__).resolve().parent.parent.joinpath("gunicorn.conf.py").read_text(), "gunicorn.conf.py",
             "exec"))

COUNTING = ("poll_began", "poll_ended", "published", "acked", "clicked", "expired", "route_delivery",
            "request_done", "redis_error", "db_error")
_settings_post_worker_init = globals()["post_worker_init"]  # gunicorn.conf.py's


def post_worker_init(worker):
    from hipush import metrics

    for name in COUNTING:
        setattr(metrics, name, lambda *args, **kwargs: None)
    _settings_post_worker_init(worker)
