"""Records in SQL through SQLAlchemy Core: SQLite (embedded default) or MySQL via pymysql.

The schema is created (and later upgraded) under a lock, so several workers
and nodes starting at once never race each other.
"""
import contextlib
import fcntl
import logging
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from ..clock import now_ms

log = logging.getLogger("hipush.db")

SCHEMA_VERSION = 5
Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite autoincrements only INTEGER keys
Counter = sa.BigInteger

metadata = sa.MetaData()
_table_args = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}


def _counters():
    return [
        sa.Column("sent", Counter, nullable=False, server_default="0"),
        sa.Column("arrived", Counter, nullable=False, server_default="0"),
        sa.Column("expired", Counter, nullable=False, server_default="0"),
        sa.Column("failed", Counter, nullable=False, server_default="0"),
        sa.Column("clicked", Counter, nullable=False, server_default="0"),  # (message, client) pairs clicked
        # the last counter flush applied to this row; makes a repeated flush a no-op
        sa.Column("flush_token", sa.String(40)),
    ]


schema_version = sa.Table("hipush_schema", metadata, sa.Column("version", sa.Integer, nullable=False), **_table_args)

# One row, written once when the schema is created: the identity of this installation, also kept in its
# Redis, so that a node never mixes one installation's database with another's Redis.
installation = sa.Table(
    "hipush_installation", metadata,
    sa.Column("installation_id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    **_table_args,
)

apps = sa.Table(
    "apps", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("app_key", sa.String(32), nullable=False, unique=True),
    sa.Column("app_secret", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("sign_policy", sa.String(8), nullable=False, server_default="md5"),  # md5 | hmac
    sa.Column("token_policy", sa.String(8), nullable=False, server_default="open"),  # open | signed
    sa.Column("allowed_origins", sa.Text, nullable=False),
    sa.Column("publish_rate", sa.Integer),  # publish calls per second; NULL: the server default, 0: unlimited
    sa.Column("subscribe_rate", sa.Integer),  # subscribe calls per second; likewise
    sa.Column("jsonp", sa.Boolean, nullable=False, server_default=sa.true()),  # client calls may answer as JSONP
    sa.Column("created_at", sa.BigInteger, nullable=False),
    **_table_args,
)

clients = sa.Table(
    "clients", metadata,
    sa.Column("client_id", sa.String(32), primary_key=True),
    sa.Column("app_id", Id, nullable=False),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("terminal_type", sa.String(16), nullable=False),
    sa.Column("org", sa.String(64)),
    sa.Column("address", sa.String(255)),
    sa.Column("lat", sa.Float),
    sa.Column("lng", sa.Float),
    sa.Column("token_epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_clients_app", "app_id", "client_id"),
    **_table_args,
)

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("app_id", Id, nullable=False, index=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    *_counters(),
    **_table_args,
)

messages = sa.Table(
    "messages", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("app_id", Id, nullable=False, index=True),
    sa.Column("job_id", Id),
    sa.Column("msg_type", sa.SmallInteger, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("content_format", sa.String(8), nullable=False, server_default="text"),  # text | json
    sa.Column("created_at", sa.BigInteger, nullable=False),
    **_table_args,
)

# One row per publish of a message: its delivery id, target, schedule, status and counters.
# A row is the truth for timed pushes: whoever moves it from waiting to sending sends it.
pushes = sa.Table(
    "pushes", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("app_id", Id, nullable=False),
    sa.Column("message_id", Id, nullable=False, index=True),
    sa.Column("job_id", Id),
    sa.Column("target", sa.Text, nullable=False),  # JSON: {"kind": clients|all|tags|org|geo, ...}
    sa.Column("online_only", sa.Boolean, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("push_time", sa.BigInteger, nullable=False),  # unix ms, when it is due
    sa.Column("expires_at", sa.BigInteger, nullable=False),  # unix ms
    # unix ms: when sending finished; while sending, when its sender last showed it is alive (Publisher.retry_stale)
    sa.Column("send_time", sa.BigInteger),
    sa.Column("target_num", Counter, nullable=False, server_default="0"),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    *_counters(),
    sa.Index("ix_pushes_due", "status", "push_time"),
    sa.Index("ix_pushes_app_status", "app_id", "status", "push_time"),
    **_table_args,
)

# Which tags (topics) a push went to, for a tag's history.
push_topics = sa.Table(
    "push_topics", metadata,
    sa.Column("topic_id", Id, primary_key=True),
    sa.Column("push_id", Id, primary_key=True),
    sa.Index("ix_push_topics_push", "push_id"),  # retention deletes a push's links
    **_table_args,
)

topics = sa.Table(
    "topics", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("app_id", Id, nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("info", sa.String(255)),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("app_id", "name", name="uq_topics_app_name"),
    **_table_args,
)

subscriptions = sa.Table(
    "subscriptions", metadata,
    sa.Column("topic_id", Id, primary_key=True),
    sa.Column("client_id", sa.String(32), primary_key=True),
    sa.Index("ix_subscriptions_client", "client_id"),
    **_table_args,
)

# Who may use the operator console (/console): a name and a salted password hash (werkzeug's scrypt).
operators = sa.Table(
    "operators", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    **_table_args,
)

# Every change made through the console or to an operator: who, when, what.
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", sa.BigInteger, nullable=False),  # unix ms
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    **_table_args,
)

COUNTER_TABLES = {"job": jobs, "push": pushes}


def make_engine(url: str) -> sa.Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process. SQLite has one writer at a time and waits for the lock inside C,
        # blocking the whole gevent worker: a second connection of this worker waiting on a transaction that
        # is itself waiting for Redis (a batch of unicasts) would stall the worker until the timeout. With
        # one, the others wait for it in the pool, which yields.
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 15},
                                  poolclass=sa.pool.QueuePool, pool_size=1, max_overflow=0, pool_timeout=30)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    # A kept pool, not overflow connections opened and closed per burst: each new PyMySQL connection
    # builds a TLS context (~20 ms of CPU), which under load cost more than the queries. No pre-ping
    # (a round trip per checkout): a connection found dead fails its one call with 503 and SQLAlchemy
    # then replaces every connection of the pool; pool_recycle stays under MySQL's wait_timeout.
    # No ROLLBACK when a connection goes back to the pool (a round trip per use, after every COMMIT): every use
    # is an engine.begin() that commits or rolls back, or an engine.connect() whose close() rolls back itself.
    return sa.create_engine(parsed, pool_size=20, max_overflow=0, pool_timeout=10, pool_recycle=3600,
                            pool_reset_on_return=None)


@contextlib.contextmanager
def _schema_lock(engine: sa.Engine):
    """One process at a time creates or upgrades the schema."""
    if engine.dialect.name == "mysql":
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT GET_LOCK('hipush_schema', 60)")).scalar() != 1:
                raise RuntimeError("timed out waiting for the schema lock")
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK('hipush_schema')"))
    elif engine.dialect.name == "sqlite" and engine.url.database:
        with open(engine.url.database + ".schema-lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    else:
        yield


# Each step upgrades a database of the version before it (create_all adds new tables itself).
_UPGRADES = {
    2: ["ALTER TABLE apps ADD COLUMN jsonp BOOLEAN NOT NULL DEFAULT 1"],
    3: ["CREATE INDEX ix_push_topics_push ON push_topics (push_id)"],
    4: [f"ALTER TABLE {table} ADD COLUMN clicked BIGINT NOT NULL DEFAULT 0" for table in ("jobs", "pushes")],
    5: [],  # the operators and audit_log tables
}


def ensure_schema(engine: sa.Engine, unreachable_ok: bool = False) -> None:
    """Creates or upgrades the schema. unreachable_ok: a database that does not answer is left as it is (a
    gunicorn worker restarted during an outage: the master made the schema before any worker started, and the
    worker serves what needs no database until it answers)."""
    try:
        _create_or_upgrade(engine)
    except sa.exc.OperationalError as error:
        if not unreachable_ok or reachable(engine):
            raise
        log.warning("the database does not answer (%s): schema not checked by this worker", error)


def _create_or_upgrade(engine: sa.Engine) -> None:
    with _schema_lock(engine):
        metadata.create_all(engine, checkfirst=True)
        with engine.begin() as conn:
            version = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
            if version is None:
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            elif version > SCHEMA_VERSION:
                raise RuntimeError(f"database schema {version} is newer than this hipush ({SCHEMA_VERSION})")
            else:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _UPGRADES[step]:
                        conn.execute(sa.text(statement))
                    conn.execute(schema_version.update().values(version=step))
            if conn.execute(sa.select(sa.func.count()).select_from(installation)).scalar() == 0:
                conn.execute(installation.insert().values(installation_id=uuid.uuid4().hex, created_at=now_ms()))


def reachable(engine: sa.Engine) -> bool:
    """Whether the database answers at all (a failing statement may be its fault or the statement's): a read
    of the one-row schema table, as cheap as SELECT 1, and on SQLite it reaches the file (SELECT 1 does not)."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(schema_version.c.version).limit(1))
    except sa.exc.SQLAlchemyError:
        return False
    return True


def installation_id(engine: sa.Engine) -> str:
    """This database's installation identity (ensure_schema writes it)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(installation.c.installation_id)).scalar_one()


if __name__ == "__main__":
    # `python -m hipush.storage.db`: create or upgrade the schema (gunicorn's master runs hipush.storage.installation,
    # which does this and checks the Redis)
    from hipush import config

    ensure_schema(make_engine(config.load().database_url))
