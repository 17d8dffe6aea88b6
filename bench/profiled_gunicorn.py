"""gunicorn.conf.py plus a cProfile of each worker, for bench/cpu_per_message.py --profile only: each worker
profiles from its fork to its exit and writes $HIPUSH_BENCH_PROFILE (worker 1) or $HIPUSH_BENCH_PROFILE.<pid>."""
import cProfile
import os
from pathlib import Path

exec(compile(Path(__file__).resolve().parent.parent.joinpath("gunicorn.conf.py").read_text(), "gunicorn.conf.py",
             "exec"))

_profiles = {}
_settings_post_fork = globals()["post_fork"]  # gunicorn.conf.py's
_settings_worker_exit = globals()["worker_exit"]


def post_fork(server, worker):
    _settings_post_fork(server, worker)
    _profiles[worker.pid] = profile = cProfile.Profile()
    profile.enable()


def worker_exit(server, worker):
    _settings_worker_exit(server, worker)
    profile = _profiles.pop(os.getpid(), None)
    if profile is not None:
        profile.disable()
        path = os.environ["HIPUSH_BENCH_PROFILE"]
        profile.dump_stats(path if worker.age == 1 else f"{path}.{os.getpid()}")
