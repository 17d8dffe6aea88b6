"""Test helpers: a real gunicorn server, a signed-call HTTP helper, waiting on conditions."""
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
import requests
from redis.cluster import RedisCluster
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bench.systems import wait_until
from hipush.storage.embedded import _redis_server_binary

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout=15.0, interval=0.05, message="condition"):
    """Polls `condition` until it returns something truthy; fails (as a test assertion) after `timeout` seconds."""
    try:
        return wait_until(condition, timeout, message, interval)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


class Background:
    """Runs `fn(*args, **kwargs)` in a daemon thread (e.g. a long poll that must park while the test acts)."""

    def __init__(self, fn, *args, **kwargs):
        self.value = self.error = None
        self.started = time.monotonic()
        self.finished = None
        self.thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, fn, args, kwargs):
        try:
            self.value = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test by result()
            self.error = exc
        finally:
            self.finished = time.monotonic()

    def result(self, timeout: float):
        """Joins with a deadline; returns fn's value or raises its error."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"still running {timeout}s after the join began")
        if self.error is not None:
            raise self.error
        return self.value

    @property
    def elapsed(self) -> float:
        """Seconds the call ran (so far, if it still runs)."""
        return (self.finished or time.monotonic()) - self.started


def client_key(client_id: str, part: str) -> str:
    """A client's Redis key (hipush/storage/keys.py): part is queue, inflight, missed, poller or online."""
    return f"hp:{{c:{client_id}}}:{part}"


def _blocked_connections(redis_client) -> set:
    """(node, connection id) of the connections waiting on a blocking command; node "" on one server."""
    if isinstance(redis_client, RedisCluster):
        lists = redis_client.client_list(target_nodes=RedisCluster.PRIMARIES)
        return {(node, str(c["id"])) for node, clients in lists.items() for c in clients if "b" in c["flags"]}
    return {("", str(c["id"])) for c in redis_client.client_list() if "b" in c["flags"]}


def _poller_connection(poller: bytes) -> tuple:
    """(node, connection id) a poller id ("redis connection id:serial", then "@host:port" on a cluster) names."""
    connection, _, node = poller.decode().partition("@")
    connection_id = connection.split(":")[0]
    assert connection_id.isdigit(), f"the poller {poller!r} names no Redis connection: no newer poll could unblock it"
    return node, connection_id


def poll_parked(redis_client, client_id: str) -> bool:
    """True when a poll of this client is parked: its poller key names a connection that CLIENT LIST
    shows waiting on a blocking command."""
    poller = redis_client.get(client_key(client_id, "poller"))
    return bool(poller) and _poller_connection(poller) in _blocked_connections(redis_client)


def polls_parked(redis_client, client_ids) -> int:
    """How many of these clients have a poll parked (as poll_parked tells), by one MGET and one CLIENT LIST."""
    names = [client_key(client_id, "poller") for client_id in client_ids]
    pollers = redis_client.mget_nonatomic(names) if isinstance(redis_client, RedisCluster) else redis_client.mget(names)
    blocked = _blocked_connections(redis_client)
    return sum(1 for poller in pollers if poller and _poller_connection(poller) in blocked)


def park_poll(base: str, redis_client, client: dict, timeout: int = 20, raw: bool = False, **params) -> Background:
    """Starts a long poll in a thread (own HTTP session) and returns once it is parked in Redis
    (timeout=None: the server's default). Its result: the messages, or (raw) the HTTP answer."""
    api = Api(base)
    poll = Background(api.poll_response if raw else api.poll, client, timeout=timeout, **params)
    wait_for(lambda: poll_parked(redis_client, client["client_id"]) or poll.finished,
             message=f"the poll of {client['client_id']} to park")
    assert not poll.finished, f"the poll answered instead of parking: {poll.result(1)}"
    return poll


