"""What one client, parked poll, publish and acknowledgement cost in Redis and SQL: the figures of docs/SCALING.md.

    python -m bench.footprint [--clients 1000] [--publishes 1000]

Starts a redis-server of its own (Debian's, no persistence, temporary directory) and hipush on it (2 gevent
workers, SQLite), then measures with INFO (memory, clients, commandstats; CONFIG RESETSTAT before each step)
and SQL row counts:
- per registered client (offline): Redis memory;
- per parked poll: Redis connections, Redis memory (client buffers included), hipush worker memory (RSS);
- per unicast publish to an offline client: Redis commands and memory (the queued message), SQL rows;
- per poll that takes one message and per acknowledgement: Redis commands;
- per broadcast: Redis commands per target client;
- idle: Redis commands per second per worker (heartbeats, flushes, timers).
Prints one JSON object.
"""
import argparse
import json
import socket
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

from . import procstat
from .protocols import signed_query
from .systems import GUNICORN, HIPUSH_ROOT, free_port, stop_process, wait_until


def commands(node) -> dict:
    return {name[len("cmdstat_"):]: stats["calls"] for name, stats in node.info("commandstats").items()}


def total_commands(node) -> int:
    """Commands since the last CONFIG RESETSTAT, less the INFO calls of this script."""
    return sum(n for name, n in commands(node).items() if name not in ("info", "config|resetstat", "config"))


