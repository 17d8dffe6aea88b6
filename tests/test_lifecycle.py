"""The server's life: stopping answers parked polls, queued messages survive a restart,
a Redis outage answers 503 / 1031 until Redis is back, with no restart of hipush, and a node
that dies or loses its database is no longer handed out to clients."""
import secrets
import subprocess
import tempfile
import threading
import time

import pytest
import requests

from hipush import config as config_module
from hipush.storage import keys
from support import Api, Background, PrivateRedis, Relay, Server, free_port, wait_for


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
    own_server(HIPUSH_REDIS_URL=private_redis.url, HIPUSH_DATABASE_URL=database.url.replace(
        f":{database.port}/", f":{relay.port}/"))
    api = Api(healthy.base)
    wait_for(lambda: len(handed_out(api)) == 2, message="both nodes handed out")
    relay.cut()
    wait_for(lambda: handed_out(api) == {f"127.0.0.1:{healthy.port}"}, timeout=30, interval=0.2,
             message="the node cut off from its database dropped")
    relay.mend()
    wait_for(lambda: len(handed_out(api)) == 2, timeout=60, interval=0.2,
             message="the node back once its database answers")
