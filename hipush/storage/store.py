"""The SQL store: every read and write of records goes through this one class."""
import heapq
import secrets
from collections import defaultdict

import sqlalchemy as sa

from ..clock import now_ms
from . import db
from .counters import COUNTER_FIELDS
from .db import (COUNTER_TABLES, apps, audit_log, clients, installation, jobs, messages, operators,
                 push_topics, pushes, subscriptions, topics)

TARGET_COLUMNS = (clients.c.client_id, clients.c.terminal_type, clients.c.address)
COUNTER_ROWS_PER_UPDATE = 200
NO_STATEMENT_CACHE = {"compiled_cache": None}


def _insert_ignore(table):
    """INSERT that skips rows whose key exists, on both SQLite and MySQL."""
    return sa.insert(table).prefix_with("OR IGNORE", dialect="sqlite").prefix_with("IGNORE", dialect="mysql")


# Statements of the publish path, built once: building a statement costs more than its (cached) compile.
_INSERT_RETURNING_ID = {table.name: table.insert().returning(table.c.id, sort_by_parameter_order=True)
                        for table in (messages, pushes)}
_TARGET_ROWS_OF_IDS = sa.select(clients.c.app_id, *TARGET_COLUMNS).where(
    clients.c.client_id.in_(sa.bindparam("ids", expanding=True)))


def _insert_many(conn, table, rows: list) -> list:
    """Ids of the rows inserted, in order: one INSERT ... RETURNING where the database has it (SQLite, MariaDB)."""
    if not rows:
        return []
    if conn.dialect.insert_returning and conn.dialect.use_insertmanyvalues:
        return list(conn.execute(_INSERT_RETURNING_ID[table.name], rows).scalars())
    return [conn.execute(table.insert().values(**row)).inserted_primary_key[0] for row in rows]


