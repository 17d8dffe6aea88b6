"""Rate limits (429 / 1029 with Retry-After) and idempotent publishing, end to end."""
import requests

from support import wait_for


def test_publish_rate_limit_answers_429_with_retry_after(server, api, app_):
    server.cli("app-set", app_["app_key"], "--publish-rate", "3")
    client = api.register(app_, "d")
    job = api.new_job(app_)

    def send():
        return api.call("/publish/private", {"job_id": job, "client_id": client["client_id"], "msg_type": 0,
                                             "content": "x", "online": "false"}, app_)

    def limited():
        responses = [send() for _ in range(8)]
        return [r for r in responses if r.status_code == 429]  # a list: a 4xx Response is falsy

    response = wait_for(limited, message="a 429 once the app's new rate applies")[0]
    assert response.json()["error"] == 1029
    assert 1 <= int(response.headers["Retry-After"]) <= 1
    server.cli("app-set", app_["app_key"], "--publish-rate", "default")


def test_rest_publish_is_rate_limited_with_the_rest_envelope(server, app_):
    server.cli("app-set", app_["app_key"], "--publish-rate", "2")

    def limited():
        for _ in range(6):
            r = requests.post(server.base + "/push/all", data={"msg_type": 0, "msg": "x"},
                              auth=(app_["app_key"], app_["app_secret"]))
            if r.status_code == 429:
                return [r]  # a list: a 4xx Response is falsy
        return None

    response = wait_for(limited, message="a 429 once the app's new rate applies")[0]
    assert response.json() == {"status": 0, "error_code": 1029, "error": response.json()["error"]}
    assert "Retry-After" in response.headers


def test_a_repeated_idempotency_key_answers_the_same_and_sends_once(api, app_):
    client = api.register(app_, "d")
    job = api.new_job(app_)
    params = {"job_id": job, "client_id": client["client_id"], "msg_type": 0, "content": "once",
              "online": "false", "idempotency_key": "order-42"}
    first = api.call("/publish/private", params, app_)
    again = api.call("/publish/private", params, app_)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert [m["content"] for m in api.receive(client, 1)] == ["once"]
    assert api.poll(client, timeout=1) == []
    assert wait_for(lambda: api.stats(app_, job)["sent"] == 1)


def test_idempotent_rest_push_returns_the_same_msg_id(server, app_):
    auth = (app_["app_key"], app_["app_secret"])
    data = {"msg_type": 0, "msg": "x", "idempotency_key": "k1"}
    first = requests.post(server.base + "/push/all", data=data, auth=auth).json()
    again = requests.post(server.base + "/push/all", data=data, auth=auth).json()
    assert first["status"] == 1 and first == again
    other = requests.post(server.base + "/push/all", data={**data, "idempotency_key": "k2"}, auth=auth).json()
    assert other["msg_id"] != first["msg_id"]


def test_a_failed_call_does_not_burn_its_idempotency_key(api, app_):
    client = api.register(app_, "d")
    params = {"client_id": client["client_id"], "msg_type": 0, "content": "x", "online": "false",
              "idempotency_key": "retry-me"}
    assert api.error("/publish/private", {**params, "job_id": 999999}, app_) == (404, 1026)
    job = api.new_job(app_)
    assert api.ok("/publish/private", {**params, "job_id": job}, app_) == "OK"


def test_idempotency_key_over_64_characters_is_refused(api, app_):
    job = api.new_job(app_)
    client = api.register(app_, "d")
    assert api.error("/publish/private", {"job_id": job, "client_id": client["client_id"], "msg_type": 0,
                                          "content": "x", "idempotency_key": "k" * 65}, app_) == (413, 1030)


def test_an_idempotency_key_belongs_to_one_api_legacy_or_rest(server, api, app_):
    """The same key on a legacy publish and a REST push is two calls, each answered in its own API's envelope
    (a /publish/private got the REST answer a /push/* call had stored, and sent nothing)."""
    client = api.register(app_, "d")
    job = api.new_job(app_)

    def rest_push(msg, key):
        return requests.post(server.base + "/push/terminal", auth=(app_["app_key"], app_["app_secret"]), data={
            "terminal_ids": client["client_id"], "msg_type": 0, "msg": msg, "idempotency_key": key}).json()

    def legacy_publish(content, key):
        return api.call("/publish/private", {"job_id": job, "client_id": client["client_id"], "msg_type": 0,
                                             "content": content, "online": "false", "idempotency_key": key}, app_).json()

    legacy_ok = {"ok": True, "result": "OK"}
    rest_first = rest_push("rest, then legacy", "shared-1")
    assert rest_first["status"] == 1
    assert legacy_publish("legacy after rest", "shared-1") == legacy_ok
    assert legacy_publish("legacy, then rest", "shared-2") == legacy_ok
    rest_second = rest_push("rest after legacy", "shared-2")
    assert rest_second["status"] == 1 and rest_second["msg_id"] != rest_first["msg_id"]
    # within each API a repeat still answers as the first call did and sends nothing
    assert rest_push("rest, then legacy", "shared-1") == rest_first
    assert legacy_publish("legacy, then rest", "shared-2") == legacy_ok
    assert sorted(m["content"] for m in api.receive(client, 4)) == sorted(
        ["rest, then legacy", "legacy after rest", "legacy, then rest", "rest after legacy"])
    assert api.poll(client, timeout=1) == []
