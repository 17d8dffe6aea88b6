"""The two systems under test, started and stopped by the bench (only the processes it started, by pid).

- hipush: `gunicorn -c gunicorn.conf.py -w N wsgi:app` from the repository root (gevent workers), with its
  Redis (default the machine's, db 10, flushed at every start) and its database (default MariaDB database
  `hipush_bench`; or SQLite in the run's temporary directory).
- hipush-2w-cluster: the same hipush and database on a Redis Cluster of its own (bench/cluster.py: 3 masters,
  3 replicas from Debian's redis-server, temporary directory), flushed at every start.
- Nchan: nginx with a generated config in the run's temporary directory: `worker_processes 2`, long-poll
  and EventSource subscribers at `/sub/<channel>`, publishers at `/pub/<channel>`, `/nchan_status` for its
  own counts.
- the framework floor: bench/floor_app.py (hello-world Flask) under gunicorn with hipush's worker settings.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import procstat

ROOT = Path(__file__).resolve().parent.parent
HIPUSH_ROOT = ROOT  # where gunicorn runs hipush from; `python -m bench --hipush-root DIR` measures another tree
GUNICORN = Path(sys.executable).parent / "gunicorn"
NGINX = "/usr/sbin/nginx"
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
HIPUSH_MAX_PARKED_PER_WORKER = 9000  # HIPUSH_MAX_PARKED_POLLS' default (README, Configuration)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 3.0):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.status, answer.read()


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def stop_process(process: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 30.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class HipushServer:
    kind = "hipush"

    def __init__(self, label: str, workers: int, backend, run_dir: Path):
        self.label, self.workers, self.backend = label, workers, backend
        self.host, self.port = "127.0.0.1", free_port()
        self.log_path = run_dir / f"{label}-{self.port}.log"
        self.process = None
        self.max_parked = workers * HIPUSH_MAX_PARKED_PER_WORKER

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HIPUSH_")}
        env.update(self.backend.hipush_env())
        env.update(HIPUSH_BIND=f"{self.host}:{self.port}", HIPUSH_PUBLIC_ADDR=f"{self.host}:{self.port}")
        return env

    def start(self):
        self.backend.reset_redis()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([str(GUNICORN), "-c", "gunicorn.conf.py", "-w", str(self.workers), "wsgi:app"],
                                        cwd=HIPUSH_ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(self._ready, 60, f"{self.label} on port {self.port} (log {self.log_path})")
        wait_until(lambda: len(self.worker_pids()) == self.workers, 30, f"{self.label}'s workers")
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.label} exited: {self.log_path.read_text()[-3000:]}")
        try:
            return http_get(f"http://{self.host}:{self.port}/service/random")[0] == 200
        except OSError:
            return False

    def worker_pids(self) -> list:
        if self.process is None or self.process.poll() is not None:
            return []
        return [p for p in procstat.children(self.process.pid)
                if "gunicorn" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")]

    def pids(self) -> list:
        """Every process of the server: the master and its workers."""
        return [self.process.pid, *self.worker_pids()] if self.process else []

    def parked(self, precise: bool = True) -> int:
        """Polls parked right now, as Redis sees them: connections of our database blocked in a pop
        (precise: from CLIENT LIST; else INFO's blocked_clients, cheap but counting every database)."""
        return self.backend.blocked_clients() if precise else self.backend.blocked_anywhere()

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM, 40)


class FloorServer:
    """Hello-world Flask under gunicorn's gevent workers, set as gunicorn.conf.py sets hipush's."""
    kind = "floor"

    def __init__(self, workers: int, run_dir: Path):
        self.label, self.workers = f"floor-{workers}w", workers
        self.host, self.port = "127.0.0.1", free_port()
        self.log_path = run_dir / f"floor-{self.port}.log"
        self.process = None

    def start(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(GUNICORN), "-c", "/dev/null",  # not hipush's gunicorn.conf.py (which the cwd would load)
             "-k", "gevent", "-w", str(self.workers), "--worker-connections", "10000",
             "--keep-alive", "2", "--timeout", "30", "--error-logfile", "-", "-b", f"{self.host}:{self.port}",
             "bench.floor_app:app"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: self._answers(), 60, f"the floor app on port {self.port} (log {self.log_path})")
        return self

    def _answers(self) -> bool:
        try:
            return http_get(f"http://{self.host}:{self.port}/")[0] == 200
        except OSError:
            return False

    def pids(self) -> list:
        return [self.process.pid, *procstat.children(self.process.pid)] if self.process else []

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM, 30)


