"""The SQL store's contract, run on whichever backend this run uses (SQLite or MySQL)."""
import subprocess
import sys
import uuid

import sqlalchemy as sa

from hipush.storage import db
from support import ROOT


def new_app(store):
    return store.get_app(store.create_app("contract")["app_key"])


def test_apps_are_created_found_and_updated(store):
    app = new_app(store)
    assert app["sign_policy"] == "md5" and app["token_policy"] == "open" and app["allowed_origins"] == "*"
    assert store.update_app(app["app_key"], token_policy="signed")
    assert store.get_app(app["app_key"])["token_policy"] == "signed"
    assert store.get_app("missing") is None
    assert not store.update_app("missing", token_policy="signed")


def test_registering_a_client_twice_keeps_the_first_row_as_it_is(store):
    app = new_app(store)
    cid = uuid.uuid4().hex
    assert store.add_client(cid, app["id"], "dev", terminal_type=None, org="o1", address=None, lat=None, lng=None)
    assert not store.add_client(cid, app["id"], "dev", terminal_type="email", org=None, address="a@b.c", lat=1.5,
                                lng=2.5)
    client = store.get_client(cid)
    assert (client["terminal_type"], client["org"], client["address"], client["lat"]) == ("web", "o1", None, None)
    assert store.bump_token_epoch(cid) == 1


def test_listing_and_deleting_clients(store):
    app, other = new_app(store), new_app(store)
    mine = sorted(uuid.uuid4().hex for _ in range(5))
    for i, cid in enumerate(mine):
        store.add_client(cid, app["id"], cid, org=f"o{i % 2}", terminal_type="sms" if i == 4 else None)
    store.add_client(uuid.uuid4().hex, other["id"], "foreign", org="o0")
    topic = store.topic_id(app["id"], "t", create=True)
    store.subscribe(topic, mine[:3])
    assert [(total, [r["client_id"] for r in rows]) for total, rows in [
        store.list_clients(app["id"], 1, 2), store.list_clients(app["id"], 0, 10, topic_id=topic),
        store.list_clients(app["id"], 0, 10, org="o0", terminal_type="web")]] == [
        (5, mine[1:3]), (3, mine[:3]), (2, [mine[0], mine[2]])]
    store.delete_clients(app["id"], mine[1:2])
    store.delete_clients(other["id"], mine[2:3])  # not that app's: nothing happens
    assert store.get_client(mine[1]) is None and store.count_subscribers(topic) == 2
    assert store.list_clients(app["id"], 0, 10)[0] == 4


def test_clients_of_app_and_paging_see_only_the_app(store):
    app, other = new_app(store), new_app(store)
    mine = sorted(uuid.uuid4().hex for _ in range(7))
    for cid in mine:
        store.add_client(cid, app["id"], cid)
    foreign = uuid.uuid4().hex
    store.add_client(foreign, other["id"], foreign)
    assert store.clients_of_app(app["id"], mine + [foreign]) == set(mine)
    pages = [[row[0] for row in page] for page in store.iter_app_clients(app["id"], batch=3)]
    assert pages == [mine[:3], mine[3:6], mine[6:]]


def test_topics_and_subscriptions_ignore_repeats(store):
    app = new_app(store)
    topic = store.topic_id(app["id"], "news", create=True)
    assert store.topic_id(app["id"], "news", create=True) == topic
    assert store.topic_id(app["id"], "other") is None
    members = sorted(uuid.uuid4().hex for _ in range(3))
    for cid in members:
        store.add_client(cid, app["id"], cid)
    store.subscribe(topic, members)
    store.subscribe(topic, members[:1])
    store.unsubscribe(topic, members[2:])
    assert [row[0] for page in store.iter_topic_clients([topic]) for row in page] == members[:2]


def test_counter_deltas_apply_once_per_token(store):
    app = new_app(store)
    job = store.create_job(app["id"], "j", "t")
    store.apply_counter_deltas([("job", job, "t1", {"sent": 3, "arrived": 1})])
    store.apply_counter_deltas([("job", job, "t1", {"sent": 3, "arrived": 1})])  # a retried flush
    store.apply_counter_deltas([("job", job, "t2", {"sent": 2})])
    row = store.counter_row("job", job)
    assert (row["sent"], row["arrived"], row["expired"], row["flush_token"]) == (5, 1, 0, "t2")


