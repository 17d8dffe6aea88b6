"""Clicks (/user/click): counted once per delivery and client, in /job/stats and query_msg_status, flushed to SQL."""
import pytest
import requests

from support import wait_for

UNKNOWN_DELIVERY = "999999999999"


def rest_ok(api, app, path, **params) -> dict:
    response = requests.post(api.base + path, data=params, auth=(app["app_key"], app["app_secret"]), timeout=30)
    body = response.json()
    assert response.status_code == 200 and body["status"] == 1, (path, response.status_code, body)
    return body


def click(api, client, delivery_id):
    return api.call("/user/click", {"client_id": client["client_id"], "token": client["token"], "id": delivery_id})


@pytest.fixture(scope="module")
def campaign(server, api, store):
    """One push of one job to two clients, each of which has received it."""
    app = store.create_app("clicks")
    job = api.new_job(app)
    alice, bob = api.register(app, "alice"), api.register(app, "bob")
    msg_id = rest_ok(api, app, "/push/terminal", terminal_ids=f"{alice['client_id']},{bob['client_id']}",
                     msg_type=1, msg='{"title": "Sale"}', job_id=job)["msg_id"]
    delivery = api.receive(alice, 1)[0]["id"]
    assert api.receive(bob, 1)[0]["id"] == delivery
    return {"app": app, "job": job, "msg_id": msg_id, "alice": alice, "bob": bob, "delivery": delivery}


def counts(api, campaign) -> tuple:
    """(clicked of the job, clicked_num of the message's push)."""
    status = rest_ok(api, campaign["app"], "/manager/query_msg_status", msg_id=campaign["msg_id"])["data"]
    return api.stats(campaign["app"], campaign["job"])["clicked"], status[0]["clicked_num"]


def test_a_click_counts_once_per_delivery_and_client(api, store, campaign):
    assert counts(api, campaign) == (0, 0)
    for _ in range(3):
        response = click(api, campaign["alice"], campaign["delivery"])
        assert response.status_code == 200 and response.json() == {"ok": True, "result": "OK"}
    assert counts(api, campaign) == (1, 1)
    assert api.ok("/user/click", {**campaign["bob"], "id": campaign["delivery"]}, method="POST") == "OK"
    assert counts(api, campaign) == (2, 2)
    # the flusher moves them to SQL like every other count
    wait_for(lambda: store.counter_row("job", campaign["job"])["clicked"] == 2, timeout=30, message="clicks in SQL")
    assert counts(api, campaign) == (2, 2)


def test_a_bad_or_foreign_id_is_refused_and_counts_nothing(api, store, campaign):
    before = counts(api, campaign)
    stranger_app = store.create_app("other")
    stranger = api.register(stranger_app, "stranger")
    alice = campaign["alice"]
    cases = [
        (stranger, campaign["delivery"], (404, 1026)),  # another app's delivery looks missing
        (alice, UNKNOWN_DELIVERY, (404, 1026)),
        (alice, "12x", (403, 1024)),
        (alice, "", (403, 1024)),
        ({**alice, "token": "bad"}, campaign["delivery"], (401, 1028)),
        ({**alice, "client_id": campaign["bob"]["client_id"]}, campaign["delivery"], (401, 1028)),
    ]
    for client, delivery_id, expected in cases:
        response = click(api, client, delivery_id)
        body = response.json()
        assert (response.status_code, body.get("error")) == expected and body["reason"], (client, delivery_id, body)
    assert counts(api, campaign) == before


def test_python_kit_reports_clicks(server, api, campaign):
    from hipush_client import Client

    carol = api.register(campaign["app"], "carol")
    delivery = rest_ok(api, campaign["app"], "/push/terminal", terminal_ids=carol["client_id"], msg_type=0,
                       msg="hello", job_id=campaign["job"])
    with Client(server.base, client_id=carol["client_id"], token=carol["token"], discover=False) as client:
        message = next(client.messages())
        client.clicked(message)
        client.clicked(message.id)  # again: still one
    assert message.msg_id == delivery["msg_id"]
    assert api.stats(campaign["app"], campaign["job"])["clicked"] == counts(api, campaign)[0] == 3