class NchanServer:
    kind = "nchan"
    CONFIG = """\
load_module {module};
user root;
worker_processes {workers};
worker_rlimit_nofile {nofile};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
  worker_connections {connections};
  multi_accept on;
}}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  nchan_shared_memory_size 256m;
  server {{
    listen {host}:{port} backlog=4096;
    location ~ ^/pub/([A-Za-z0-9_.:@-]+)$ {{
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length {buffer_length};
      nchan_message_timeout 10m;
    }}
    location ~ ^/sub/([A-Za-z0-9_.:@-]+)$ {{
      nchan_subscriber longpoll eventsource;
      nchan_channel_id $1;
      nchan_subscriber_timeout {poll_timeout}s;
    }}
    location = /nchan_status {{
      nchan_stub_status;
    }}
  }}
}}
"""

    def __init__(self, label: str, workers: int, run_dir: Path, poll_timeout: int = 55, buffer_length: int = 100):
        self.label, self.workers = label, workers
        self.host, self.port = "127.0.0.1", free_port()
        self.dir = run_dir / f"{label}-{self.port}"
        self.poll_timeout, self.buffer_length = poll_timeout, buffer_length
        self.process = None
        self.max_parked = 10 ** 9  # bounded only by worker_connections and the open-file limit

    def start(self):
        (self.dir / "body").mkdir(parents=True, exist_ok=True)
        nofile = procstat_nofile_hard()
        config = self.CONFIG.format(module=NCHAN_MODULE, workers=self.workers, nofile=nofile,
                                    connections=nofile - 100, dir=self.dir, host=self.host, port=self.port,
                                    buffer_length=self.buffer_length, poll_timeout=self.poll_timeout)
        (self.dir / "nginx.conf").write_text(config)
        log = open(self.dir / "stderr.log", "ab")
        self.process = subprocess.Popen([NGINX, "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)],
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(self._ready, 30, f"nginx on port {self.port} ({self.dir}/error.log)")
        wait_until(lambda: len(self.worker_pids()) == self.workers, 30, "nginx workers")
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(self.dir / 'error.log').read_text()[-3000:]}")
        try:
            return http_get(f"http://{self.host}:{self.port}/nchan_status")[0] == 200
        except OSError:
            return False

    def worker_pids(self) -> list:
        return procstat.children(self.process.pid) if self.process and self.process.poll() is None else []

    def pids(self) -> list:
        return [self.process.pid, *self.worker_pids()] if self.process else []

    def status(self) -> dict:
        _, body = http_get(f"http://{self.host}:{self.port}/nchan_status")
        return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in body.decode().splitlines())}

    def parked(self, precise: bool = True) -> int:
        return int(self.status().get("subscribers", 0))

    def stop(self) -> None:
        stop_process(self.process, signal.SIGQUIT, 20)  # graceful: workers finish, then exit


def procstat_nofile_hard() -> int:
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


# ---------------------------------------------------------------- hipush's backend: Redis and the database