class Footprint:
    def __init__(self, tmp: Path):
        self.redis_port, self.port = free_port(), free_port()
        self.redis_process = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--save", "", "--appendonly", "no",
             "--dir", str(tmp), "--maxclients", "20000"], stdout=subprocess.DEVNULL)
        self.node = redis.Redis(port=self.redis_port)
        wait_until(lambda: self._pings(), 20, "redis-server")
        self.base = f"http://127.0.0.1:{self.port}"
        self.db = tmp / "hipush.db"
        env = {"HIPUSH_DATA_DIR": str(tmp), "HIPUSH_SECRET_KEY": "footprint", "HIPUSH_ENV_FILE": "/nonexistent",
               "HIPUSH_DATABASE_URL": f"sqlite:///{self.db}", "HIPUSH_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
               "HIPUSH_PUBLISH_RATE": "0", "HIPUSH_SUBSCRIBE_RATE": "0", "HIPUSH_CLIENT_IP_RATE": "0",
               "HIPUSH_BIND": f"127.0.0.1:{self.port}", "HIPUSH_PUBLIC_ADDR": f"127.0.0.1:{self.port}",
               "PATH": "/usr/bin:/bin"}
        self.log = open(tmp / "gunicorn.log", "ab")
        self.hipush = subprocess.Popen([str(GUNICORN), "-c", "gunicorn.conf.py", "-w", "2", "wsgi:app"],
                                       cwd=HIPUSH_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 60, "hipush")
        self.app = json.loads(subprocess.run([sys.executable, "app.py", "create-app", "footprint"], cwd=HIPUSH_ROOT,
                                             env=env, capture_output=True, text=True, check=True).stdout)
        self.http = requests.Session()
        self.job_id = self.signed("/job/genId", [("name", "f"), ("type", "t")])["job_id"]

    def _pings(self) -> bool:
        try:
            return self.node.ping()
        except redis.ConnectionError:
            return False

    def _ready(self) -> bool:
        try:
            return requests.get(self.base + "/service/random", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def signed(self, path, pairs):
        pairs = [("app_key", self.app["app_key"]), *pairs]
        answer = self.http.get(f"{self.base}{path}?{signed_query(pairs, self.app['app_secret'])}", timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]

    def register(self, device):
        client_id = self.http.get(self.base + "/user/genId", params={"device_id": device, "app_key": self.app["app_key"]},
                                  timeout=30).json()["result"]["client_id"]
        token = self.http.get(self.base + "/user/token", params={"client_id": client_id}, timeout=30).json()["result"]["token"]
        return {"client_id": client_id, "token": token}

    def poll(self, client, ack=None):
        params = {"client_id": client["client_id"], "token": client["token"], "timeout": 0}
        if ack is not None:
            params["ack"] = ack
        return self.http.get(self.base + "/comet/poll", params=params, timeout=30).json()["result"]["messages"]

    def publish(self, client, content):
        self.signed("/publish/private", [("job_id", self.job_id), ("client_id", client["client_id"]), ("msg_type", 0),
                                         ("content", content), ("online", "false")])

    def sql_rows(self) -> int:
        with sqlite3.connect(self.db) as conn:
            return sum(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                       for table in ("messages", "pushes", "push_topics"))

    def used_memory(self) -> int:
        return int(self.node.info("memory")["used_memory"])

    def worker_rss_kb(self) -> int:
        return sum(procstat.rss_kb(pid) for pid in procstat.children(self.hipush.pid))

    def stop(self):
        stop_process(self.hipush)
        stop_process(self.redis_process)
        self.log.close()


def park(base: str, clients: list) -> list:
    """One raw socket per client with a 60-s poll sent and never read (it stays parked)."""
    host, port = base.split("//")[1].split(":")
    sockets = []
    for client in clients:
        s = socket.create_connection((host, int(port)))
        s.sendall(f"GET /comet/poll?client_id={client['client_id']}&token={requests.utils.quote(client['token'])}"
                  f"&timeout=60 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sockets.append(s)
    return sockets


def measure(f: Footprint, n_clients: int, n_publishes: int) -> dict:
    out = {}
    # per registered client
    memory = f.used_memory()
    clients = [f.register(f"d{i}") for i in range(n_clients)]
    for client in clients:  # a first poll caches the client's token epoch (its meta key)
        f.poll(client)
    out["redis_bytes_per_registered_client"] = round((f.used_memory() - memory) / n_clients)

    # per parked poll
    time.sleep(2)
    memory, rss, connected = f.used_memory(), f.worker_rss_kb(), int(f.node.info("clients")["connected_clients"])
    sockets = park(f.base, clients)
    wait_until(lambda: int(f.node.info("clients")["blocked_clients"]) >= n_clients, 120, "every poll parked")
    time.sleep(2)
    info = f.node.info("clients")
    out["redis_connections_per_parked_poll"] = round((int(info["connected_clients"]) - connected) / n_clients, 3)
    out["redis_bytes_per_parked_poll"] = round((f.used_memory() - memory) / n_clients)
    out["hipush_rss_kb_per_parked_poll"] = round((f.worker_rss_kb() - rss) / n_clients, 1)
    f.node.config_resetstat()
    time.sleep(10)
    out["redis_commands_per_s_idle_2_workers_with_parked"] = round(total_commands(f.node) / 10, 1)
    for s in sockets:
        s.close()
    wait_until(lambda: int(f.node.info("clients")["blocked_clients"]) == 0, 120, "the polls released")
    time.sleep(2)

    # per unicast publish to an offline client
    targets = clients[:n_publishes] if n_publishes <= n_clients else clients
    rows, memory = f.sql_rows(), f.used_memory()
    f.node.config_resetstat()
    for i in range(n_publishes):
        f.publish(targets[i % len(targets)], f"m{i:06d}")  # 7 characters of content
    out["redis_commands_per_publish"] = round(total_commands(f.node) / n_publishes, 2)
    out["redis_commands_per_publish_by_name"] = {k: round(v / n_publishes, 2) for k, v in commands(f.node).items()
                                                 if k not in ("info", "config|resetstat")}
    out["redis_bytes_per_queued_message"] = round((f.used_memory() - memory) / n_publishes)
    out["sql_rows_per_unicast"] = round((f.sql_rows() - rows) / n_publishes, 2)

    # per poll that takes a message, then per acknowledgement (the next poll's ack)
    f.node.config_resetstat()
    taken = [f.poll(client) for client in targets]
    out["redis_commands_per_poll_taking_one"] = round(total_commands(f.node) / len(targets), 2)
    f.node.config_resetstat()
    for client, messages in zip(targets, taken):
        f.poll(client, ack=messages[-1]["id"])
    out["redis_commands_per_poll_acking_one"] = round(total_commands(f.node) / len(targets), 2)

    # per broadcast target
    rows = f.sql_rows()
    f.node.config_resetstat()
    message_id = f.signed("/message/save", [("job_id", f.job_id), ("msg_type", 0), ("content", "all")])["message_id"]
    f.signed("/publish/multi", [("topic", "*"), ("msg_id", message_id), ("online", "false")])
    time.sleep(3)
    out["redis_commands_per_broadcast_target"] = round(total_commands(f.node) / n_clients, 3)
    out["sql_rows_per_broadcast"] = f.sql_rows() - rows
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--publishes", type=int, default=1000)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a `timeout` still stops what this started
    with tempfile.TemporaryDirectory(prefix="hipush-footprint-") as tmp:
        f = Footprint(Path(tmp))
        try:
            print(json.dumps(measure(f, args.clients, args.publishes), indent=1))
        finally:
            f.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
