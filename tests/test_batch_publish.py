"""POST /push/batch: many unicasts in one call, all or nothing, end to end against gunicorn."""
import json

import pytest
from hipush_client import Admin, HipushError

from support import wait_for


@pytest.fixture(scope="module")
def batch_app(server):
    return server.create_app("batch")


@pytest.fixture(scope="module")
def clients(api, batch_app):
    return [api.register(batch_app, f"batch-{i}") for i in range(3)]


def push_batch(api, app, messages=None, body=None):
    """The HTTP answer of a batch (HTTP Basic, JSON body)."""
    data = body if body is not None else json.dumps({"messages": messages})
    return api.http.post(api.base + "/push/batch", data=data, auth=(app["app_key"], app["app_secret"]),
                         headers={"Content-Type": "application/json"}, timeout=60)


def entry(client, content, **fields) -> dict:
    return {"terminal_ids": client["client_id"], "msg_type": 0, "msg": content, **fields}


def refused(response, index=None, status=403, code=1024) -> str:
    """The error of a refused batch (as /push/terminal refuses the same input); index: the entry it names."""
    body = response.json()
    assert response.status_code == status and body["status"] == 0 and body["error_code"] == code, body
    if index is not None:
        assert body["error"].startswith(f"messages[{index}]: "), body
    return body["error"]


def test_a_batch_answers_msg_ids_in_entry_order_and_every_entry_is_delivered(api, batch_app, clients):
    job = api.new_job(batch_app)
    messages = [entry(clients[i % 3], f"b{i}", job_id=job) for i in range(9)]
    messages.append({"terminal_ids": ",".join(c["client_id"] for c in clients), "msg_type": 1,
                     "msg": {"title": "all three", "body": "b"}, "job_id": job, "expires_time": 600})
    response = push_batch(api, batch_app, messages)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == 1 and len(body["msg_ids"]) == 10
    assert body["msg_ids"] == sorted(body["msg_ids"]) and len(set(body["msg_ids"])) == 10

    for i, client in enumerate(clients):
        received = api.receive(client, 4)
        assert [m["content"] for m in received[:3]] == [f"b{n}" for n in range(i, 9, 3)], "per client: entry order"
        assert received[3]["content"]["title"] == "all three" and received[3]["msg_type"] == 1
        assert [m["msg_id"] for m in received] == [body["msg_ids"][n] for n in range(i, 9, 3)] + [body["msg_ids"][9]]
    wait_for(lambda: api.stats(batch_app, job)["arrived"] == 12, message="arrived == 12")
    stats = api.stats(batch_app, job)
    assert (stats["sent"], stats["arrived"], stats["expired"]) == (12, 12, 0)
    status = api.http.post(api.base + "/manager/query_msg_status", data={"msg_id": body["msg_ids"][9]},
                           auth=(batch_app["app_key"], batch_app["app_secret"]), timeout=30).json()
    assert status["data"][0]["target_num"] == 3 and status["data"][0]["sent_num"] == 3


@pytest.mark.parametrize("bad, words, status, code", [
    ({"msg_type": 7}, "msg_type", 403, 1024),
    ({"terminal_ids": "not-an-id"}, "terminal_ids", 403, 1024),
    ({"expires_time": 0}, "expires_time", 403, 1024),
    ({"push_time": "2030-01-01 00:00:00"}, "push_time is not a field", 403, 1024),
    ({"msg": "x" * 5000}, "msg is longer than 4096 bytes", 413, 1030),
])
def test_an_invalid_entry_refuses_the_whole_batch_naming_its_index(api, batch_app, clients, bad, words, status, code):
    client = clients[0]
    messages = [entry(client, "fine 0"), entry(client, "fine 1"), {**entry(client, "bad"), **bad}]
    assert words in refused(push_batch(api, batch_app, messages), 2, status, code)
    assert api.poll(client) == [], "nothing of a refused batch is sent"


def test_an_unknown_terminal_refuses_the_whole_batch(api, batch_app, clients):
    messages = [entry(clients[0], "fine"), entry({"client_id": "0" * 32}, "nobody")]
    response = push_batch(api, batch_app, messages)
    assert response.status_code == 404 and response.json()["error"].startswith("messages[1]: "), response.text
    assert api.poll(clients[0]) == []


def test_the_batch_itself_must_be_a_list_of_1_to_1000_objects_within_the_body_cap(api, batch_app, clients):
    client = clients[1]
    assert "at most 1000" in refused(push_batch(api, batch_app, [entry(client, "m")] * 1001))
    assert "non-empty list" in refused(push_batch(api, batch_app, []))
    assert "non-empty list" in refused(push_batch(api, batch_app, body=json.dumps({"messages": {"a": 1}})))
    assert "an entry must be an object" in refused(push_batch(api, batch_app, ["x"]), index=0)
    too_big = push_batch(api, batch_app, [entry(client, "y" * 4000)] * 1000 + [entry(client, "z" * 4000)] * 100)
    assert too_big.status_code == 413 and too_big.json()["error_code"] == 1030
    assert api.poll(client) == []
    unsigned = api.http.post(api.base + "/push/batch", json={"messages": [entry(client, "m")]}, timeout=30)
    assert unsigned.status_code == 401


def test_a_full_batch_of_1000_is_taken(api, batch_app, clients):
    client = clients[2]
    response = push_batch(api, batch_app, [entry(client, f"n{i}") for i in range(1000)])
    assert response.status_code == 200 and len(response.json()["msg_ids"]) == 1000
    assert [m["content"] for m in api.receive(client, 1000, timeout=60)] == [f"n{i}" for i in range(1000)]


@pytest.mark.parametrize("sign_method", ["md5", "basic"])
def test_the_python_admin_pushes_a_batch(api, batch_app, clients, sign_method):
    client = clients[1]
    with Admin(api.base, batch_app["app_key"], batch_app["app_secret"], sign_method) as admin:
        msg_ids = admin.push_batch([{"terminal_ids": client["client_id"], "msg": "plain"},
                                    {"terminal_ids": [client["client_id"]], "msg": {"title": "t"}, "online": False,
                                     "expires_time": 60}])
        assert len(msg_ids) == 2 and msg_ids[0] < msg_ids[1]
        with pytest.raises(HipushError) as refused_batch:
            admin.push_batch([{"terminal_ids": client["client_id"], "msg": "ok"},
                              {"terminal_ids": client["client_id"], "msg": "bad", "msg_type": 9}])
        assert refused_batch.value.http_status == 403 and "messages[1]" in refused_batch.value.reason
    received = api.receive(client, 2)
    assert [(m["msg_id"], m["msg_type"]) for m in received] == [(msg_ids[0], 0), (msg_ids[1], 1)]
