"""GET /healthz and /readyz as a load balancer sees them: ready while this node's Redis and database answer,
503 / 1031 naming the one that does not, back by itself once it answers again, and 503 first when the node is
stopping, so that it is drained."""
import http.client
import json
import signal

import pytest
import requests

from hipush.storage import keys
from support import PrivateRedis, Relay, Server, wait_for
from test_lifecycle import PrivateMariaDB


@pytest.fixture(scope="module")
def backing(tmp_path_factory):
    """A redis-server and a mariadbd of the module's own, the database reached through a relay to cut."""
    database = PrivateMariaDB(tmp_path_factory.mktemp("mariadb"))
    database.start()
    private_redis = PrivateRedis()
    private_redis.start()
    relay = Relay(database.port).mend()
    yield private_redis, relay
    private_redis.stop()
    database.stop()


@pytest.fixture(scope="module")
def node(backend_env, backing):
    private_redis, relay = backing
    server = Server({**backend_env, "HIPUSH_REDIS_URL": private_redis.url,
                     "HIPUSH_DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:{relay.port}/hipush"}, workers=1).start()
    yield server
    server.stop()


def readiness(node):
    """(status, body) of GET /readyz."""
    response = requests.get(node.base + "/readyz", timeout=30)
    return response.status_code, response.json()


def test_healthz_and_readyz(node):
    response = requests.get(node.base + "/healthz", timeout=10)
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert readiness(node) == (200, {"ok": True})


def test_not_ready_while_redis_is_down(node, backing):
    private_redis, _ = backing
    private_redis.stop()
    status, body = wait_for(lambda: (r := readiness(node))[0] == 503 and r, message="readyz 503")
    assert body["error"] == 1031 and "redis" in body["reason"] and "database" not in body["reason"], body
    assert requests.get(node.base + "/healthz", timeout=10).status_code == 200  # the process still serves
    private_redis.start()
    wait_for(lambda: readiness(node) == (200, {"ok": True}), message="ready again with redis back")


def test_not_ready_while_the_database_is_unreachable(node, backing):
    _, relay = backing
    relay.cut()
    status, body = wait_for(lambda: (r := readiness(node))[0] == 503 and r, message="readyz 503")
    assert body["error"] == 1031 and "the database" in body["reason"] and "redis" not in body["reason"], body
    relay.mend()
    wait_for(lambda: readiness(node) == (200, {"ok": True}), timeout=30, message="ready again with the database")


def test_a_stopping_node_is_not_ready(node, backing):
    """A load balancer's kept-alive connection: once the worker has begun its graceful stop (it has left the node
    registry), /readyz answers 503 on it."""
    private_redis, _ = backing
    registry = private_redis.client()
    addr = f"127.0.0.1:{node.port}"
    wait_for(lambda: registry.zscore(keys.NODES, addr) is not None, message="the node registered")
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    connection.request("GET", "/readyz")
    assert connection.getresponse().read() == b'{"ok":true}'
    node.process.send_signal(signal.SIGTERM)
    wait_for(lambda: registry.zscore(keys.NODES, addr) is None, message="the stopping node left the registry")
    connection.request("GET", "/readyz")  # within the keep-alive time of the answer above (2 s)
    response = connection.getresponse()
    assert response.status == 503
    assert json.loads(response.read()) == {"error": 1031, "reason": "not ready: this node is stopping"}
    connection.close()
    node.process.wait(30)
