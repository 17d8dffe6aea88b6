"""The load generator: one process of gevent greenlets over raw sockets, run apart from the servers.

    python -m bench.loadgen subscribe   # long-lived: many long-polling clients; commands on stdin
    python -m bench.loadgen publish     # one run of an app backend publishing; config on stdin, result on stdout
    python -m bench.loadgen setup       # hipush only: register clients, make a job, subscribe topics
    python -m bench.loadgen hammer      # closed loop: GET a path on keep-alive connections, as fast as answered

Every role reads one JSON object (its config) as the first line of stdin and writes JSON lines to stdout.
The same code drives hipush and Nchan; bench/protocols.py holds the only differences. Loopback only:
the orchestrator hands it 127.0.0.1 addresses, and every loop here is bounded by a count or a deadline.
"""
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
from gevent.fileobject import FileObjectPosix  # noqa: E402

from .httpclient import Connection  # noqa: E402
from .protocols import PROTOCOLS, content_for, signed_query  # noqa: E402

ERROR_SAMPLES = 10
ACK_EVERY, ACK_INTERVAL_S = 100, 1.0  # a stream's subscriber acknowledges at least this often (as the kits do)


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def own_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Errors:
    def __init__(self):
        self.count = 0
        self.samples = []

    def add(self, what: str) -> None:
        self.count += 1
        if len(self.samples) < ERROR_SAMPLES and what not in self.samples:
            self.samples.append(what)


# ---------------------------------------------------------------- subscribers

