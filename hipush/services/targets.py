"""Who a push goes to: a target is a small JSON-able dict kept on the push row, resolved when it is sent.

Kinds: {"kind": "clients", "ids": [...]}, {"kind": "all"}, {"kind": "tags", "tags": [...]},
{"kind": "org", "orgs": [...] | None, "terminal_types": [...] | None},
{"kind": "geo", "lat": .., "lng": .., "radius": metres}. Resolution yields pages of
(client_id, terminal_type, address) rows, each client once.
"""
from ..errors import not_found


class Targets:
    def __init__(self, store, geo):
        """geo: storage.clients.GeoIndex"""
        self.store = store
        self.geo = geo
        # clients found before: one deleted since is caught when its push is recorded (Store.record_sends)
        self._known_clients = set()

    def check(self, app: dict, target: dict) -> list:
        """Answers 404 for ids or tags the app doesn't have; returns the tag topic ids of the target."""
        kind = target["kind"]
        if kind == "clients":
            unknown = [c for c in target["ids"] if (app["id"], c) not in self._known_clients]
            found = self.store.clients_of_app(app["id"], unknown) if unknown else set()
            missing = [c for c in unknown if c not in found]
            if missing:
                raise not_found(f"no such terminal: {missing[0]}")
            if len(self._known_clients) > 200_000:
                self._known_clients.clear()
            self._known_clients.update((app["id"], c) for c in found)
        if kind == "tags":
            ids = self.store.topic_ids(app["id"], target["tags"])
            missing = [t for t in target["tags"] if t not in ids]
            if missing:
                raise not_found(f"no such tag: {missing[0]}")
            return [ids[t] for t in target["tags"]]
        return []

    def forget(self, app_id: int, client_ids) -> None:
        """The clients were deleted."""
        self._known_clients.difference_update((app_id, c) for c in client_ids)

    def resolve(self, app_id: int, target: dict):
        kind = target["kind"]
        if kind == "clients":
            return [self.store.client_rows(app_id, target["ids"])]
        if kind == "all":
            return self.store.iter_app_clients(app_id)
        if kind == "tags":
            return self.store.iter_topic_clients(self.store.topic_ids(app_id, target["tags"]).values())
        if kind == "org":
            return self.store.iter_org_clients(app_id, target["orgs"], target["terminal_types"])
        if kind == "geo":
            return self._near(app_id, target)
        raise ValueError(f"unknown target kind {kind!r}")

    def _near(self, app_id: int, target: dict):
        found = self.geo.near(app_id, target["lat"], target["lng"], target["radius"])
        for start in range(0, len(found), 1000):
            yield self.store.client_rows(app_id, found[start:start + 1000])
