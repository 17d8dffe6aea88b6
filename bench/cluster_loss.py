"""Write loss when a Redis Cluster master is SIGKILLed right after writes, and what HIPUSH_REDIS_WAIT_REPLICAS costs.

    python -m bench.cluster_loss [--wait-replicas 0 1] [--seconds 6] [--rate 300] [--kills 3] [--cost-seconds 10]

A local cluster (bench/cluster.py: 3 masters, 3 replicas, node timeout 2 s) and, for each N of
--wait-replicas, hipush (2 gevent workers, SQLite in a temporary directory) with HIPUSH_REDIS_WAIT_REPLICAS=N:
0. the enqueue round trip of one unicast, without and with WAIT 1, alternated (--round-trips each).
1. cost: 8 publishers publish unicasts to clients on every shard as fast as they answer, --cost-seconds
   long: publishes per second, p50 and p99 latency.
2. loss, --kills times: publishers send unicasts at a steady --rate to clients whose queues are all on one
   master, which is SIGKILLed half-way through --seconds; publishing goes on through the failover. Once no
   push is left sending in SQL, each client's queue is read from Redis: a publish answered 200 whose message
   is in no queue is lost; a publish answered with an error whose message is in a queue is a false error.
The killed node is started again (it rejoins as a replica) before the next kill.
"""
import argparse
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from .cluster import LocalCluster
from .protocols import signed_query
from .systems import GUNICORN, HIPUSH_ROOT, free_port, stop_process, wait_until

STATUS_SENDING = 2  # hipush.services.publish