class Subscribers:
    """Many clients, each long-polling on its own keep-alive connection, re-polling as soon as answered."""

    def __init__(self, config: dict):
        self.protocol = PROTOCOLS[config["system"]](config)
        self.host, self.port = config["host"], int(config["port"])
        self.subs = config["subs"]
        self.open_rate = float(config.get("open_rate", 2000))
        self.socket_timeout = float(config.get("socket_timeout", 90))
        self.conns = [None] * len(self.subs)
        self.waiting = [False] * len(self.subs)
        self.churned = [False] * len(self.subs)
        self.opened = 0
        self.answers = 0
        self.received = 0
        self.churns = 0
        self.errors = Errors()
        self.receipts = []
        self.stopping = False
        self.greenlets = []
        self.churn_fraction = 0.0
        self.churner = None
        self.sse = config.get("transport") == "sse"
        if self.sse and self.protocol.ack_request:
            self.pending_acks = {}  # subscriber index -> [delivery id to acknowledge, events since the last ack]
            self.ack_conns = ConnectionPool(self.host, self.port, 30)
            self.ack_pool = gevent.pool.Pool(64)
            self.acker = gevent.spawn(self._ack_loop)

    def open(self, upto: int) -> None:
        """Starts subscribers [opened, upto), paced at open_rate per second (a burst of thousands of
        connects at once would only overflow the servers' listen backlogs)."""
        upto = min(upto, len(self.subs))
        first, started = self.opened, time.monotonic()
        for idx in range(first, upto):
            if self.stopping:
                return
            self.greenlets.append(gevent.spawn(self._run, idx))
            self.opened = idx + 1
            due = started + (idx - first + 1) / self.open_rate
            if due > time.monotonic():
                gevent.sleep(due - time.monotonic())

    def _run(self, idx: int) -> None:
        if self.sse:
            return self._run_stream(idx)
        sub = self.subs[idx]
        failures = 0
        while not self.stopping:
            conn = self.conns[idx]
            try:
                if conn is None:
                    conn = self.conns[idx] = Connection(self.host, self.port, self.socket_timeout)
                method, path, headers = self.protocol.poll_request(sub)
                self.waiting[idx] = True
                status, answer_headers, body = conn.request(method, path, headers)
                received_ns = time.time_ns()
                self.waiting[idx] = False
                self.answers += 1
                contents = self.protocol.on_answer(sub, status, answer_headers, body)
                if contents is None:
                    self.errors.add(f"HTTP {status}: {body[:120].decode(errors='replace')}")
                    failures += 1
                    gevent.sleep(min(5.0, 0.5 * failures))
                    continue
                failures = 0
                for content in contents:
                    self.receipts.append((idx, content, received_ns))
                self.received += len(contents)
            except Exception as exc:  # noqa: BLE001 - a load generator counts every failure and carries on
                self.waiting[idx] = False
                if conn is not None:
                    conn.close()
                self.conns[idx] = None
                if self.stopping:
                    return
                if self.churned[idx]:  # we closed it on purpose: a client that went away and comes back
                    self.churned[idx] = False
                    self.churns += 1
                    gevent.sleep(random.uniform(0.05, 1.0))
                    continue
                self.errors.add(f"{type(exc).__name__}: {exc}")
                failures += 1
                gevent.sleep(min(5.0, 0.5 * failures))

    def _run_stream(self, idx: int) -> None:
        """One SSE stream after another (a stream ends at the server's max age); acknowledgements go apart."""
        sub = self.subs[idx]
        failures = 0
        while not self.stopping:
            conn = self.conns[idx] = Connection(self.host, self.port, self.socket_timeout)
            try:
                method, path, headers = self.protocol.stream_request(sub)
                self.waiting[idx] = True
                for events in conn.events(method, path, headers):
                    received_ns = time.time_ns()
                    failures = 0
                    if not events:
                        continue
                    self.answers += 1
                    for content in self.protocol.stream_contents(events):
                        self.receipts.append((idx, content, received_ns))
                    self.received += len(events)
                    if not self.protocol.ack_request:
                        continue
                    pending = self.pending_acks.setdefault(idx, [None, 0])
                    pending[0] = events[-1][0]
                    pending[1] += len(events)
                    if pending[1] >= ACK_EVERY:
                        self.ack_pool.spawn(self._ack, idx)
            except Exception as exc:  # noqa: BLE001
                if self.stopping:
                    return
                self.errors.add(f"{type(exc).__name__}: {exc}")
                failures += 1
                gevent.sleep(min(5.0, 0.5 * failures))
            finally:
                self.waiting[idx] = False
                conn.close()

    def _ack_loop(self) -> None:
        while not self.stopping:
            gevent.sleep(ACK_INTERVAL_S)
            for idx in list(self.pending_acks):
                self.ack_pool.spawn(self._ack, idx)

    def _ack(self, idx: int) -> None:
        pending = self.pending_acks.pop(idx, None)
        if pending is None:
            return
        conn = self.ack_conns.get()
        try:
            status, _, body = conn.request(*self.protocol.ack_request(self.subs[idx], pending[0]))
            if status != 200:
                self.errors.add(f"ack: HTTP {status}: {body[:120].decode(errors='replace')}")
        except Exception as exc:  # noqa: BLE001
            self.errors.add(f"ack: {type(exc).__name__}: {exc}")
            conn.close()
        self.ack_conns.put(conn)

    def set_churn(self, fraction: float) -> None:
        """Every second, close the sockets of `fraction` of the open subscribers abruptly (they reconnect)."""
        self.churn_fraction = fraction
        if fraction > 0 and self.churner is None:
            self.churner = gevent.spawn(self._churn_loop)

    def _churn_loop(self) -> None:
        while not self.stopping:
            gevent.sleep(1.0)
            count = int(self.opened * self.churn_fraction)
            for idx in random.sample(range(self.opened), min(count, self.opened)):
                conn = self.conns[idx]
                if conn is not None and conn.sock is not None and self.waiting[idx]:
                    self.churned[idx] = True
                    conn.close()

    def status(self) -> dict:
        return {"opened": self.opened, "held": sum(self.waiting), "answers": self.answers,
                "received": self.received, "churns": self.churns, "errors": self.errors.count,
                "error_samples": self.errors.samples, "cpu_s": own_cpu_seconds(), "rss_kb": own_rss_kb()}

    def report(self) -> dict:
        receipts, self.receipts = self.receipts, []
        return {"receipts": receipts}

    def stop(self) -> dict:
        self.stopping = True
        for conn in self.conns:
            if conn is not None:
                conn.close()
        gevent.killall(self.greenlets, block=True, timeout=5)
        return self.status()


def subscribe_main(stdin, config: dict) -> None:
    subscribers = Subscribers(config)
    opener = None
    for line in stdin:  # one command per line, answered by one line; ends with "stop" or EOF
        command = json.loads(line)
        cmd = command["cmd"]
        if cmd == "open":
            if opener is not None:
                opener.join()
            opener = gevent.spawn(subscribers.open, int(command["upto"]))
            emit({"ok": True})
        elif cmd == "status":
            emit(subscribers.status())
        elif cmd == "report":
            emit(subscribers.report())
        elif cmd == "churn":
            subscribers.set_churn(float(command["fraction"]))
            emit({"ok": True})
        elif cmd == "stop":
            break
    emit(subscribers.stop())


# ---------------------------------------------------------------- publisher

