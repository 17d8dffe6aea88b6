"""The SQL store: every read and write of records goes through this one class."""
import secrets

import sqlalchemy as sa

from .db import COUNTER_TABLES, apps, clients, jobs, messages, now_ms, pushes, subscriptions, topics


def _insert_ignore(table):
    """INSERT that skips rows whose key exists, on both SQLite and MySQL."""
    return sa.insert(table).prefix_with("OR IGNORE", dialect="sqlite").prefix_with("IGNORE", dialect="mysql")


class Store:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def _one(self, query):
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def _insert(self, table, **values) -> int:
        with self.engine.begin() as conn:
            return conn.execute(table.insert().values(**values)).inserted_primary_key[0]

    # apps
    def create_app(self, name: str) -> dict:
        values = dict(
            app_key=secrets.token_hex(12), app_secret=secrets.token_hex(24), name=name,
            sign_policy="md5", token_policy="open", allowed_origins="*", created_at=now_ms(),
        )
        self._insert(apps, **values)
        return values

    def list_apps(self) -> list:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(apps).order_by(apps.c.id)).mappings()]

    def get_app(self, app_key: str):
        return self._one(sa.select(apps).where(apps.c.app_key == app_key))

    def get_app_by_id(self, app_id: int):
        return self._one(sa.select(apps).where(apps.c.id == app_id))

    def update_app(self, app_key: str, **values) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(apps.update().where(apps.c.app_key == app_key).values(**values)).rowcount == 1

    # clients
    def upsert_client(self, client_id: str, app_id: int, device_id: str, **fields) -> None:
        """Registers a client, or updates the fields given for one that exists."""
        given = {k: v for k, v in fields.items() if v is not None}
        with self.engine.begin() as conn:
            conn.execute(_insert_ignore(clients).values(
                client_id=client_id, app_id=app_id, device_id=device_id, created_at=now_ms(),
                **{"terminal_type": "web", **given},
            ))
            if given:
                conn.execute(clients.update().where(clients.c.client_id == client_id).values(**given))

    def get_client(self, client_id: str):
        return self._one(sa.select(clients).where(clients.c.client_id == client_id))

    def update_client(self, client_id: str, **values) -> None:
        with self.engine.begin() as conn:
            conn.execute(clients.update().where(clients.c.client_id == client_id).values(**values))

    def bump_token_epoch(self, client_id: str) -> int:
        with self.engine.begin() as conn:
            conn.execute(clients.update().where(clients.c.client_id == client_id)
                         .values(token_epoch=clients.c.token_epoch + 1))
            return conn.execute(sa.select(clients.c.token_epoch).where(clients.c.client_id == client_id)).scalar()

    def clients_of_app(self, app_id: int, client_ids) -> set:
        """The subset of client_ids that exist and belong to the app."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(clients.c.client_id).where(
                clients.c.app_id == app_id, clients.c.client_id.in_(list(client_ids))))
            return {r[0] for r in rows}

    def iter_app_clients(self, app_id: int, batch: int = 1000):
        """Every client id of an app, in pages (keyset pagination: no long-held cursor)."""
        yield from self._pages(sa.select(clients.c.client_id).where(clients.c.app_id == app_id),
                               clients.c.client_id, batch)

    def _pages(self, query, key, batch):
        last = ""
        while True:
            with self.engine.connect() as conn:
                page = [r[0] for r in conn.execute(query.where(key > last).order_by(key).limit(batch))]
            if page:
                yield page
            if len(page) < batch:
                return
            last = page[-1]

    # jobs, messages, pushes
    def create_job(self, app_id: int, name: str, job_type: str) -> int:
        return self._insert(jobs, app_id=app_id, name=name, type=job_type, created_at=now_ms())

    def get_job(self, app_id: int, job_id: int):
        return self._one(sa.select(jobs).where(jobs.c.id == job_id, jobs.c.app_id == app_id))

    def create_message(self, app_id: int, job_id, msg_type: int, content: str) -> int:
        return self._insert(messages, app_id=app_id, job_id=job_id, msg_type=msg_type,
                            content=content, created_at=now_ms())

    def get_message(self, app_id: int, message_id: int):
        return self._one(sa.select(messages).where(messages.c.id == message_id, messages.c.app_id == app_id))

    def create_push(self, app_id: int, message: dict, target: str, target_value, online_only: bool,
                    status: int, expires_at: int) -> int:
        return self._insert(
            pushes, app_id=app_id, message_id=message["id"], job_id=message["job_id"], target=target,
            target_value=target_value, online_only=online_only, status=status, expires_at=expires_at,
            created_at=now_ms(),
        )

    def finish_push(self, push_id: int, status: int, target_num: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(pushes.update().where(pushes.c.id == push_id)
                         .values(status=status, target_num=target_num, send_time=now_ms()))

    # topics
    def topic_id(self, app_id: int, name: str, create: bool = False):
        query = sa.select(topics.c.id).where(topics.c.app_id == app_id, topics.c.name == name)
        with self.engine.begin() as conn:
            found = conn.execute(query).scalar()
            if found is None and create:
                conn.execute(_insert_ignore(topics).values(app_id=app_id, name=name, created_at=now_ms()))
                found = conn.execute(query).scalar()
        return found

    def subscribe(self, topic_id: int, client_ids) -> None:
        with self.engine.begin() as conn:
            conn.execute(_insert_ignore(subscriptions), [{"topic_id": topic_id, "client_id": c} for c in client_ids])

    def unsubscribe(self, topic_id: int, client_ids) -> None:
        with self.engine.begin() as conn:
            conn.execute(subscriptions.delete().where(
                subscriptions.c.topic_id == topic_id, subscriptions.c.client_id.in_(list(client_ids))))

    def iter_subscribers(self, topic_id: int, batch: int = 1000):
        yield from self._pages(sa.select(subscriptions.c.client_id).where(subscriptions.c.topic_id == topic_id),
                               subscriptions.c.client_id, batch)

    # counters
    def apply_counter_deltas(self, kind: str, row_id: int, deltas: dict, token: str) -> None:
        """Adds deltas to a job's or push's counters once per flush token, however often it is called."""
        table = COUNTER_TABLES[kind]
        changes = {name: table.c[name] + int(value) for name, value in deltas.items()}
        with self.engine.begin() as conn:
            conn.execute(table.update().where(
                table.c.id == row_id, sa.or_(table.c.flush_token.is_(None), table.c.flush_token != token),
            ).values(flush_token=token, **changes))

    def counter_row(self, kind: str, row_id: int):
        table = COUNTER_TABLES[kind]
        return self._one(sa.select(table.c.sent, table.c.arrived, table.c.expired, table.c.failed,
                                   table.c.flush_token).where(table.c.id == row_id))
