"""Topics, which the REST API calls tags (one namespace per app), and their subscribers."""
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

    def existing(self, app: dict, topic: str) -> int:
        """The id of the app's topic, else 404 / 1026."""
        topic_id = self.store.topic_id(app["id"], topic)
        if topic_id is None:
            raise not_found("no such tag")
        return topic_id

    def subscribe(self, app: dict, topic: str, client_ids) -> None:
        """Subscribing to a topic that does not exist yet creates it."""
        members = self._members(app, client_ids)
        self.store.subscribe(self.store.topic_id(app["id"], topic, create=True), members)

    def unsubscribe(self, app: dict, topic: str, client_ids) -> None:
        members = self._members(app, client_ids)
        topic_id = self.store.topic_id(app["id"], topic)
        if topic_id is not None:
            self.store.unsubscribe(topic_id, members)

    def create(self, app: dict, topic: str, info) -> None:
        """Creates a tag, or sets the info of one that exists."""
        self.store.set_topic_info(self.store.topic_id(app["id"], topic, create=True), info)

    def delete(self, app: dict, topic: str) -> None:
        self.store.delete_topic(self.existing(app, topic))

    def count(self, app: dict, topic: str) -> int:
        return self.store.count_subscribers(self.existing(app, topic))

    def page(self, app: dict, start: int, limit: int):
        return self.store.list_topics(app["id"], start, limit)

    def history(self, app: dict, topic: str, since, until, start: int, limit: int):
        return self.store.pushes_of_topic(self.existing(app, topic), since, until, start, limit)
