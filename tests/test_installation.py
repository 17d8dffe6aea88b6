"""An installation's database and its Redis carry one identity: a node refuses a Redis of another
installation (the state of the two never mixes), adopts an empty one, and `app.py reset-redis` resolves a
refusal. Each test has a Redis of its own (spare_redis) and databases of its own."""
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hipush import config as config_module
from hipush.services import Services
from hipush.storage import db, keys
from hipush.storage.installation import InstallationMismatch, without_password
from hipush.storage.store import Store
from support import ROOT, Api, Server, wait_for


@pytest.fixture
def new_database(test_config, tmp_path):
    """new_database(name): the URL of an empty database of the run's kind: a SQLite file of the test's, or a
    MariaDB database named after the run's (test_h1 -> test_h1b), dropped after the test."""
    made = []
    server_url = make_url(test_config.database_url)

    def make(name):
        if server_url.get_backend_name() == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        url = server_url.set(database=f"{server_url.database}{name}")
        with sa.create_engine(server_url.set(database="")).begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{url.database}`"))
            conn.execute(sa.text(f"CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4"))
        made.append(url.database)
        return url.render_as_string(hide_password=False)

    yield make
    if made:
        with sa.create_engine(server_url.set(database="")).begin() as conn:
            for name in made:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture
def node_env(backend_env, spare_redis):
    """node_env(database_url): a node's settings with the test's own Redis and the given database."""
    return lambda database_url: {**backend_env, "HIPUSH_REDIS_URL": spare_redis.url,
                                 "HIPUSH_DATABASE_URL": database_url}


@pytest.fixture
def servers():
    started = []

    def start(env):
        started.append(Server(env, workers=1))
        return started[-1].start()

    yield start
    for server in started:
        server.stop()


def identity(database_url) -> str:
    engine = db.make_engine(database_url)
    try:
        return db.installation_id(engine)
    finally:
        engine.dispose()


def refused_start(env) -> str:
    """Starts a node that must refuse: returns its log after checking it exited 1 before any worker booted."""
    server = Server(env, workers=1)
    with pytest.raises(AssertionError, match="server exited"):
        server.start()
    log = server.log_path.read_text()
    assert server.process.returncode == 1
    assert "Booting worker" not in log and "Traceback" not in log
    return log


def reset_redis(env, answer: str):
    """`python app.py reset-redis`, answering its question."""
    return subprocess.run([sys.executable, "app.py", "reset-redis"], cwd=ROOT, env={**os.environ, **env},
                          input=answer + "\n", capture_output=True, text=True, timeout=60)


def publish(api, app, client, content, **params) -> dict:
    job = api.new_job(app)
    response = api.call("/publish/private", {"job_id": job, "client_id": client["client_id"], "msg_type": 0,
                                             "content": content, **params}, app, method="POST")
    assert response.status_code == 200, response.text
    return {"job": job, **response.json()}


def test_a_redis_of_another_installation_is_refused_until_reset_redis(new_database, node_env, servers, spare_redis):
    old_url, new_url = new_database("b"), new_database("c")
    old = servers(node_env(old_url))
    assert spare_redis.get(keys.INSTALLATION).decode() == identity(old_url)  # an empty Redis is adopted
    api = Api(old.base)
    app = old.create_app()
    client = api.register(app, "d")
    stored = publish(api, app, client, "of the old installation", idempotency_key="once")
    wait_for(lambda: api.stats(app, stored["job"])["sent"] == 1)
    old.stop()

    log = refused_start(node_env(new_url))
    assert "hipush refuses to start" in log
    assert f"belongs to hipush installation {identity(old_url)}" in log
    assert f"is installation {identity(new_url)}" in log
    assert f"Redis {spare_redis.url} " in log and f"database {new_url} " in log
    assert "python app.py reset-redis" in log
    # in-process use (and each worker) checks too
    with pytest.raises(InstallationMismatch, match="python app.py reset-redis"):
        Services(config_module.load({**node_env(new_url), "HIPUSH_ENV_FILE": "/nonexistent"}, background=False))

    # reset-redis asks first: any other answer deletes nothing
    no = reset_redis(node_env(new_url), "no")
    assert no.returncode == 1 and "nothing deleted" in no.stderr
    assert spare_redis.get(keys.INSTALLATION).decode() == identity(old_url)
    confirmed = reset_redis(node_env(new_url), identity(new_url))
    assert confirmed.returncode == 0, confirmed.stderr
    assert f"now belongs to installation {identity(new_url)}" in confirmed.stdout

    new = servers(node_env(new_url))
    api = Api(new.base)
    app = new.create_app()  # app 1, job 1, push 1 again, in a database of their own
    client = api.register(app, "d")
    fresh = publish(api, app, client, "of the new installation", idempotency_key="once")
    assert fresh["job"] == stored["job"]
    # sent, not answered with the old app 1's stored answer
    assert [m["content"] for m in api.receive(client, 1)] == ["of the new installation"]
    wait_for(lambda: api.stats(app, fresh["job"])["arrived"] == 1)
    assert api.stats(app, fresh["job"])["sent"] == 1  # the old job 1's count is not added


def test_reset_redis_with_yes_deletes_only_hipush_keys(new_database, node_env, servers, spare_redis):
    servers(node_env(new_database("b"))).stop()
    spare_redis.set("not-hipush", "kept")
    refused = Server(node_env(new_database("c")))
    assert "deleted" in refused.cli("reset-redis", "--yes")
    assert spare_redis.get("not-hipush") == b"kept"
    assert spare_redis.keys("hp:*") == [keys.INSTALLATION.encode()]
    servers(refused.env)


def test_an_empty_redis_is_adopted_and_the_queued_messages_it_lost_are_logged(new_database, node_env, servers,
                                                                               spare_redis):
    url = new_database("b")
    node = servers(node_env(url))
    api = Api(node.base)
    app = node.create_app()
    client = api.register(app, "d")  # never polls: its message stays queued
    sent = publish(api, app, client, "queued")
    engine = db.make_engine(url)
    wait_for(lambda: Store(engine).counter_row("job", sent["job"])["sent"] == 1, message="the count in SQL")
    engine.dispose()
    node.stop()
    spare_redis.flushdb()  # a Redis restarted without persistence

    again = servers(node_env(url))
    log = again.log_path.read_text()
    assert f"now belongs to installation {identity(url)}" in log
    assert "held no hipush data, so messages that were queued are lost: 1 unexpired pushes" in log
    assert spare_redis.get(keys.INSTALLATION).decode() == identity(url)


def test_hipush_keys_without_an_identity_are_refused_unless_the_database_is_from_before_identities(
        new_database, node_env, servers, spare_redis):
    url = new_database("b")
    node = servers(node_env(url))
    api = Api(node.base)
    app = node.create_app()
    client = api.register(app, "d")
    publish(api, app, client, "queued before the upgrade")
    node.stop()
    spare_redis.delete(keys.INSTALLATION)  # the Redis of a hipush from before identities

    log = refused_start(node_env(new_database("c")))  # a new database: whose data that is, nobody knows
    assert "holds hipush data (keys hp:*) but no installation identity" in log

    engine = db.make_engine(url)
    with engine.begin() as conn:  # the database of a hipush from before identities: no identity row
        conn.execute(db.installation.delete())
    engine.dispose()
    upgraded = servers(node_env(url))  # the upgrade gives the database an identity, and the Redis the same
    assert spare_redis.get(keys.INSTALLATION).decode() == identity(url)
    assert [m["content"] for m in Api(upgraded.base).receive(client, 1)] == ["queued before the upgrade"]


def test_urls_are_named_without_their_password():
    assert without_password("redis://:s3cret@redis.example:6379/1") == "redis://redis.example:6379/1"
    assert without_password("mysql+pymysql://hipush:s3cret@db/hipush") == "mysql+pymysql://hipush@db/hipush"
    assert without_password("unix:///var/hipush/redis.sock") == "unix:///var/hipush/redis.sock"
