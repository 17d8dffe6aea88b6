"""Many long-polling clients in one gevent process, for tests/test_reconnect_herd.py (run by it, not by pytest).

    python tests/herd.py     # config as the first JSON line of stdin, then one command a line

It registers `count` clients with the benchmark's set-up code (bench.loadgen), then on `open` every client
long-polls on its own keep-alive connection, acknowledging with the next poll what the last one brought.
Unlike the benchmark's subscribers it keeps every answer: each client's deliveries (id, content), every HTTP
status and every kind of failure. A client whose connection fails tries again `retry_every` seconds later
(±50 %), so when a stopped server comes back all of them reconnect within that time. Loopback only; every
loop ends on `stop` or EOF.
"""
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the checkout, for `bench`

from bench.loadgen import emit, raise_fd_limit, setup_main  # noqa: E402  (patches the standard library for gevent)
from bench.httpclient import Connection  # noqa: E402
from bench.protocols import Hipush  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
from gevent.fileobject import FileObjectPosix  # noqa: E402


class Herd:
    def __init__(self, config: dict, clients: list, job_id: int):
        self.host, self.port = config["host"], int(config["port"])
        self.poll_timeout = int(config.get("poll_timeout", 30))
        self.retry_every = float(config.get("retry_every", 0.5))
        self.open_rate = float(config.get("open_rate", 2000))
        self.app, self.clients, self.job_id = config["app"], clients, job_id
        self.deliveries = [[] for _ in clients]
        self.statuses = Counter()
        self.failures = Counter()
        self.samples = {}  # one example of each failure and non-200 status
        self.stopping = False
        self.greenlets = []

    def open(self) -> None:
        for idx in range(len(self.clients)):
            self.greenlets.append(gevent.spawn(self._poll_loop, idx))
            gevent.sleep(1 / self.open_rate)  # paced, not to overflow the listen backlog

    def _poll_loop(self, idx: int) -> None:
        protocol = Hipush({"poll_timeout": self.poll_timeout})
        sub, conn = dict(self.clients[idx]), None  # sub["ack"]: the last id received, sent with the next poll
        while not self.stopping:
            method, path, _ = protocol.poll_request(sub)
            try:
                if conn is None:
                    conn = Connection(self.host, self.port, self.poll_timeout + 20)
                status, _, body = conn.request(method, path)
            except Exception as exc:  # noqa: BLE001 - counted; the test decides which are allowed
                if conn is not None:
                    conn.close()
                conn = None
                if self.stopping:
                    return
                self.failures[type(exc).__name__] += 1
                self.samples.setdefault(type(exc).__name__, str(exc))
                gevent.sleep(self.retry_every * random.uniform(0.5, 1.5))
                continue
            self.statuses[status] += 1
            if status != 200:
                self.samples.setdefault(str(status), body[:200].decode(errors="replace"))
                gevent.sleep(self.retry_every * random.uniform(0.5, 1.5))
                continue
            messages = json.loads(body)["result"]["messages"]
            if messages:
                sub["ack"] = messages[-1]["id"]
                self.deliveries[idx] += [(m["id"], m["content"]) for m in messages]

    def publish(self, port: int) -> dict:
        """Content `herd-<idx>` to each client, by /publish/private on the server at `port`; 429 is retried."""
        protocol = Hipush({"app": self.app, "job_id": self.job_id})
        statuses = Counter()
        pool = gevent.pool.Pool(20)
        started = time.monotonic()

        def send(idx):
            conn = Connection(self.host, port, 30)
            try:
                for _ in range(20):
                    status = protocol.publish_one(conn, self.clients[idx]["client_id"], f"herd-{idx}")
                    statuses[status] += 1
                    if status != 429:
                        return
                    gevent.sleep(0.2)
            finally:
                conn.close()

        pool.map(send, range(len(self.clients)))
        return {"statuses": dict(statuses), "seconds": round(time.monotonic() - started, 2)}

    def status(self) -> dict:
        return {"statuses": dict(self.statuses), "failures": dict(self.failures), "samples": self.samples,
                "received": sum(len(d) for d in self.deliveries),
                "clients_with_messages": sum(1 for d in self.deliveries if d)}

    def stop(self) -> None:
        self.stopping = True
        gevent.killall(self.greenlets, block=True, timeout=10)


def main() -> None:
    raise_fd_limit()
    stdin = FileObjectPosix(sys.stdin.fileno(), "r", close=False)
    config = json.loads(stdin.readline())
    registered = setup_main({**config, "concurrency": 20})
    emit({"clients": registered["clients"], "job_id": registered["job_id"], "errors": registered["errors"]})
    herd = Herd(config, registered["clients"], registered["job_id"])
    for line in stdin:
        command = json.loads(line)
        if command["cmd"] == "open":
            herd.open()
            emit({"ok": True})
        elif command["cmd"] == "publish":
            emit(herd.publish(int(command["port"])))
        elif command["cmd"] == "status":
            emit(herd.status())
        elif command["cmd"] == "deliveries":
            emit({"deliveries": herd.deliveries})
        elif command["cmd"] == "stop":
            break
    herd.stop()
    emit(herd.status())


if __name__ == "__main__":
    main()
