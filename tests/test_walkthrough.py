"""The issue's acceptance walk-through, with 1 and with 2 workers: two apps, 100 clients on a topic,
private and topic pushes, every message received exactly once after dedupe with acks, right stats."""
import threading

import pytest

from support import Api, Server, wait_for


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def served(request, backend_env, redis_client):
    server = Server(backend_env, workers=request.param).start()
    yield server, Api(server.base)
    server.stop()


def subscribe_all(api, app, topic, clients):
    for start in range(0, len(clients), 100):
        params = [("appkey", app["app_key"])] + [("client_id", c["client_id"]) for c in clients[start:start + 100]]
        api.ok("/topic/subscribe", params + [("topic", topic)], app)


def test_two_apps_a_hundred_subscribers_private_and_topic_pushes(served):
    server, api = served
    news, other = server.create_app("news"), server.create_app("other")
    readers = [api.register(news, f"reader-{i}") for i in range(100)]
    outsider = api.register(other, "reader-0")
    assert outsider["client_id"] not in {r["client_id"] for r in readers}
    subscribe_all(api, news, "sports", readers)

    job = api.new_job(news, "morning", "digest")
    for reader in readers[:10]:
        api.send(news, job, reader, f"hi {reader['client_id']}")
    message_id = api.ok("/message/save", {"job_id": job, "msg_type": 1, "content": "goal!"}, news)["message_id"]
    api.ok("/publish/multi", {"topic": "sports", "msg_id": message_id, "online": "false"}, news)

    received = {}

    def read(reader, count):
        received[reader["client_id"]] = api.receive(reader, count, timeout=60)

    threads = [threading.Thread(target=read, args=(r, 2 if i < 10 else 1)) for i, r in enumerate(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert len(received) == 100
    for i, reader in enumerate(readers):
        contents = [m["content"] for m in received[reader["client_id"]]]
        assert contents == ([f"hi {reader['client_id']}"] if i < 10 else []) + ["goal!"]
    assert api.poll(outsider, timeout=0) == []

    stats = wait_for(lambda: (s := api.stats(news, job))["arrived"] == 110 and s, message="110 arrivals counted")
    assert (stats["sent"], stats["arrived"], stats["expired"], stats["name"], stats["type"]) == \
        (110, 110, 0, "morning", "digest")
    assert api.error("/job/stats", {"job_id": job}, other) == (404, 1026)