class Hipush:
    def __init__(self, cluster: LocalCluster, data_dir: Path, wait_replicas: int):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db = data_dir / "hipush.db"
        self.env = {"HIPUSH_DATA_DIR": str(data_dir), "HIPUSH_SECRET_KEY": "loss", "HIPUSH_ENV_FILE": "/nonexistent",
                    "HIPUSH_DATABASE_URL": f"sqlite:///{self.db}", "HIPUSH_REDIS_CLUSTER_NODES": cluster.seeds,
                    "HIPUSH_REDIS_WAIT_REPLICAS": str(wait_replicas), "HIPUSH_SEND_LEASE": "2",
                    "HIPUSH_PUBLISH_RATE": "0", "HIPUSH_SUBSCRIBE_RATE": "0", "HIPUSH_CLIENT_IP_RATE": "0",
                    "HIPUSH_BIND": f"127.0.0.1:{self.port}", "HIPUSH_PUBLIC_ADDR": f"127.0.0.1:{self.port}",
                    "PATH": "/usr/bin:/bin"}
        self.log = open(data_dir / f"gunicorn-{self.port}.log", "ab")
        self.process = subprocess.Popen([str(GUNICORN), "-c", "gunicorn.conf.py", "-w", "2", "wsgi:app"],
                                        cwd=HIPUSH_ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 60, "hipush")
        out = subprocess.run([sys.executable, "app.py", "create-app", "loss"], cwd=HIPUSH_ROOT, env=self.env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
        self.app = json.loads(out)
        self.job_id = self._signed("/job/genId", [("name", "loss"), ("type", "t")])["job_id"]

    def _ready(self) -> bool:
        try:
            return requests.get(self.base + "/service/random", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _signed(self, path, pairs, session=requests):
        pairs = [("app_key", self.app["app_key"]), *pairs]
        return session.get(f"{self.base}{path}?{signed_query(pairs, self.app['app_secret'])}", timeout=30).json()["result"]

    def register(self, device: str) -> str:
        return requests.get(self.base + "/user/genId", params={"device_id": device, "app_key": self.app["app_key"]},
                            timeout=30).json()["result"]["client_id"]

    def publish(self, session, client_id: str, content: str) -> int:
        pairs = [("app_key", self.app["app_key"]), ("job_id", self.job_id), ("client_id", client_id),
                 ("msg_type", 0), ("content", content), ("online", "false")]
        try:
            return session.get(f"{self.base}/publish/private?{signed_query(pairs, self.app['app_secret'])}",
                               timeout=30).status_code
        except requests.RequestException:
            return 0

    def sending(self) -> int:
        with sqlite3.connect(self.db) as conn:
            return conn.execute("SELECT COUNT(*) FROM pushes WHERE status = ?", (STATUS_SENDING,)).fetchone()[0]

    def stop(self):
        stop_process(self.process)
        self.log.close()


def cost(hipush: Hipush, clients: list, seconds: float, publishers: int = 8) -> dict:
    latencies, errors = [], [0]
    stop_at = time.monotonic() + seconds

    def publisher(n):
        session, i = requests.Session(), n
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            status = hipush.publish(session, clients[i % len(clients)], f"cost.{n}.{i}")
            latencies.append((time.perf_counter() - started) * 1000)
            errors[0] += status != 200
            i += publishers

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(publishers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"publishes_per_s": round(len(latencies) / elapsed, 1), "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)], 1), "errors": errors[0], "publishes": len(latencies)}


def wait_round_trips(cluster: LocalCluster, n: int) -> dict:
    """One unicast's enqueue round trip (storage.queues on a ScriptPipeline, as a publish sends it), without
    and with WAIT 1, alternated so that both see the same machine: p50 and p99 in ms."""
    sys.path.insert(0, str(HIPUSH_ROOT))
    from hipush.storage import redis as redis_pools
    from hipush.storage.queues import Queues, entry

    pools = redis_pools.connect("", cluster.seeds, 5, 60)
    queues = Queues(pools, 1000)
    times = {0: [], 1: []}
    for i in range(2 * n):
        replicas = i % 2
        pipe = pools.pipeline()
        pipe.wait_for_replicas(replicas, 1000)
        queues.enqueue(pipe, [f"rt{i % 50}"], entry(i, 1, 2**50, "{}"), False)
        started = time.perf_counter()
        pipe.execute()
        times[replicas].append((time.perf_counter() - started) * 1000)
    pools.commands.close()
    return {f"wait_{r}": {"p50_ms": round(statistics.median(t), 3), "p99_ms": round(sorted(t)[int(len(t) * 0.99)], 3)}
            for r, t in times.items()}


def queued_contents(cluster_client, client_ids) -> set:
    contents = set()
    for client_id in client_ids:
        for part in ("queue", "inflight"):
            for raw in cluster_client.lrange(f"hp:{{c:{client_id}}}:{part}", 0, -1):
                contents.add(json.loads(raw.decode().split("|", 3)[3])["content"])
    return contents


def loss_trial(hipush: Hipush, cluster: LocalCluster, cluster_client, on_victim: list, victim: int,
               seconds: float, rate: float, trial: str) -> dict:
    answers = {}  # content -> HTTP status
    lock = threading.Lock()
    publishers = 8
    started = time.monotonic()

    def publisher(n):
        session, i = requests.Session(), n
        while True:
            due = started + i / rate
            if due > started + seconds:
                return
            time.sleep(max(0.0, due - time.monotonic()))
            content = f"{trial}.{i}"
            status = hipush.publish(session, on_victim[i % len(on_victim)], content)
            with lock:
                answers[content] = status
            i += publishers

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(publishers)]
    for t in threads:
        t.start()
    time.sleep(seconds / 2)
    killed_after = len(answers)
    cluster.kill(victim)
    for t in threads:
        t.join()
    wait_until(lambda: len(cluster.master_ports()) == cluster.masters, 60, "the replica's promotion")
    wait_until(lambda: hipush.sending() == 0, 90, "no push left sending")
    found = queued_contents(cluster_client, on_victim)
    ok = [c for c, status in answers.items() if status == 200]
    return {"published": len(answers), "answered_ok": len(ok), "answered_error": len(answers) - len(ok),
            "ok_before_kill": killed_after, "lost": sum(1 for c in ok if c not in found),
            "error_but_delivered": sum(1 for c, s in answers.items() if s != 200 and c in found)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wait-replicas", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--cost-seconds", type=float, default=10.0)
    parser.add_argument("--round-trips", type=int, default=2000, help="enqueue round trips timed with and without WAIT")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a `timeout` still stops what this started
    from redis.cluster import ClusterNode, RedisCluster

    results = {}
    cluster = LocalCluster(masters=3, node_timeout=2000).start()
    try:
        results["round_trips"] = wait_round_trips(cluster, args.round_trips)
        print(f"enqueue round trip: {results['round_trips']}", flush=True)
        for n in args.wait_replicas:
            with tempfile.TemporaryDirectory(prefix="hipush-loss-") as tmp:
                cluster.flush()
                hipush = Hipush(cluster, Path(tmp), n)
                try:
                    cluster_client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster.ports])
                    clients = [hipush.register(f"loss-{i}") for i in range(60)]
                    results[n] = {"cost": cost(hipush, clients, args.cost_seconds), "kills": []}
                    print(f"WAIT {n}: cost {results[n]['cost']}", flush=True)
                    for k in range(args.kills):
                        victim = cluster.master_of(f"hp:{{c:{clients[0]}}}:queue")
                        on_victim = [c for c in clients if cluster.master_of(f"hp:{{c:{c}}}:queue") == victim]
                        trial = loss_trial(hipush, cluster, cluster_client, on_victim, victim, args.seconds,
                                           args.rate, f"w{n}k{k}")
                        results[n]["kills"].append(trial)
                        print(f"WAIT {n}: kill {k + 1}: {trial}", flush=True)
                        cluster.restart(victim)
                        cluster.wait_healthy()
                        cluster_client.nodes_manager.initialize()
                    cluster_client.close()
                finally:
                    hipush.stop()
    finally:
        cluster.stop()
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