def post_chunked(base: str, path: str, body: bytes, headers=(), chunk_bytes=8192):
    """(http status, JSON answer) of a POST whose form body is sent with Transfer-Encoding: chunked (no
    Content-Length), in chunks of `chunk_bytes`."""
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=60)
    try:
        chunks = (body[i:i + chunk_bytes] for i in range(0, len(body), chunk_bytes))
        connection.request("POST", path, body=chunks, encode_chunked=True,
                           headers={"Content-Type": "application/x-www-form-urlencoded", **dict(headers)})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def send_raw(base: str, request: bytes):
    """(http status, body) of the answer to `request`, bytes sent exactly as given (e.g. malformed framing);
    read until the server closes the connection."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def seed_sign(pairs, secret: str) -> str:
    """The seed's signature, written out independently of hipush.signing."""
    named = [("app_key" if k == "appkey" else k, v) for k, v in pairs if k != "sign"]
    named.sort(key=lambda kv: kv[0])
    return hashlib.md5(("&".join(f"{k}={v}" for k, v in named) + secret).encode()).hexdigest()


class Server:
    """hipush under real gunicorn with gevent workers, as `gunicorn -c gunicorn.conf.py wsgi:app` runs it."""

    def __init__(self, env: dict, workers: int = 2, port: int = None, own_session: bool = False):
        """own_session: in a process group of its own, as a terminal runs `make run` (see interrupt())."""
        self.port = port or free_port()
        self.workers = workers
        self.own_session = own_session
        self.env = {**os.environ, **env, "HIPUSH_BIND": f"127.0.0.1:{self.port}"}
        self.env.setdefault("HIPUSH_PUBLIC_ADDR", f"127.0.0.1:{self.port}")
        self.log_path = Path(env["HIPUSH_DATA_DIR"]) / f"gunicorn-{self.port}.log"
        self.process = None
        self.base = f"http://127.0.0.1:{self.port}"
        self.config_file = "gunicorn.conf.py"  # bench/cpu_per_message.py --profile names another

    def start(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(GUNICORN), "-c", self.config_file, "-w", str(self.workers), "wsgi:app"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=self.own_session)
        try:
            wait_for(self._ready, timeout=40, message=f"server on port {self.port} (log: {self.log_path})")
            wait_for(lambda: len(self.worker_pids()) == self.workers, message="all workers booted")
        except BaseException:
            self.stop()  # no server left running behind a failed start
            raise
        return self

    def _ready(self):
        if self.process.poll() is not None:
            raise AssertionError(f"server exited: {self.log_path.read_text()[-3000:]}")
        try:
            return requests.get(self.base + "/service/random", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def worker_pids(self) -> list:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split() if "gunicorn" in self._cmdline(p)]

    @staticmethod
    def _cmdline(pid) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")
        except FileNotFoundError:  # a worker that died (e.g. killed by a test) between pgrep and now
            return ""

    def kill_worker(self, pid):
        os.kill(pid, signal.SIGKILL)

    def kill(self):
        """SIGKILL to the master and its workers at once, as a crash of the node; returns once all are gone
        (and so is the listening socket: the node can start again on the same port)."""
        workers = self.worker_pids()
        self.process.kill()  # first, so that it starts no new worker
        for pid in workers:
            self.kill_worker(pid)
        self.process.wait()
        wait_for(lambda: not any(running(pid) for pid in workers), message="the killed workers gone")

    def interrupt(self):
        """Ctrl-C in the terminal that runs it: SIGINT to its whole process group (own_session servers only)."""
        assert self.own_session, "a server in the test's own process group: SIGINT would reach pytest too"
        os.killpg(self.process.pid, signal.SIGINT)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cli(self, *args) -> str:
        result = subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def create_app(self, name="test") -> dict:
        return json.loads(self.cli("create-app", name))


def running(pid) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def pushes_of_job(store, job_id) -> list:
    """The push rows of a job, read from SQL."""
    import sqlalchemy as sa

    from hipush.storage.db import pushes
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(pushes).where(pushes.c.job_id == job_id)).mappings()]


