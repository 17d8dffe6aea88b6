"""Terminal management by an app's backend (seed 003's 终端的增删改查): read, list, change and delete clients.

A client registers itself with /user/genId, which never changes one registered before; its attributes
(terminal type, address, org, location) are changed here. Deleting a client ends it everywhere: its
row and tag subscriptions, its tokens, its queues and parked poll, its place in the geo index. What it
had been sent and never acknowledged is counted expired, so that a push's counts still add up.
"""
from .. import identity
from ..errors import ApiError, not_found
from ..clock import now_ms

LOCATION = ("lat", "lng")


class Terminals:
    def __init__(self, store, queue_ops, stats, clients, targets, tombstone_ttl: int, presence_grace: int):
        self.store = store
        self.presence_grace_ms = presence_grace * 1000
        self.queue_ops = queue_ops
        self.stats = stats
        self.clients = clients
        self.targets = targets
        self.tombstone_ttl = tombstone_ttl

    def get(self, app: dict, client_id: str) -> dict:
        """The client's row with its live state, else 404 / 1026 (another app's client too)."""
        return self._with_state([self.clients.get(app["id"], client_id)])[0]

    def find(self, app: dict, client_or_device_id: str) -> dict:
        """get() of the app's client with this client id, else of the one this device registered as, with
        "polling" (a poll is in progress) and "last_poll_ms" (when its last poll ended, as its presence tells:
        None once that is over the presence grace ago)."""
        try:
            terminal = self.get(app, client_or_device_id)
        except ApiError:
            terminal = self.get(app, identity.client_id_for(self.clients.secret_key, app["app_key"],
                                                            client_or_device_id))
        polling, presence_left = self.queue_ops.presence(terminal["client_id"])
        ended = None
        if not polling and presence_left is not None:
            ended = now_ms() - (self.presence_grace_ms - presence_left)
        return {**terminal, "polling": polling, "last_poll_ms": ended}

    def page(self, app: dict, start: int, limit: int, topic_id=None, org=None, terminal_type=None):
        """(total, rows with live state) of the app's clients, optionally only a tag's, an org's or a type's."""
        total, rows = self.store.list_clients(app["id"], start, limit, topic_id, org, terminal_type)
        return total, self._with_state(rows)

    def _with_state(self, rows: list) -> list:
        states = self.queue_ops.states([row["client_id"] for row in rows])
        return [{**row, "online": online, "queued": queued, "unacked": unacked}
                for row, (online, queued, unacked) in zip(rows, states)]

    def update(self, app: dict, client_id: str, changes: dict) -> dict:
        """Sets the fields given (None clears one); lat and lng come together. Returns the client as get does."""
        self.clients.get(app["id"], client_id)
        fields = {name: value for name, value in changes.items() if name not in LOCATION}
        if fields:
            self.store.update_client(client_id, **fields)
        if "lat" in changes:
            self.clients.set_location(app["id"], client_id, changes["lat"], changes["lng"])
        return self.get(app, client_id)

    def delete(self, app: dict, client_ids: list) -> None:
        """Deletes the clients (all of the app's, else 404 / 1026 and nothing changes). Redis first: once a
        client's tombstone is there, no token of it is accepted and nothing more is queued for it, so the
        SQL rows can go next; should that fail, the call can be repeated."""
        found = self.store.clients_of_app(app["id"], client_ids)
        missing = [c for c in client_ids if c not in found]
        if missing:
            raise not_found(f"no such terminal: {missing[0]}")
        pipe = self.queue_ops.pools.pipeline()
        for client_id in client_ids:
            self.queue_ops.remove(pipe, client_id, app["id"], self.tombstone_ttl)
        removed = [self.queue_ops.removed(result) for result in pipe.execute()]
        self.stats.count_headers("expired", [header for _, headers in removed for header in headers])
        for poller, _ in removed:
            if poller:  # its poll answers (empty) now; the next one is refused
                self.queue_ops.unblock(poller)
        self.clients.forget_locations(app["id"], client_ids)
        self.store.delete_clients(app["id"], client_ids)
        self.targets.forget(app["id"], client_ids)
