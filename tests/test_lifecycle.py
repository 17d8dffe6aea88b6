"""The server's life: stopping (SIGTERM, Ctrl-C) answers parked polls and refuses new ones until the node is
gone, the embedded Redis stops last, queued messages survive a restart, a Redis outage answers 503 / 1031
until Redis is back, with no restart of hipush, and a node that dies or loses its database is no longer
handed out to clients."""
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis
import requests

from hipush import config as config_module
from hipush.storage import keys
from hipush.storage.embedded import EmbeddedRedis
from hipush_client import Admin, Client
from support import (Api, Background, PrivateRedis, Relay, Server, free_port, poll_parked, polls_parked, running,
                     wait_for)


@pytest.fixture
def own_server(backend_env, redis_client):
    servers = []

    def start(**env):
        server = Server({**backend_env, **env}, workers=2).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_sigterm_answers_parked_polls_and_exits_cleanly(own_server, redis_client):
    server = own_server()
    api = Api(server.base)
    client = api.register(server.create_app(), "d")
    answers = []
    poller = threading.Thread(target=lambda: answers.append(Api(server.base).poll(client, timeout=50)))
    poller.start()
    wait_for(lambda: redis_client.exists(keys.client_keys(client["client_id"])["poller"]), message="parked poll")
    server.stop()
    poller.join(20)
    assert answers == [[]]
    assert server.process.returncode == 0


class PollLog(requests.Session):
    """A Python SDK client's HTTP session that notes each /comet/poll: when it was sent and answered, and how."""

    def __init__(self):
        super().__init__()
        self.polls = []

    def get(self, url, **kwargs):
        if not url.endswith("/comet/poll"):
            return super().get(url, **kwargs)
        poll = {"sent": time.monotonic(), "status": None}  # None: no answer (connection refused or cut)
        self.polls.append(poll)
        response = super().get(url, **kwargs)
        poll.update(answered=time.monotonic(), status=response.status_code, headers=response.headers,
                    body=response.json())
        return response


def test_a_stopping_node_refuses_new_polls_so_its_clients_back_off(own_server, redis_client):
    """SIGTERM: parked polls answer (empty) at once; a client polling again, on the same kept-alive connection,
    is told 503 / 1031 with Retry-After and a closed connection instead of an empty answer at once, which
    brought it straight back in a loop until the node's listener closed. The Python SDK waits as asked,
    and once the node is back every client gets what was sent meanwhile."""
    server = own_server()
    app = server.create_app()
    logs = [PollLog() for _ in range(10)]
    clients = [Client(server.base, app_key=app["app_key"], device_id=f"stopping-{n}", discover=False,
                      poll_timeout=30, backoff_cap=2, session=log) for n, log in enumerate(logs)]
    received = [[] for _ in clients]
    done = threading.Event()
    runs = [Background(client.run, got.append, stop_event=done) for client, got in zip(clients, received)]
    wait_for(lambda: polls_parked(redis_client, [c.client_id for c in clients]) == len(clients),
             message="every client parked")

    stopping = time.monotonic()
    server.stop()
    restarting = time.monotonic()
    refusals = []
    for log in logs:
        [released] = [p for p in log.polls if p["sent"] < stopping]
        assert (released["status"], released["body"]) == (200, {"ok": True, "result": {"messages": []}})
        later = [p for p in log.polls if p["sent"] > released["answered"]]
        assert all(p["status"] in (503, None) for p in later), [(p["status"], p.get("body")) for p in later]
        for refusal, following in zip(later, later[1:] + [None]):
            if refusal["status"] == 503:
                refusals.append(refusal)
                # the SDK waits as long as Retry-After asks (or the node came back meanwhile)
                assert (following["sent"] if following else restarting) - refusal["answered"] >= 1
    assert refusals, "no client polled the stopping node again"
    for refusal in refusals:
        assert refusal["body"] == {"error": 1031, "reason": "this node is stopping, poll again shortly"}
        assert refusal["headers"]["Retry-After"] == "1" and refusal["headers"]["Connection"] == "close"
        assert refusal["headers"]["Access-Control-Expose-Headers"] == "Retry-After"  # for the JS SDK

    server.start()  # the same port
    Admin(server.base, app["app_key"], app["app_secret"]).push_terminal([c.client_id for c in clients], "back")
    wait_for(lambda: all(got for got in received), timeout=30, message="every client served after the restart")
    done.set()
    for client, run in zip(clients, runs):
        client.close()
        run.result(timeout=10)
    assert [[m.content for m in got] for got in received] == [["back"]] * len(clients)