class ConnectionPool:
    """Warm keep-alive connections, reused most-recently-used first."""

    def __init__(self, host, port, timeout=30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.idle = []

    def get(self) -> Connection:
        return self.idle.pop() if self.idle else Connection(self.host, self.port, self.timeout)

    def put(self, conn: Connection) -> None:
        if conn.sock is not None:
            self.idle.append(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()


def publish_rate(protocol, config: dict) -> dict:
    """Open loop: message g of the run is due at start + g/rate whatever the answers; this process sends
    g = offset, offset + stride, ... (several processes share one rate). A message's content carries its
    due time, so a receipt's latency counts any lateness of the sender too (no coordinated omission).
    When the server holds every connection of the pool busy, sending falls behind; what is still unsent
    `max_seconds` after the start is given up ("unsent"), so a step never runs much past its duration.
    With `batch` > 1, messages go `batch` at a time in one call (hipush's /push/batch), each call sent when
    its last message is due: a message's latency includes its wait for the rest of its batch."""
    rate, duration = float(config["rate"]), float(config["duration"])
    total = int(rate * duration)
    stride, offset = int(config.get("stride", 1)), int(config.get("offset", 0))
    targets, tag, seq_base = config["targets"], config["tag"], int(config.get("seq_base", 0))
    start_ns = int(config["start_at_ns"])
    give_up_ns = start_ns + int(float(config.get("max_seconds", 2 * duration + 5)) * 1e9)
    pool = gevent.pool.Pool(int(config.get("concurrency", 64)))
    conns = ConnectionPool(config["host"], int(config["port"]))
    sent, errors = [], Errors()
    max_lag = 0.0
    unsent = 0
    cpu_before = own_cpu_seconds()

    batch_size = int(config.get("batch", 1))
    batch = []

    def send(items):
        """items: (seq, target, content) of one call."""
        conn = conns.get()
        started = time.perf_counter()
        try:
            if batch_size > 1:
                status = protocol.publish_batch(conn, [(target, content) for _, target, content in items])
            else:
                status = protocol.publish_one(conn, items[0][1], items[0][2])
        except Exception as exc:  # noqa: BLE001
            status = 0
            errors.add(f"{type(exc).__name__}: {exc}")
            conn.close()
        call_us = int((time.perf_counter() - started) * 1e6)
        if status != 200 and status != 0:
            errors.add(f"HTTP {status}")
        sent.extend((seq, status, call_us) for seq, _, _ in items)
        conns.put(conn)

    mine = range(offset, total, stride)
    for number, g in enumerate(mine):
        if time.time_ns() > give_up_ns:
            unsent = len(mine) - number
            break
        due_ns = start_ns + int(g * 1e9 / rate)
        wait = (due_ns - time.time_ns()) / 1e9
        if wait > 0:
            gevent.sleep(wait)
        else:
            max_lag = max(max_lag, -wait)
        seq = seq_base + g
        batch.append((seq, targets[g % len(targets)], content_for(tag, seq, due_ns)))
        if len(batch) >= batch_size or number == len(mine) - 1:
            pool.spawn(send, batch)  # blocks when full
            batch = []
    if batch:  # given up part-way through a batch: its messages count as unsent
        unsent += len(batch)
    finished_sending = time.time_ns()
    pool.join(timeout=40)
    abandoned = len(pool)  # still unanswered 40 s after the last send: counted as failed sends
    pool.kill(block=True, timeout=5)
    conns.close()
    if abandoned:
        errors.add(f"{abandoned} publish calls unanswered 40 s after the last send")
    return {"sent": sent, "planned": len(mine), "unsent": unsent, "abandoned": abandoned, "max_lag_ms": round(max_lag * 1000, 1),
            "send_window_s": (finished_sending - start_ns) / 1e9, "cpu_s": own_cpu_seconds() - cpu_before,
            "errors": errors.count, "error_samples": errors.samples}


def publish_fanout(protocol, config: dict) -> dict:
    """One message to a topic (hipush) or channel (Nchan) with many subscribers."""
    conn = Connection(config["host"], int(config["port"]), 120)
    started_ns = time.time_ns()
    content = content_for(config["tag"], int(config.get("seq", 0)), started_ns)
    try:
        result = protocol.publish_fanout(conn, config["target"], content)
    except Exception as exc:  # noqa: BLE001
        result = {"status": 0, "error": f"{type(exc).__name__}: {exc}"}
    result.update(content=content, started_ns=started_ns, returned_ns=time.time_ns())
    conn.close()
    return result


# ---------------------------------------------------------------- the framework floor

def hammer(config: dict) -> dict:
    """`connections` keep-alive connections each sending GET `path` again as soon as it is answered, for
    `duration` seconds: answers per second (what wrk measures)."""
    conns = [Connection(config["host"], int(config["port"]), 10) for _ in range(int(config["connections"]))]
    deadline = time.monotonic() + float(config["duration"])
    counts, errors = [0], Errors()
    cpu_before = own_cpu_seconds()

    def loop(conn):
        while time.monotonic() < deadline:
            try:
                status, _, _ = conn.request("GET", config["path"])
                if status == 200:
                    counts[0] += 1
                else:
                    errors.add(f"HTTP {status}")
            except Exception as exc:  # noqa: BLE001
                errors.add(f"{type(exc).__name__}: {exc}")
                conn.close()

    started = time.monotonic()
    gevent.joinall([gevent.spawn(loop, conn) for conn in conns])
    elapsed = time.monotonic() - started
    for conn in conns:
        conn.close()
    return {"answers": counts[0], "seconds": elapsed, "cpu_s": own_cpu_seconds() - cpu_before,
            "errors": errors.count, "error_samples": errors.samples}


# ---------------------------------------------------------------- setup (hipush)

def setup_main(config: dict) -> dict:
    """Registers `count` clients (device ids prefix-0..count-1), makes a job, subscribes topics; returns all."""
    host, port, app = config["host"], int(config["port"]), config["app"]
    pool = gevent.pool.Pool(int(config.get("concurrency", 40)))
    conns = ConnectionPool(host, port, 30)
    errors = Errors()

    def call(path, query):
        conn = conns.get()
        try:
            for attempt in range(3):
                try:
                    status, _, body = conn.request("GET", f"{path}?{query}")
                    if status == 200:
                        return json.loads(body)["result"]
                    errors.add(f"{path}: HTTP {status} {body[:120]!r}")
                except Exception as exc:  # noqa: BLE001
                    errors.add(f"{path}: {type(exc).__name__}: {exc}")
                    conn.close()
                gevent.sleep(0.2 * (attempt + 1))
            raise RuntimeError(f"setup call {path} failed 3 times: {errors.samples}")
        finally:
            conns.put(conn)

    def register(i):
        device = f"{config['prefix']}-{i}"
        client_id = call("/user/genId", f"device_id={device}&app_key={app['app_key']}")["client_id"]
        token = call("/user/token", f"client_id={client_id}")["token"]
        return {"client_id": client_id, "token": token}

    clients = pool.map(register, range(int(config["count"])))
    job_id = call("/job/genId", signed_query([("app_key", app["app_key"]), ("name", "bench"), ("type", "bench")],
                                             app["app_secret"]))["job_id"]
    counts = {}
    for topic in config.get("topics", []):
        members = clients[topic["from"]:topic["to"]]
        batches = [members[i:i + 100] for i in range(0, len(members), 100)]

        def subscribe(batch, name=topic["name"]):
            return call("/topic/subscribe", signed_query(
                [("app_key", app["app_key"]), *[("client_id", c["client_id"]) for c in batch], ("topic", name)],
                app["app_secret"]))
        # The first call makes the topic, alone: concurrent first subscribes to a new topic lose members on
        # MySQL/MariaDB (see the bench's report), and the bench must measure what it thinks it measures.
        subscribe(batches[0])
        pool.map(subscribe, batches[1:])
        counts[topic["name"]] = subscriber_count(conns, app, topic["name"])
        if counts[topic["name"]] not in (None, len(members)):
            raise RuntimeError(f"topic {topic['name']} has {counts[topic['name']]} subscribers, "
                               f"not the {len(members)} subscribed")
    conns.close()
    return {"clients": clients, "job_id": job_id, "errors": errors.count, "errors_samples": errors.samples,
            "topic_subscribers": counts}


def subscriber_count(conns, app, topic):
    """The topic's subscriber count by the REST call /manager/terminal_num_with_tag (None if hipush lacks it)."""
    conn = conns.get()
    try:
        status, _, body = conn.request("GET", "/manager/terminal_num_with_tag?" + signed_query(
            [("app_key", app["app_key"]), ("tag", topic)], app["app_secret"]))
    finally:
        conns.put(conn)
    if status != 200:
        return None
    return json.loads(body).get("num")


def main(argv) -> None:
    raise_fd_limit()
    role = argv[1] if len(argv) > 1 else ""
    stdin = FileObjectPosix(sys.stdin.fileno(), "r", close=False)
    config = json.loads(stdin.readline())
    if role == "subscribe":
        subscribe_main(stdin, config)
    elif role == "publish":
        protocol = PROTOCOLS[config["system"]](config)
        emit(publish_rate(protocol, config) if config["mode"] == "rate" else publish_fanout(protocol, config))
    elif role == "setup":
        emit(setup_main(config))
    elif role == "hammer":
        emit(hammer(config))
    else:
        sys.exit(f"usage: python -m bench.loadgen subscribe|publish|setup|hammer  (got {role!r})")


if __name__ == "__main__":
    main(sys.argv)