def test_a_flush_of_many_rows_applies_each_once_with_its_own_deltas(store):
    """Rows are applied in a few UPDATEs (per kind, token and 200 rows): each row still gets exactly its counts."""
    app = new_app(store)
    jobs = [store.create_job(app["id"], "j", "t") for _ in range(450)]
    first = [("job", job, "a", {"sent": i + 1, "arrived": i % 3}) for i, job in enumerate(jobs)]
    store.apply_counter_deltas(first)
    store.apply_counter_deltas(first[100:300])  # a flush retried after a crash: already applied
    store.apply_counter_deltas([("job", jobs[0], "a", {"sent": 50}),  # token "a" already applied: skipped
                                ("job", jobs[1], "b", {"expired": 7}), ("job", jobs[2], "c", {"failed": 1})])
    rows = [store.counter_row("job", job) for job in jobs]
    assert [(r["sent"], r["arrived"]) for r in rows] == [(i + 1, i % 3) for i in range(450)]
    assert [(r["expired"], r["failed"], r["flush_token"]) for r in rows[:4]] == \
        [(0, 0, "a"), (7, 0, "b"), (0, 1, "c"), (0, 0, "a")]


def test_schema_creation_is_safe_when_processes_start_together(test_config, tmp_path):
    env_url = test_config.database_url if not test_config.database_url.startswith("sqlite") \
        else f"sqlite:///{tmp_path / 'fresh.db'}"
    processes = [subprocess.Popen([sys.executable, "-m", "hipush.storage.db"], cwd=ROOT,
                                  env={"HIPUSH_DATABASE_URL": env_url, "HIPUSH_DATA_DIR": str(tmp_path),
                                       "PATH": "/usr/bin:/bin"}, stderr=subprocess.PIPE)
                 for _ in range(4)]
    for p in processes:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()


# what each schema step added, undone to make a database of the version before it
_UNDO = {3: ["DROP INDEX ix_push_topics_push"],
         4: [f"ALTER TABLE {table} DROP COLUMN clicked" for table in ("jobs", "pushes")],
         5: ["DROP TABLE audit_log", "DROP TABLE operators"]}


def _database_of_version(path, version: int, *statements):
    """An SQLite database as hipush `version` left it, with `statements` run on it."""
    engine = db.make_engine(f"sqlite:///{path}")
    db.ensure_schema(engine)
    with engine.begin() as conn:
        for step in range(db.SCHEMA_VERSION, version, -1):
            for statement in _UNDO[step]:
                conn.execute(sa.text(statement))
        for statement in statements:
            conn.execute(sa.text(statement))
        conn.execute(db.schema_version.update().values(version=version))
    return engine


def _upgraded_version(engine) -> int:
    db.ensure_schema(engine)
    with engine.connect() as conn:
        return conn.execute(sa.select(db.schema_version.c.version)).scalar()


def test_a_version_2_database_gets_the_push_topics_index(tmp_path):
    """Schema 3 adds ix_push_topics_push (retention deletes a push's tag links by it) to a database of version 2."""
    engine = _database_of_version(tmp_path / "v2.db", 2)
    assert _upgraded_version(engine) == db.SCHEMA_VERSION
    assert "ix_push_topics_push" in {index["name"] for index in sa.inspect(engine).get_indexes("push_topics")}
    engine.dispose()


def test_a_version_3_database_gets_the_clicked_counters(tmp_path):
    """Schema 4 adds `clicked` to jobs and pushes; the rows there keep their counts and click from 0."""
    engine = _database_of_version(tmp_path / "v3.db", 3,
                                  "INSERT INTO jobs (app_id, name, type, created_at, sent) VALUES (1, 'j', 't', 0, 5)")
    assert _upgraded_version(engine) == db.SCHEMA_VERSION == 5
    assert "clicked" in {column["name"] for column in sa.inspect(engine).get_columns("pushes")}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT sent, clicked FROM jobs")).one() == (5, 0)
    engine.dispose()