@pytest.fixture
def own_data_dir():
    """A data dir of its own, so that the embedded redis-server is the master's (short: it holds a socket)."""
    path = Path(tempfile.mkdtemp(prefix="hp-", dir="/tmp"))
    yield path
    EmbeddedRedis(path).stop()
    shutil.rmtree(path, ignore_errors=True)


def embedded_env(data_dir: Path) -> dict:
    """The embedded default (SQLite and the master's redis-server in data_dir), whatever the run's backend."""
    return {"HIPUSH_DATA_DIR": str(data_dir), "HIPUSH_SECRET_KEY": "test-secret-key-" + data_dir.name,
            "HIPUSH_REDIS_URL": "", "HIPUSH_DATABASE_URL": ""}


class ExitWatch:
    """When each of some processes ended (exited, or a zombie not yet reaped), looked at every 10 ms."""

    def __init__(self, pids: dict):
        self.pids = pids
        self.ended = {}
        self.watch = Background(self._watch)

    def _watch(self):
        while len(self.ended) < len(self.pids):
            for name, pid in self.pids.items():
                if name not in self.ended and not running(pid):
                    self.ended[name] = time.monotonic()
            time.sleep(0.01)

    def result(self, timeout: float) -> dict:
        self.watch.result(timeout)
        return self.ended


def test_ctrl_c_answers_parked_polls_and_stops_the_embedded_redis_last(own_data_dir):
    """`make run`, then Ctrl-C: the terminal's SIGINT reaches gunicorn's master and workers (its foreground
    process group), which drain as on SIGTERM; the embedded redis-server, in a session of its own, runs on
    until the master stops it once the workers are gone. (It used to take the SIGINT too and die first:
    the parked poll answered 503 / 1031, and a worker signalled twice logged a SystemExit traceback.)"""
    server = Server(embedded_env(own_data_dir), workers=2, own_session=True).start()
    try:
        api = Api(server.base)
        app = server.create_app()
        parked_client, waiting_client = api.register(app, "parked"), api.register(app, "waiting")
        api.send(app, api.new_job(app), waiting_client, "queued before Ctrl-C")
        redis_pid = int((own_data_dir / "redis.pid").read_text())
        exits = ExitWatch({"redis-server": redis_pid, **{f"worker {pid}": pid for pid in server.worker_pids()}})
        parked = Background(requests.get, server.base + "/comet/poll", params={**parked_client, "timeout": 50},
                            timeout=60)
        embedded = redis.Redis(unix_socket_path=str(own_data_dir / "redis.sock"))
        wait_for(lambda: poll_parked(embedded, parked_client["client_id"]), message="parked poll")
        embedded.close()
        server.interrupt()
        answer = parked.result(timeout=30)
        assert server.process.wait(30) == 0
    finally:
        server.stop()
    assert (answer.status_code, answer.json()) == (200, {"ok": True, "result": {"messages": []}})
    ended = exits.result(timeout=10)
    assert ended["redis-server"] >= max(ended.values()), ended  # after every worker
    assert not running(redis_pid) and not EmbeddedRedis(own_data_dir).alive()
    redis_log = (own_data_dir / "redis.log").read_text()
    assert "Received SIGTERM" in redis_log and "Received SIGINT" not in redis_log
    log = server.log_path.read_text()
    assert "Traceback" not in log and "redis unavailable" not in log, log[-3000:]

    again = Server(embedded_env(own_data_dir), workers=1).start()  # nothing queued was lost
    try:
        assert [m["content"] for m in Api(again.base).receive(waiting_client, 1)] == ["queued before Ctrl-C"]
    finally:
        again.stop()


def test_a_master_that_dies_takes_its_embedded_redis_with_it(own_data_dir):
    """Out of the terminal's process group, the master's redis-server must not outlive a master killed
    outright (or one that fails to boot): it would hold the data dir with nobody left to stop it."""
    server = Server(embedded_env(own_data_dir), workers=1).start()
    redis_pid = int((own_data_dir / "redis.pid").read_text())
    server.kill()
    wait_for(lambda: not running(redis_pid), message="the embedded redis-server gone with its master")


def test_queued_messages_survive_a_restart(own_server, backend_env):
    server = own_server()
    api = Api(server.base)
    app = server.create_app()
    client = api.register(app, "d")
    job = api.new_job(app)
    api.send(app, job, client, "before restart")
    server.stop()
    again = own_server()
    assert [m["content"] for m in Api(again.base).receive(client, 1)] == ["before restart"]


