"""How many idle long polls one hipush server holds, and its memory per parked poll.

    .venv/bin/python bench/parked_polls.py --polls 5000 --workers 1

Starts hipush under gunicorn (embedded default in a temporary data dir unless
HIPUSH_REDIS_URL / HIPUSH_DATABASE_URL are set), registers the clients, opens
the polls from a gevent load generator in this process (loopback only), waits
until every poll is parked, and reports worker RSS before and after.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / "tests"), str(Path(__file__).resolve().parent.parent)]
from support import Api, Server  # noqa: E402


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def open_poll(port: int, client: dict, timeout: int, held: list, errors: list):
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.sendall(f"GET /comet/poll?client_id={client['client_id']}&token={client['token']}&timeout={timeout} "
                     f"HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        held.append(sock)
        answer = sock.recv(4096)
        if not answer.startswith(b"HTTP/1.1 200"):
            errors.append(answer[:200])
    except OSError as exc:
        errors.append(repr(exc))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--poll-timeout", type=int, default=60)
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="hp-bench-", dir="/tmp")
    server = Server({"HIPUSH_DATA_DIR": data_dir}, workers=args.workers).start()
    try:
        api = Api(server.base)
        app = server.create_app("bench")
        registrar = gevent.pool.Pool(50)
        clients = registrar.map(lambda i: Api(server.base).register(app, f"parked-{i}"), range(args.polls))
        time.sleep(2)
        workers = server.worker_pids()
        rss_before = sum(rss_kb(p) for p in workers)
        held, errors = [], []
        started = time.monotonic()
        greenlets = [gevent.spawn(open_poll, server.port, c, args.poll_timeout, held, errors) for c in clients]
        while len(held) < args.polls and time.monotonic() - started < 60:
            gevent.sleep(0.2)
        gevent.sleep(5)  # let the server park them all
        rss_after = sum(rss_kb(p) for p in workers)
        cpu_before = sum(cpu_seconds(p) for p in workers)
        gevent.sleep(10)
        idle_cpu = (sum(cpu_seconds(p) for p in workers) - cpu_before) / 10.0 * 100
        result = {
            "polls": args.polls, "workers": args.workers, "held": len(held), "errors": len(errors),
            "rss_before_kb": rss_before, "rss_after_kb": rss_after,
            "kb_per_parked_poll": round((rss_after - rss_before) / max(1, len(held)), 1),
            "idle_cpu_percent": round(idle_cpu, 1),
        }
        print(json.dumps(result))
        for sock in held:
            sock.close()
        gevent.killall(greenlets, block=False)
        del api
    finally:
        server.stop()
        from hipush.storage.embedded import EmbeddedRedis
        EmbeddedRedis(Path(data_dir)).stop()


if __name__ == "__main__":
    main()
