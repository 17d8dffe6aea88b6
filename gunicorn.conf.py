"""gunicorn settings for hipush: `gunicorn -c gunicorn.conf.py wsgi:app` (`-w N` overrides the worker count)."""
import gc
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

from hipush import config as hipush_config

bind = os.environ.get("HIPUSH_BIND") or "127.0.0.1:8080"
workers = int(os.environ.get("HIPUSH_WORKERS") or 2)
worker_class = "gevent"
worker_connections = 10000  # parked polls per worker; see max_parked_polls
# gunicorn caps a non-zero request line at 8190 bytes, too small for a 4096-byte content sent by GET;
# 0 lifts it and hipush enforces its own query-string cap (413 / 1030)
limit_request_line = 0
limit_request_field_size = 8190
timeout = 30
graceful_timeout = 15
# gunicorn's gevent worker waits for each request line and its headers under gevent.Timeout(keepalive), from
# the accept (or the previous answer on a kept-alive connection): a client that is idle or trickles its
# headers longer is disconnected. Never 0 (headers would be read without a bound) nor longer than
# HIPUSH_READ_TIMEOUT, hipush's bound on reading a body (hipush/views/params.py); short, because a
# stopping worker waits for idle keep-alive connections.
keepalive = min(2, hipush_config.load().read_timeout)
control_socket_disable = True  # one fixed path per machine: several hipush nodes would share it
accesslog = os.environ.get("HIPUSH_ACCESS_LOG") or None
errorlog = "-"
GC_THRESHOLDS = (20_000, 20, 20)  # Python's defaults are (700, 10, 10)


def on_starting(server):
    """Before any worker exists: start the node's embedded redis-server, create the schema once and check that
    the Redis belongs to this database's installation (hipush/storage/installation.py); with
    HIPUSH_CONSOLE_PASSWORD, give the console's operator admin that password.

    Schema and check run in a child process so that this master never imports database drivers,
    redis-py (and ssl) before the gevent workers patch the standard library. A refusal stops the master:
    gunicorn prints the RuntimeError's message and exits 1, before any worker starts.
    """
    from hipush.storage.embedded import EmbeddedRedis

    config = hipush_config.load()
    _prepare_metrics_dir(config)
    if config.embedded_redis:
        server.hipush_redis = EmbeddedRedis(config.data_dir)
        server.hipush_redis.ensure_running(detach=False)
    _in_a_child(server, "-m", "hipush.storage.installation")
    if config.console_password:  # the console's operator admin gets it (hipush/services/operators.py)
        _in_a_child(server, "-c", "from hipush.services.operators import ensure_admin; ensure_admin()")
    redis_at = config.redis_location.split("@")[-1] if not config.embedded_redis \
        else f"embedded at {config.embedded_redis_socket}"
    server.log.info("hipush: redis %s, public address %s, data dir %s", redis_at, config.public_addr, config.data_dir)


def _prepare_metrics_dir(config):
    """The node's workers share their Prometheus figures through files in one directory (hipush/metrics.py),
    inherited as PROMETHEUS_MULTIPROC_DIR: the one given, else one per public address under the data dir
    (nodes may share a data dir). Emptied at each start: a node's counters begin at 0 with its master."""
    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or
                config.data_dir / "metrics" / config.public_addr.replace(":", "_"))
    path.mkdir(parents=True, exist_ok=True)
    for old_file in path.glob("*.db"):
        old_file.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def worker_exit(server, worker):
    """A worker that stops writes the metrics it counted since its last flush (hipush/metrics.py)."""
    from hipush import metrics

    metrics.flush()


def child_exit(server, worker):
    """A worker is gone (stopped, recycled or killed): its parked polls leave the node's gauge; its counts stay."""
    # not through hipush.metrics: importing it would create this master's own metric files (a "worker" more)
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _in_a_child(server, *args) -> None:
    """Runs `python *args` for the master; its failure stops the master before any worker starts."""
    child = subprocess.run([sys.executable, *args], stderr=subprocess.PIPE, text=True)
    if child.returncode != 0:
        on_exit(server)
        raise RuntimeError(child.stderr.strip())
    sys.stderr.write(child.stderr)  # its log: e.g. an adopted Redis, messages lost with a Redis that was emptied


def on_exit(server):
    """After the last worker is gone: the embedded redis-server stops last (its own session keeps a terminal's
    Ctrl-C from reaching it)."""
    embedded = getattr(server, "hipush_redis", None)
    if embedded and embedded.process is not None:  # only the redis-server this master started
        embedded.stop()


def post_fork(server, worker):
    """Each parked poll holds a client socket and a Redis connection: allow as many files as the system does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def post_worker_init(worker):
    """On SIGTERM, and on Ctrl-C (the terminal's SIGINT, the master's SIGQUIT), parked polls answer (empty) at
    once and new ones are refused (503 / 1031), so the worker drains well within graceful_timeout. gunicorn's
    own SIGINT / SIGQUIT handler would exit 0.1 s later, cutting off polls in progress (and, signalled twice,
    logging a SystemExit traceback)."""
    import gevent

    from hipush import one_send

    one_send.install()  # an answer's headers and body in one send
    services = worker.wsgi.extensions["hipush"]

    def handle_exit(sig, frame):
        worker.alive = False  # every answer from now on closes its connection
        gevent.spawn(services.shutdown)  # out of the signal handler: it talks to Redis

    for stop_signal in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(stop_signal, handle_exit)
    # The app's modules and caches live as long as the worker: kept out of every collection. A request makes
    # thousands of short-lived objects; a larger first generation lets them die before a collection
    # promotes them, so the older generations (a parked poll's objects) are walked far less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