def test_redis_outage_answers_503_and_recovers_by_itself(own_server):
    private = PrivateRedis()
    private.start()
    try:
        server = own_server(HIPUSH_REDIS_URL=private.url)
        api = Api(server.base)
        app = server.create_app()
        client = api.register(app, "d")
        parked = Background(lambda: requests.get(server.base + "/comet/poll", params={**client, "timeout": 50},
                                                 timeout=60))
        wait_for(lambda: private.client().exists(keys.client_keys(client["client_id"])["poller"]),
                 message="parked poll")
        private.stop()
        assert parked.result(timeout=30).json()["error"] == 1031  # the parked poll answers, not hangs
        response = requests.get(server.base + "/comet/poll", params={**client, "timeout": 0}, timeout=30)
        assert response.status_code == 503
        assert response.json()["error"] == 1031 and "redis" in response.json()["reason"]
        assert api.error("/service/random") == (503, 1031)
        private.start()
        wait_for(lambda: requests.get(server.base + "/service/random", timeout=10).status_code == 200,
                 timeout=30, message="recovery after redis came back")
        job = api.new_job(app)
        api.send(app, job, client, "after the outage")
        assert [m["content"] for m in api.receive(client, 1)] == ["after the outage"]
    finally:
        private.process.poll() is None and private.stop()


def test_a_node_stopped_while_its_redis_is_down_exits_cleanly(backend_env):
    """Its worker cannot leave the node registry (the entry expires by itself): a warning, not a traceback.
    (One worker: start() returns once it answers, so Redis never goes away under a worker still booting.)"""
    private = PrivateRedis()
    private.start()
    try:
        server = Server({**backend_env, "HIPUSH_REDIS_URL": private.url}, workers=1).start()
    finally:
        private.stop()
    server.stop()
    assert server.process.returncode == 0
    log = server.log_path.read_text()
    assert "stopping while redis is unavailable" in log and "Traceback" not in log, log[-3000:]


class PrivateMariaDB:
    """A mariadbd of our own (Debian's binaries) in a temporary directory, to stop and start under hipush."""

    def __init__(self, directory):
        self.directory = directory
        self.port = free_port()
        self.url = f"mysql+pymysql://root@127.0.0.1:{self.port}/hipush"
        self.process = None
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={directory / 'data'}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)

    def start(self):
        self.process = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.directory / 'data'}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.directory / 'sock'}", "--user=root",
             "--skip-grant-tables", "--innodb-buffer-pool-size=16M"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run(["mariadb", "-h127.0.0.1", f"-P{self.port}", "-uroot", "-e",
                                         "CREATE DATABASE IF NOT EXISTS hipush"], capture_output=True).returncode == 0,
                 timeout=60, message="private mariadbd")

    def stop(self):
        self.process.terminate()
        self.process.wait(60)


@pytest.fixture
def private_backend(tmp_path):
    """A mariadbd and a redis-server of the test's own: the Redis too, as job and push ids restart at 1 in a fresh
    database, and counts other tests left in the suite's Redis for their job 1 would be flushed into this one's.
    A test asks for it before own_server, so that its servers stop first."""
    database = PrivateMariaDB(tmp_path)
    database.start()
    private_redis = PrivateRedis()
    private_redis.start()
    yield database, private_redis
    if database.process.poll() is None:
        database.stop()
    private_redis.stop()


def test_database_outage_answers_503_writes_nothing_and_recovers(private_backend, own_server):
    database, private_redis = private_backend
    server = own_server(HIPUSH_DATABASE_URL=database.url, HIPUSH_REDIS_URL=private_redis.url)
    api = Api(server.base)
    app = server.create_app()
    client = api.register(app, "d")
    job = api.new_job(app)
    database.stop()
    assert api.error("/user/genId", {"device_id": "d2", "app_key": app["app_key"]}) == (503, 1031)
    publish = {"job_id": job, "client_id": client["client_id"], "msg_type": 0, "content": "lost?"}
    response = api.call("/publish/private", publish, app)
    assert response.status_code == 503 and "database" in response.json()["reason"]
    database.start()
    wait_for(lambda: api.call("/user/genId", {"device_id": "d2", "app_key": app["app_key"]}).status_code == 200,
             timeout=60, message="recovery after the database came back")
    assert api.poll(client, timeout=0) == []  # the refused publish left nothing behind
    api.send(app, job, client, "after the outage")
    assert [m["content"] for m in api.receive(client, 1)] == ["after the outage"]
    assert wait_for(lambda: api.stats(app, job)["arrived"] == 1 and api.stats(app, job))["sent"] == 1


