"""Timed pushes fire exactly once with several workers on several nodes (SPEC §4)."""
import time

import pytest
import requests

from support import Api, Server, wait_for


@pytest.fixture
def two_nodes(backend_env, redis_client):
    nodes = [Server(backend_env, workers=3).start(), Server(backend_env, workers=2).start()]
    yield nodes
    for node in nodes:
        node.stop()


def test_timed_pushes_fire_once_across_three_workers_and_two_nodes(two_nodes, store):
    node_a, node_b = two_nodes
    app = store.create_app("timers")
    auth = (app["app_key"], app["app_secret"])
    api = Api(node_a.base)
    client = api.register(app, "timed")
    due = int(time.time()) + 3
    msg_ids = []
    for i in range(10):
        node = two_nodes[i % 2]
        answer = requests.post(node.base + "/push/terminal", auth=auth, data={
            "terminal_ids": client["client_id"], "msg_type": 0, "msg": f"timer {i}", "push_time": str(due)}).json()
        msg_ids.append(answer["msg_id"])

    deliveries, ack = [], None
    deadline = time.monotonic() + 60
    while len({m["id"] for m in deliveries}) < 10:
        assert time.monotonic() < deadline, f"{len(deliveries)} deliveries so far"
        batch = api.poll(client, ack=ack, timeout=2)
        if batch:
            ack = batch[-1]["id"]
            deliveries += [m for m in batch if m["id"] not in {d["id"] for d in deliveries}]
    api.poll(client, ack=ack, timeout=0)

    def status(msg_id):
        return requests.get(node_b.base + "/manager/query_msg_status", params={"msg_id": msg_id}, auth=auth).json()

    for msg_id in msg_ids:
        [push] = wait_for(lambda: (d := status(msg_id)["data"]) and d[0]["arrived_num"] == 1 and d,
                          message=f"message {msg_id} counted arrived")
        assert (push["status"], push["target_num"], push["sent_num"]) == (0, 1, 1)
    assert sorted(m["content"] for m in deliveries) == sorted(f"timer {i}" for i in range(10))
    assert api.poll(client, timeout=1) == []  # nothing fired twice