class Api:
    """Calls hipush over HTTP like an app backend or a client would."""

    # gunicorn closes a keep-alive connection after 2 idle seconds; a GET sent on it at that moment meets a
    # closed socket ("Remote end closed connection without response", nothing was processed) and, as a browser
    # would, is sent once more on a new connection
    KEEPALIVE_RACE = Retry(total=1, connect=0, read=1, status=0, redirect=0, other=0, allowed_methods={"GET"},
                           raise_on_status=False)

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()
        self.http.mount("http://", HTTPAdapter(max_retries=self.KEEPALIVE_RACE))

    def call(self, path, params=(), app=None, method="GET", **kwargs):
        pairs = list(params.items()) if isinstance(params, dict) else list(params)
        if app is not None:
            if not any(k in ("app_key", "appkey") for k, _ in pairs):
                pairs.insert(0, ("app_key", app["app_key"]))
            pairs.append(("sign", seed_sign(pairs, app["app_secret"])))
        if method == "GET":
            return self.http.get(self.base + path, params=pairs, timeout=90, **kwargs)
        return self.http.request(method, self.base + path, data=pairs, timeout=90, **kwargs)

    def ok(self, path, params=(), app=None, method="GET"):
        response = self.call(path, params, app, method)
        assert response.status_code == 200, (path, response.status_code, response.text)
        body = response.json()
        assert body["ok"] is True
        return body["result"]

    def error(self, path, params=(), app=None, method="GET"):
        """(http status, error code) of a failing call."""
        response = self.call(path, params, app, method)
        body = response.json()
        assert set(body) == {"error", "reason"} and body["reason"], body
        return response.status_code, body["error"]

    # the client side
    def register(self, app, device_id, **fields) -> dict:
        client_id = self.ok("/user/genId", {"device_id": device_id, "app_key": app["app_key"], **fields})["client_id"]
        token = self.ok("/user/token", {"client_id": client_id})["token"]
        return {"client_id": client_id, "token": token}

    def poll(self, client, ack=None, timeout=0, **extra):
        """timeout=None leaves the parameter out (the server's default applies)."""
        response = self.poll_response(client, ack, timeout, **extra)
        assert response.status_code == 200, ("/comet/poll", response.status_code, response.text)
        body = response.json()
        assert body["ok"] is True
        return body["result"]["messages"]

    def poll_response(self, client, ack=None, timeout=0, **extra):
        """The HTTP answer of a poll, whatever it is."""
        params = {"client_id": client["client_id"], "token": client["token"], **extra}
        if timeout is not None:
            params["timeout"] = timeout
        if ack is not None:
            params["ack"] = ack
        return self.call("/comet/poll", params)

    def new_job(self, app, name="job", job_type="t") -> int:
        return self.ok("/job/genId", {"name": name, "type": job_type}, app)["job_id"]

    def send(self, app, job_id, client, content, msg_type=0, online="false"):
        return self.ok("/publish/private", {"job_id": job_id, "client_id": client["client_id"],
                                            "msg_type": msg_type, "content": content, "online": online}, app)

    def stats(self, app, job_id) -> dict:
        return self.ok("/job/stats", {"job_id": job_id}, app)

    def receive(self, client, count, timeout=15.0) -> list:
        """Polls (acknowledging as it goes) until `count` distinct messages arrived; returns them in order."""
        seen, ordered, ack = set(), [], None
        deadline = time.monotonic() + timeout
        while len(ordered) < count:
            assert time.monotonic() < deadline, f"received {len(ordered)} of {count}"
            for m in self.poll(client, ack=ack, timeout=2):
                ack = m["id"]
                if m["id"] not in seen:
                    seen.add(m["id"])
                    ordered.append(m)
        if ack is not None:
            self.poll(client, ack=ack, timeout=0)
        return ordered


class PrivateRedis:
    """A redis-server of our own on a TCP port, to stop and start under a running hipush."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen([_redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run([_redis_server_binary().replace("redis-server", "redis-cli"), "-p",
                                         str(self.port), "ping"], capture_output=True).stdout.strip() == b"PONG",
                 message="private redis")

    def stop(self):
        self.process.terminate()
        self.process.wait(10)

    def client(self):
        return redis.Redis(port=self.port, socket_timeout=5)


class Relay:
    """A TCP relay on a port of its own to `target_port` on this host, which a test cuts (every connection
    through it dropped, new ones refused: a network partition) and mends again."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.listener = None
        self.connections = []
        self.lock = threading.Lock()

    def mend(self):
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self

    def _accept(self, listener):
        while True:
            try:
                near, _ = listener.accept()
                far = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                return  # cut
            with self.lock:
                self.connections += [near, far]
            for source, sink in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            _drop(end)

    def cut(self):
        _drop(self.listener)
        with self.lock:
            for connection in self.connections:
                _drop(connection)
            self.connections = []


def _drop(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on it
    except OSError:
        pass
    sock.close()