def prepare_database(database_url: str) -> None:
    """A MySQL/MariaDB database is made if missing; hipush's own tables are dropped (gunicorn's master makes
    the schema again)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from hipush.storage import db

    url = make_url(database_url)
    if url.get_backend_name() == "mysql":
        server = sa.create_engine(url.set(database=""))
        with server.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{url.database}` CHARACTER SET utf8mb4"))
        server.dispose()
    engine = db.make_engine(database_url)
    db.metadata.drop_all(engine)
    engine.dispose()


class HipushBackend:
    """hipush's Redis and database for one bench run; apps, clients and topics persist across server restarts."""

    # the bench's clients and publisher all come from 127.0.0.1 and one app: hipush's per-app and per-IP rate
    # limits (0 = unlimited) would measure the limits, not the server
    RATE_LIMITS_OFF = {"HIPUSH_PUBLISH_RATE": "0", "HIPUSH_SUBSCRIBE_RATE": "0", "HIPUSH_CLIENT_IP_RATE": "0"}

    def __init__(self, redis_url: str, database: str, run_dir: Path, flush_redis: bool = True):
        import redis

        self.run_dir = run_dir
        self.data_dir = run_dir / "hipush-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url  # "" = hipush's embedded redis-server in the data dir
        self.flush_redis = flush_redis
        if database == "sqlite":
            self.database_url = f"sqlite:///{self.data_dir / 'hipush.db'}"
        elif database == "mariadb":
            self.database_url = "mysql+pymysql://root@127.0.0.1:3306/hipush_bench"
        else:
            self.database_url = database
        self.secret_key = "bench-secret-" + run_dir.name
        self._prepare_database()
        if not redis_url:
            self._start_embedded_redis()
        self.redis = redis.Redis.from_url(self.effective_redis_url(), socket_timeout=10)
        self.redis.ping()
        self.db_number = self.redis.connection_pool.connection_kwargs.get("db", 0)
        self.raised_maxclients = None

    def hipush_env(self) -> dict:
        env = {"HIPUSH_DATA_DIR": str(self.data_dir), "HIPUSH_SECRET_KEY": self.secret_key,
               "HIPUSH_DATABASE_URL": self.database_url, "HIPUSH_ENV_FILE": "/nonexistent",
               **self.RATE_LIMITS_OFF}
        if self.redis_url:
            env["HIPUSH_REDIS_URL"] = self.redis_url
        return env

    def effective_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        from hipush import config
        return config.load({**self.hipush_env(), "HIPUSH_BIND": "127.0.0.1:1"}).effective_redis_url

    def _start_embedded_redis(self) -> None:
        from hipush.storage.embedded import EmbeddedRedis
        EmbeddedRedis(self.data_dir).ensure_running(detach=True)

    def _prepare_database(self) -> None:
        """A MySQL/MariaDB database is prepared (prepare_database); a SQLite file in the run's directory starts
        empty anyway."""
        from sqlalchemy.engine import make_url

        if make_url(self.database_url).get_backend_name() == "mysql":
            prepare_database(self.database_url)

    def cpu_bench_urls(self) -> tuple:
        """(Redis URL, database URL) of their own for bench/cpu_per_message.measure, which flushes and drops
        them: the next db number of the same Redis and the database's name + `_cpu` on the same server; ""
        (an embedded redis-server, SQLite, in its own temporary directory) where the run's are embedded / SQLite."""
        from sqlalchemy.engine import make_url

        redis_url = ""
        if self.redis_url:
            parts = urlsplit(self.redis_url)  # ?db= wins over a path's db; a unix:// URL's path is its socket
            query = urlencode({**dict(parse_qsl(parts.query)), "db": self.db_number + 1})
            redis_url = urlunsplit(parts._replace(path=parts.path if parts.scheme == "unix" else "", query=query))
        database = make_url(self.database_url)
        database_url = "" if database.get_backend_name() == "sqlite" else \
            database.set(database=database.database + "_cpu").render_as_string(hide_password=False)
        return redis_url, database_url

    def reset_redis(self) -> None:
        if not self.redis_url:  # the embedded redis-server goes with the gunicorn master that last used it
            self._start_embedded_redis()
            self.redis.connection_pool.disconnect()
        if self.flush_redis:
            self.redis.flushdb()

    def blocked_clients(self) -> int:
        return sum(1 for c in self.redis.client_list()
                   if "b" in c.get("flags", "") and int(c.get("db", -1)) == self.db_number)

    def blocked_anywhere(self) -> int:
        return int(self.redis.info("clients")["blocked_clients"])

    def clients_memory_kb(self) -> int:
        """What Redis spends on its client connections (all of them: the Redis may be shared)."""
        return int(self.redis.info("memory").get("mem_clients_normal", 0)) // 1024

    def used_memory_kb(self) -> int:
        return int(self.redis.info("memory")["used_memory"]) // 1024

    def ensure_maxclients(self, needed: int) -> None:
        """Raises Redis' maxclients for the run when `needed` connections would not fit (restored by close())."""
        current = int(self.redis.config_get("maxclients")["maxclients"])
        in_use = int(self.redis.info("clients")["connected_clients"])
        if needed + in_use + 200 > current:
            wanted = needed + in_use + 1000
            self.redis.config_set("maxclients", wanted)
            got = int(self.redis.config_get("maxclients")["maxclients"])
            if self.raised_maxclients is None:
                self.raised_maxclients = current
            print(f"bench: Redis maxclients raised from {current} to {got} for this run", flush=True)

    def create_app(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HIPUSH_")}
        env.update(self.hipush_env())
        out = subprocess.run([sys.executable, "app.py", "create-app", "bench"], cwd=HIPUSH_ROOT, env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return json.loads(out)

    def versions(self) -> dict:
        facts = {"redis_server": self.redis.info("server").get("redis_version"), "database_url": self.database_url,
                 "redis_url": self.effective_redis_url()}
        if self.database_url.startswith("mysql"):
            import sqlalchemy as sa
            engine = sa.create_engine(self.database_url)
            with engine.connect() as conn:
                facts["database_server"] = conn.execute(sa.text("SELECT VERSION()")).scalar()
            engine.dispose()
        else:
            import sqlite3
            facts["database_server"] = f"SQLite {sqlite3.sqlite_version}"
        return facts

    def close(self) -> None:
        if self.raised_maxclients is not None:
            try:
                self.redis.config_set("maxclients", self.raised_maxclients)
                print(f"bench: Redis maxclients restored to {self.raised_maxclients}", flush=True)
            except Exception as exc:  # noqa: BLE001 - e.g. more clients connected right now than the old limit
                print(f"bench: could not restore Redis maxclients to {self.raised_maxclients}: {exc}", flush=True)
        if self.flush_redis and self.redis_url:
            self.redis.flushdb()
        self.redis.close()
        if not self.redis_url:
            from hipush.storage.embedded import EmbeddedRedis
            EmbeddedRedis(self.data_dir).stop()


class ClusterBackend:
    """hipush-2w-cluster's backend: the run's database (and app, clients) of `base`, a HipushBackend, and a
    local Redis Cluster of its own in place of the one Redis, started here and stopped by close()."""

    def __init__(self, base: HipushBackend):
        from .cluster import LocalCluster

        self.base = base
        self.cluster = LocalCluster(masters=3).start()
        self.raised_maxclients = None  # each node's maxclients is raised when needed, and goes with the cluster

    def _masters(self) -> list:
        import redis
        return [redis.Redis(port=port, socket_timeout=10) for port in self.cluster.master_ports()]

    def hipush_env(self) -> dict:
        env = {k: v for k, v in self.base.hipush_env().items() if k != "HIPUSH_REDIS_URL"}
        return {**env, "HIPUSH_REDIS_CLUSTER_NODES": self.cluster.seeds}

    def reset_redis(self) -> None:
        self.cluster.flush()

    def _sum(self, measure) -> int:
        total = 0
        for node in self._masters():
            total += measure(node)
            node.close()
        return total

    def blocked_clients(self) -> int:
        return self._sum(lambda node: sum(1 for c in node.client_list() if "b" in c.get("flags", "")))

    def blocked_anywhere(self) -> int:
        return self._sum(lambda node: int(node.info("clients")["blocked_clients"]))

    def clients_memory_kb(self) -> int:
        return self._sum(lambda node: int(node.info("memory").get("mem_clients_normal", 0))) // 1024

    def used_memory_kb(self) -> int:
        return self._sum(lambda node: int(node.info("memory")["used_memory"])) // 1024

    def ensure_maxclients(self, needed: int) -> None:
        for node in self._masters():  # a master holds about a third of the polls; each may take them all
            if int(node.config_get("maxclients")["maxclients"]) < needed + 1000:
                node.config_set("maxclients", needed + 1000)
            node.close()

    def create_app(self) -> dict:
        return self.base.create_app()

    def close(self) -> None:
        self.cluster.stop()


def nginx_version() -> str:
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    return re.sub(r"^nginx version:\s*", "", out)


def nchan_package_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"
