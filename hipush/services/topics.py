"""Topics (the REST API's tags: one namespace per app) and their subscribers."""
from ..errors import not_found


class Topics:
    def __init__(self, store):
        self.store = store

    def _members(self, app: dict, client_ids) -> list:
        found = self.store.clients_of_app(app["id"], client_ids)
        missing = [c for c in client_ids if c not in found]
        if missing:
            raise not_found(f"no such client: {missing[0]}")
        return list(dict.fromkeys(client_ids))

    def subscribe(self, app: dict, topic: str, client_ids) -> None:
        members = self._members(app, client_ids)
        self.store.subscribe(self.store.topic_id(app["id"], topic, create=True), members)

    def unsubscribe(self, app: dict, topic: str, client_ids) -> None:
        members = self._members(app, client_ids)
        topic_id = self.store.topic_id(app["id"], topic)
        if topic_id is not None:
            self.store.unsubscribe(topic_id, members)

    def subscriber_batches(self, app: dict, topic: str):
        """Pages of client ids: every client of the app for '*', else the topic's subscribers."""
        if topic == "*":
            return self.store.iter_app_clients(app["id"])
        topic_id = self.store.topic_id(app["id"], topic)
        if topic_id is None:
            raise not_found("no such topic")
        return self.store.iter_subscribers(topic_id)