def test_node_timing_settings_are_read_and_checked():
    env = {"HIPUSH_ENV_FILE": "/nonexistent", "HIPUSH_SECRET_KEY": "k", "HIPUSH_DATA_DIR": tempfile.gettempdir()}
    default = config_module.load(env)
    assert (default.node_heartbeat, default.node_ttl) == (1.0, 5.0)
    tuned = config_module.load({**env, "HIPUSH_NODE_HEARTBEAT": "0.5", "HIPUSH_NODE_TTL": "3"})
    assert (tuned.node_heartbeat, tuned.node_ttl) == (0.5, 3.0)
    for bad, complaint in [({"HIPUSH_NODE_TTL": "soon"}, "HIPUSH_NODE_TTL must be a number"),
                           ({"HIPUSH_NODE_HEARTBEAT": "0"}, "HIPUSH_NODE_HEARTBEAT must be between"),
                           ({"HIPUSH_NODE_HEARTBEAT": "5"}, "at least twice HIPUSH_NODE_HEARTBEAT")]:
        with pytest.raises(config_module.ConfigError, match=complaint):
            config_module.load({**env, **bad})


def node_of(api: Api, client_id: str) -> str:
    """The node ("ip:port") /service/hash names for a client."""
    answer = api.ok("/service/hash", {"client_id": client_id})
    return f"{answer['ip']}:{answer['port']}"


def handed_out(api: Api) -> set:
    """The nodes /service/hash names for 60 random client ids and /service/random names in 30 calls:
    each live comet node is among them (a node missing from all 90 answers has odds below 1e-9)."""
    answers = {node_of(api, secrets.token_hex(16)) for _ in range(60)}
    return answers | {"{ip}:{port}".format(**api.ok("/service/random")) for _ in range(30)}


def test_a_killed_node_is_no_longer_handed_out(own_server):
    survivor, victim = own_server(), own_server()
    api = Api(survivor.base)
    address = f"127.0.0.1:{victim.port}"
    wait_for(lambda: address in handed_out(api), message="both nodes handed out")
    client_id = next(c for c in iter(lambda: secrets.token_hex(16), None) if node_of(api, c) == address)
    victim.kill()  # SIGKILL: no goodbye from the node
    killed = time.monotonic()
    # the deadline is twice the default HIPUSH_NODE_TTL (5 s), the most a dead node stays live
    wait_for(lambda: node_of(api, client_id) != address, timeout=10, message="the killed node dropped")
    print(f"a killed node left /service/hash {time.monotonic() - killed:.1f} s after its processes were gone")
    still = handed_out(api)
    assert address not in still and f"127.0.0.1:{survivor.port}" in still


def test_a_node_whose_database_is_unreachable_stops_advertising_itself(private_backend, own_server):
    """Two nodes on one Redis and database; the second reaches the database through a relay that is cut (a network
    partition between that node and its database) and mended again."""
    database, private_redis = private_backend
    relay = Relay(database.port).mend()
    healthy = own_server(HIPUSH_REDIS_URL=private_redis.url, HIPUSH_DATABASE_URL=database.url)
    cut_off = own_server(HIPUSH_REDIS_URL=private_redis.url, HIPUSH_DATABASE_URL=database.url.replace(
        f":{database.port}/", f":{relay.port}/"))
    api = Api(healthy.base)
    wait_for(lambda: len(handed_out(api)) == 2, message="both nodes handed out")
    relay.cut()
    wait_for(lambda: handed_out(api) == {f"127.0.0.1:{healthy.port}"}, timeout=30, interval=0.2,
             message="the node cut off from its database dropped")
    # a worker restarted now boots while the database does not answer (under load, gunicorn's timeout restarts
    # workers): it must come up, not stop the whole node with "Worker failed to boot"
    killed = cut_off.worker_pids()[0]
    cut_off.kill_worker(killed)

    def booted_during_the_outage():
        log = cut_off.log_path.read_text()
        return any(f"{pid} WARNING hipush.db: the database does not answer" in log
                   for pid in cut_off.worker_pids() if pid != killed)
    wait_for(booted_during_the_outage, timeout=30, message="a worker booted in its place during the outage")
    relay.mend()
    wait_for(lambda: len(handed_out(api)) == 2, timeout=60, interval=0.2,
             message="the node back once its database answers")