def _counter_update(table: str, token: str, rows: list):
    """One UPDATE adding each row's deltas, skipped for rows that already carry the token. Written as text:
    building it as an expression costs more than running it (ids and deltas are ints, the token is bound).
    Every one is new text: run it with NO_STATEMENT_CACHE, or each would fill the engine's statement cache."""
    assignments = []
    for name in COUNTER_FIELDS:
        cases = " ".join(f"WHEN {row_id} THEN {int(deltas[name])}" for row_id, deltas in rows if deltas.get(name))
        if cases:
            assignments.append(f"{name} = {name} + CASE id {cases} ELSE 0 END")
    ids = ",".join(str(row_id) for row_id, _ in rows)
    return sa.text(f"UPDATE {table} SET flush_token = :token, {', '.join(assignments)} "
                   f"WHERE id IN ({ids}) AND (flush_token IS NULL OR flush_token != :token)"), {"token": token}


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
        return self.get_app(values["app_key"])

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
    def add_client(self, client_id: str, app_id: int, device_id: str, **fields) -> bool:
        """Registers a client with the fields given (None: the default); one that exists is left as it is.
        True when it was added."""
        given = {k: v for k, v in fields.items() if v is not None}
        with self.engine.begin() as conn:
            return conn.execute(_insert_ignore(clients).values(
                client_id=client_id, app_id=app_id, device_id=device_id, created_at=now_ms(),
                **{"terminal_type": "web", **given},
            )).rowcount == 1

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

    def list_clients(self, app_id: int, start: int, limit: int, topic_id=None, org=None, terminal_type=None):
        """(total, rows) of the app's clients, by client id; optionally only the topic's subscribers, an org's
        clients, or a terminal type's."""
        query = sa.select(clients).where(clients.c.app_id == app_id)
        if topic_id is not None:
            query = query.where(clients.c.client_id.in_(
                sa.select(subscriptions.c.client_id).where(subscriptions.c.topic_id == topic_id)))
        if org is not None:
            query = query.where(clients.c.org == org)
        if terminal_type is not None:
            query = query.where(clients.c.terminal_type == terminal_type)
        return self._page(query, clients.c.client_id, start, limit)

    def delete_clients(self, app_id: int, client_ids) -> None:
        """Deletes the app's clients among client_ids, and their subscriptions."""
        mine = clients.c.app_id == app_id, clients.c.client_id.in_(list(client_ids))
        with self.engine.begin() as conn:
            conn.execute(subscriptions.delete().where(
                subscriptions.c.client_id.in_(sa.select(clients.c.client_id).where(*mine))))
            conn.execute(clients.delete().where(*mine))

    def clients_of_app(self, app_id: int, client_ids) -> set:
        """The subset of client_ids that exist and belong to the app."""
        return {row[0] for row in self.client_rows(app_id, client_ids)}

    def client_rows(self, app_id: int, client_ids) -> list:
        """(client_id, terminal_type, address) of those client_ids that belong to the app."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(*TARGET_COLUMNS).where(
                clients.c.app_id == app_id, clients.c.client_id.in_(list(client_ids))))]

    def iter_app_clients(self, app_id: int, batch: int = 1000):
        """Every client of an app as (client_id, terminal_type, address), in pages."""
        yield from self._pages(sa.select(*TARGET_COLUMNS).where(clients.c.app_id == app_id), batch)

    def iter_topic_clients(self, topic_ids, batch: int = 1000):
        """Subscribers of any of the topics, each once: each topic's subscribers walked on its own key (a join
        on the subscriptions primary key, no sort), the sorted walks merged and their repeats dropped."""
        walks = [self._rows(self._pages(
            sa.select(*TARGET_COLUMNS).select_from(subscriptions.join(clients, clients.c.client_id ==
                                                                      subscriptions.c.client_id))
            .where(subscriptions.c.topic_id == topic_id), batch, subscriptions.c.client_id)) for topic_id in topic_ids]
        page, last = [], None
        for row in heapq.merge(*walks, key=lambda r: r[0]):
            if row[0] != last:
                page.append(row)
                last = row[0]
                if len(page) == batch:
                    yield page
                    page = []
        if page:
            yield page

    @staticmethod
    def _rows(pages):
        for page in pages:
            yield from page

    def iter_org_clients(self, app_id: int, orgs, terminal_types, batch: int = 1000):
        """Clients of the app in any of `orgs` with any of `terminal_types` (None: any)."""
        query = sa.select(*TARGET_COLUMNS).where(clients.c.app_id == app_id)
        if orgs is not None:
            query = query.where(clients.c.org.in_(orgs))
        if terminal_types is not None:
            query = query.where(clients.c.terminal_type.in_(terminal_types))
        yield from self._pages(query, batch)

    def _pages(self, query, batch, key=clients.c.client_id):
        """Keyset pagination on a client id column: no cursor is held open between pages."""
        last = ""
        while True:
            with self.engine.connect() as conn:
                page = [tuple(r) for r in conn.execute(query.where(key > last).order_by(key).limit(batch))]
            if page:
                yield page
            if len(page) < batch:
                return
            last = page[-1][0]

    # jobs, messages, pushes
    def create_job(self, app_id: int, name: str, job_type: str) -> int:
        return self._insert(jobs, app_id=app_id, name=name, type=job_type, created_at=now_ms())

    def get_job(self, app_id: int, job_id: int):
        return self._one(sa.select(jobs).where(jobs.c.id == job_id, jobs.c.app_id == app_id))

    def create_message(self, app_id: int, job_id, msg_type: int, content: str, content_format="text") -> int:
        return self._insert(messages, app_id=app_id, job_id=job_id, msg_type=msg_type,
                            content=content, content_format=content_format, created_at=now_ms())

    def list_jobs(self, app_id: int, start: int, limit: int):
        """(total, rows) of the app's jobs, newest first."""
        return self._page(sa.select(jobs).where(jobs.c.app_id == app_id), jobs.c.id.desc(), start, limit)

    def get_message(self, app_id: int, message_id: int):
        return self._one(sa.select(messages).where(messages.c.id == message_id, messages.c.app_id == app_id))

    def create_push(self, push: dict, topic_ids=(), message: dict = None) -> int:
        """Records a push (and, when given without an id, its new message first, in the same transaction)."""
        with self.engine.begin() as conn:
            if message is not None:
                message["id"] = conn.execute(messages.insert().values(
                    app_id=push["app_id"], created_at=now_ms(), **message)).inserted_primary_key[0]
                push["message_id"] = message["id"]
            push_id = conn.execute(pushes.insert().values(**push, created_at=now_ms())).inserted_primary_key[0]
            if topic_ids:
                conn.execute(push_topics.insert(), [{"topic_id": t, "push_id": push_id} for t in topic_ids])
        return push_id

    def record_sends(self, sends: list, whole: bool = False) -> list:
        """sends: (push, message, client ids) each. Records every push (and its message, if new: without an id)
        in one transaction and returns each one's target rows. A push naming a client that is gone (deleted
        since Targets.check found it) is not recorded: its rows are None, and it gets no id; whole: then none
        is recorded."""
        with self.engine.begin() as conn:
            wanted = {client_id for _, _, client_ids in sends for client_id in client_ids}
            found = {r[1]: (r[0], tuple(r[1:])) for r in conn.execute(_TARGET_ROWS_OF_IDS, {"ids": list(wanted)})}
            rows_of = []
            for push, _, client_ids in sends:
                named = dict.fromkeys(client_ids)
                rows = [found[c][1] for c in named if found.get(c, (None,))[0] == push["app_id"]]
                rows_of.append(rows if len(rows) == len(named) else None)
            if whole and None in rows_of:
                return rows_of
            recorded = [(push, message, rows) for (push, message, _), rows in zip(sends, rows_of) if rows is not None]
            now = now_ms()
            new = [(push, message) for push, message, _ in recorded if "id" not in message]
            ids = _insert_many(conn, messages, [{"app_id": push["app_id"], "created_at": now, **message}
                                                for push, message in new])
            for (push, message), message_id in zip(new, ids):
                message["id"] = push["message_id"] = message_id
            for push, _, rows in recorded:
                push.update(target_num=len(rows), send_time=now, created_at=now)
            for (push, _, _), push_id in zip(recorded, _insert_many(conn, pushes, [r[0] for r in recorded])):
                push["id"] = push_id
        return rows_of

    def move_pushes(self, push_ids, from_status: int, to_status: int) -> None:
        """Changes the status of those of the pushes that still have `from_status`."""
        if push_ids:
            with self.engine.begin() as conn:
                conn.execute(pushes.update().where(pushes.c.id.in_(list(push_ids)), pushes.c.status == from_status)
                             .values(status=to_status))

    def stale_pushes(self, status: int, touched_before: int, limit: int) -> list:
        """(id, send_time) of up to `limit` pushes with `status` whose send_time is older than `touched_before`."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(pushes.c.id, pushes.c.send_time).where(
                pushes.c.status == status, pushes.c.send_time < touched_before).limit(limit))]

    def touch_push(self, push_id: int, status: int, send_time: int, now: int) -> bool:
        """Sets a push's send_time to `now` if it still has `status` and `send_time`: a compare-and-set that
        one sender wins (Publisher.retry_stale)."""
        with self.engine.begin() as conn:
            return conn.execute(pushes.update().where(
                pushes.c.id == push_id, pushes.c.status == status, pushes.c.send_time == send_time)
                .values(send_time=now)).rowcount == 1

    def get_push(self, push_id: int):
        return self._one(sa.select(pushes).where(pushes.c.id == push_id))

    def move_push(self, push_id: int, from_status: int, to_status: int, app_id=None, send_time=None) -> bool:
        """Changes a push's status (and send_time, if given) only if it still has `from_status`: the claim that
        makes firing exactly-once."""
        query = pushes.update().where(pushes.c.id == push_id, pushes.c.status == from_status)
        if app_id is not None:
            query = query.where(pushes.c.app_id == app_id)
        values = {"status": to_status} if send_time is None else {"status": to_status, "send_time": send_time}
        with self.engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount == 1

    def finish_push(self, push_id: int, status: int, target_num: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(pushes.update().where(pushes.c.id == push_id)
                         .values(status=status, target_num=target_num, send_time=now_ms()))

    def due_pushes(self, status: int, now: int, limit: int) -> list:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(pushes.c.id).where(
                pushes.c.status == status, pushes.c.push_time <= now).order_by(pushes.c.push_time).limit(limit))]

    def pushes_of_message(self, app_id: int, message_id: int) -> list:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(pushes).where(
                pushes.c.app_id == app_id, pushes.c.message_id == message_id).order_by(pushes.c.id)).mappings()]

    def _push_page(self, query, start: int, limit: int):
        """(total, rows) of pushes joined with their message, newest first."""
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
            rows = conn.execute(query.add_columns(messages.c.msg_type, messages.c.content, messages.c.content_format)
                                .join_from(pushes, messages, messages.c.id == pushes.c.message_id)
                                .order_by(pushes.c.push_time.desc(), pushes.c.id.desc())
                                .offset(start).limit(limit)).mappings()
            return total, [dict(r) for r in rows]

    def pushes_with_status(self, app_id: int, status: int, start: int, limit: int):
        query = sa.select(pushes).where(pushes.c.app_id == app_id, pushes.c.status == status)
        return self._push_page(query, start, limit)

    def pushes_of_app(self, app_id: int, start: int, limit: int):
        return self._push_page(sa.select(pushes).where(pushes.c.app_id == app_id), start, limit)

    def pushes_of_topic(self, topic_id: int, since, until, start: int, limit: int):
        query = sa.select(pushes).where(
            pushes.c.id.in_(sa.select(push_topics.c.push_id).where(push_topics.c.topic_id == topic_id)))
        if since is not None:
            query = query.where(pushes.c.push_time >= since)
        if until is not None:
            query = query.where(pushes.c.push_time <= until)
        return self._push_page(query, start, limit)

    # retention
    def finished_pushes(self, status: int, counted_ends: bool, due_before: int, now: int, after: tuple,
                        limit: int) -> list:
        """Up to `limit` (push_time, id, message_id) of pushes with `status` due before `due_before` whose delivery
        is over: expired, or (if `counted_ends`) every target counted as arrived, expired or failed. In
        (push_time, id) order after `after`: a walk on the (status, push_time) index."""
        outcomes = pushes.c.arrived + pushes.c.expired + pushes.c.failed
        over = pushes.c.expires_at < now
        if counted_ends:
            over = sa.or_(over, sa.and_(outcomes >= pushes.c.target_num, outcomes >= pushes.c.sent))
        last_time, last_id = after
        query = (sa.select(pushes.c.push_time, pushes.c.id, pushes.c.message_id)
                 .where(pushes.c.status == status, pushes.c.push_time < due_before, over,
                        sa.or_(pushes.c.push_time > last_time,
                               sa.and_(pushes.c.push_time == last_time, pushes.c.id > last_id)))
                 .order_by(pushes.c.push_time, pushes.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(query)]

    def delete_pushes(self, push_ids: list, message_ids: set) -> dict:
        """Deletes the pushes with their tag links, and those of `message_ids` no push is left of, in one short
        transaction (every statement by key); returns the rows deleted per table. On MySQL at READ COMMITTED:
        it then locks the rows it deletes and no gaps, so a publish inserting meanwhile never waits for it (at
        REPEATABLE READ, the gap locks of its DELETEs deadlocked concurrent publishes)."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "mysql":
                conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                deleted = {"push_topics": conn.execute(push_topics.delete().where(
                    push_topics.c.push_id.in_(push_ids))).rowcount}
                deleted["pushes"] = conn.execute(pushes.delete().where(pushes.c.id.in_(push_ids))).rowcount
                deleted["messages"] = conn.execute(messages.delete().where(
                    messages.c.id.in_(list(message_ids)),
                    ~sa.exists().where(pushes.c.message_id == messages.c.id))).rowcount
        return deleted

    # topics (the REST API's tags)
    def topic_id(self, app_id: int, name: str, create: bool = False):
        query = sa.select(topics.c.id).where(topics.c.app_id == app_id, topics.c.name == name)
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        if found is None and create:
            # Insert and re-read in separate transactions: under MySQL's REPEATABLE READ a re-read in the
            # inserting transaction would not see the row a concurrent caller committed first.
            with self.engine.begin() as conn:
                conn.execute(_insert_ignore(topics).values(app_id=app_id, name=name, created_at=now_ms()))
            with self.engine.connect() as conn:
                found = conn.execute(query).scalar()
            if found is None:
                raise RuntimeError(f"topic {name!r} of app {app_id} vanished while being created")
        return found

    def topic_ids(self, app_id: int, names) -> dict:
        with self.engine.connect() as conn:
            return {r.name: r.id for r in conn.execute(sa.select(topics.c.id, topics.c.name).where(
                topics.c.app_id == app_id, topics.c.name.in_(list(names))))}

    def set_topic_info(self, topic_id: int, info) -> None:
        with self.engine.begin() as conn:
            conn.execute(topics.update().where(topics.c.id == topic_id).values(info=info))

    def delete_topic(self, topic_id: int) -> None:
        with self.engine.begin() as conn:
            for table in (subscriptions, push_topics):
                conn.execute(table.delete().where(table.c.topic_id == topic_id))
            conn.execute(topics.delete().where(topics.c.id == topic_id))

    def list_topics(self, app_id: int, start: int, limit: int):
        return self._page(sa.select(topics).where(topics.c.app_id == app_id), topics.c.id, start, limit)

    def _page(self, query, order, start: int, limit: int):
        """(total, rows) of one page of a query's rows."""
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
            rows = conn.execute(query.order_by(order).offset(start).limit(limit)).mappings()
            return total, [dict(r) for r in rows]

    def count_subscribers(self, topic_id: int) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(subscriptions)
                                .where(subscriptions.c.topic_id == topic_id)).scalar()

    def subscribe(self, topic_id: int, client_ids) -> None:
        with self.engine.begin() as conn:
            conn.execute(_insert_ignore(subscriptions), [{"topic_id": topic_id, "client_id": c} for c in client_ids])

    def unsubscribe(self, topic_id: int, client_ids) -> None:
        with self.engine.begin() as conn:
            conn.execute(subscriptions.delete().where(
                subscriptions.c.topic_id == topic_id, subscriptions.c.client_id.in_(list(client_ids))))

    # counters
    def apply_counter_deltas(self, claimed) -> None:
        """Adds each (kind, id, token, deltas) to its job's or push's counters, once per flush token
        however often it is applied; all in one transaction, one UPDATE per kind, token and 200 rows
        (a flush claims its rows under one token; one left from a failed flush keeps its own).
        A row whose deltas are all zero is applied as nothing."""
        groups = defaultdict(list)
        for kind, row_id, token, deltas in claimed:
            if any(deltas.values()):  # counts that cancel out (sent +1 then -1) change nothing: no statement
                groups[(kind, token)].append((int(row_id), deltas))
        with self.engine.begin() as conn:
            for (kind, token), rows in groups.items():
                for start in range(0, len(rows), COUNTER_ROWS_PER_UPDATE):
                    conn.execute(*_counter_update(COUNTER_TABLES[kind].name, token,
                                                  rows[start:start + COUNTER_ROWS_PER_UPDATE]),
                                 execution_options=NO_STATEMENT_CACHE)

    def reachable(self) -> bool:
        return db.reachable(self.engine)

    def counter_row(self, kind: str, row_id: int):
        table = COUNTER_TABLES[kind]
        return self._one(sa.select(*(table.c[name] for name in COUNTER_FIELDS), table.c.flush_token)
                         .where(table.c.id == row_id))

    # operators of the console, and its audit log
    def get_operator(self, name: str):
        return self._one(sa.select(operators).where(operators.c.name == name))

    def put_operator(self, name: str, password_hash: str) -> bool:
        """Creates the operator, or gives an existing one this password hash; True when it was created."""
        now = now_ms()
        with self.engine.begin() as conn:
            if conn.execute(_insert_ignore(operators).values(
                    name=name, password_hash=password_hash, created_at=now, updated_at=now)).rowcount == 1:
                return True
            conn.execute(operators.update().where(operators.c.name == name)
                         .values(password_hash=password_hash, updated_at=now))
            return False

    def add_audit(self, operator: str, action: str, detail: str) -> None:
        self._insert(audit_log, at=now_ms(), operator=operator, action=action, detail=detail)

    def list_audit(self, start: int, limit: int):
        """(total, rows) of the audit log, newest first."""
        return self._page(sa.select(audit_log), audit_log.c.id.desc(), start, limit)

    # the installation
    def predates_installation(self) -> bool:
        """Whether apps were made before the installation identity: the database of a hipush from before
        identities, upgraded in place."""
        first_app = sa.select(sa.func.min(apps.c.created_at)).scalar_subquery()
        with self.engine.connect() as conn:
            return bool(conn.execute(sa.select(installation.c.created_at > first_app)).scalar())

    def pushes_awaiting_delivery(self, now: int) -> int:
        """Pushes not yet expired whose counts say that some of their messages were still queued."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(pushes).where(
                pushes.c.expires_at > now,
                pushes.c.sent > pushes.c.arrived + pushes.c.expired + pushes.c.failed)).scalar()
