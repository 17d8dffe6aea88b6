"""The client conformance scenarios (issue 19 §4), run against the Python kit's Client: connect and receive,
acknowledge, a redelivered message shown once, a new token after /user/revoke, backoff while the server is
down and resume after, a notification's fields. Every kit runs the same list: tests/conformance.py."""
import time

import requests

from conformance import SCENARIOS
from hipush_client import Message
from support import Background, Server, free_port, wait_for
from test_python_sdk import RecordingSession, admin_of, new_client, receive


class AttemptLog(requests.Session):
    """Notes when each /comet/poll is sent, whether or not an answer comes."""

    def __init__(self):
        super().__init__()
        self.polls = []

    def get(self, url, *args, **kwargs):
        if url.endswith("/comet/poll"):
            self.polls.append(time.monotonic())
        return super().get(url, *args, **kwargs)


def test_connect_and_receive(server, app_):
    states = []
    client = new_client(server, app_, "conf-receive", on_state=lambda state, error: states.append(state))
    msg_id = admin_of(server, app_).push_terminal(client.client_id, "hello")
    got, = receive(client, 1)
    assert (got.msg_id, got.msg_type, got.content) == (msg_id, 0, "hello") and states[0] == "connected"
    client.close()


def test_ack_removes_the_message_from_the_server(server, api, app_):
    client = new_client(server, app_, "conf-ack")
    admin = admin_of(server, app_)
    admin.push_terminal(client.client_id, "once")
    assert [m.content for m in receive(client, 1)] == ["once"]
    client.close()
    wait_for(lambda: admin.query_terminal(client.client_id).unacked_num == 0, message="acknowledged")
    assert admin.query_terminal(client.client_id).queued_num == 0
    token = api.ok("/user/token", {"client_id": client.client_id})["token"]
    assert api.ok("/comet/poll", {"client_id": client.client_id, "token": token, "timeout": "0"})["messages"] == []


def test_a_message_delivered_again_after_a_lost_ack_is_shown_once(server, app_):
    session = RecordingSession()  # drops the ack of the first poll carrying one, as a dropped connection would
    client = new_client(server, app_, "conf-dedupe", session=session)
    admin = admin_of(server, app_)
    admin.push_terminal(client.client_id, "first")
    assert [m.content for m in receive(client, 1)] == ["first"]
    admin.push_terminal(client.client_id, "second")
    assert [m.content for m in receive(client, 1)] == ["second"]
    delivered = [i for answer in session.answers for i in answer]
    assert session.dropped_ack is not None and len(delivered) > len(set(delivered))  # "first" came twice
    client.close()


def test_a_revoked_token_is_replaced_and_receiving_goes_on(server, app_):
    client = new_client(server, app_, "conf-revoke")
    admin = admin_of(server, app_)
    admin.push_terminal(client.client_id, "before")
    assert [m.content for m in receive(client, 1)] == ["before"]
    old_token = client.token
    admin.revoke(client.client_id)
    admin.push_terminal(client.client_id, "after")
    assert [m.content for m in receive(client, 1)] == ["after"]
    assert client.token != old_token
    client.close()


def test_backoff_while_the_server_is_down_and_resume_after(backend_env, app_):
    own = Server(backend_env, workers=1, port=free_port()).start()
    attempts = AttemptLog()
    client = new_client(own, app_, "conf-backoff", session=attempts, discover=False)  # backoff 0.05 s to 0.5 s
    try:
        admin = admin_of(own, app_)
        admin.push_terminal(client.client_id, "before")
        assert [m.content for m in receive(client, 1)] == ["before"]
        own.stop()
        down = len(attempts.polls)
        reader = Background(receive, client, 1, 60)
        wait_for(lambda: len(attempts.polls) >= down + 6, timeout=30, message="six polls while down")
        gaps = [b - a for a, b in zip(attempts.polls[down:], attempts.polls[down + 1:down + 6])]
        # jittered exponential backoff: the n-th wait is at least half of min(cap, base * 2^n)
        assert all(gap >= min(0.5, 0.05 * 2 ** n) / 2 for n, gap in enumerate(gaps))
        own.start()
        admin.push_terminal(client.client_id, "after")
        assert [m.content for m in reader.result(70)] == ["after"]
    finally:
        client.close()
        own.stop()


def test_a_notification_carries_its_fields(server, app_):
    client = new_client(server, app_, "conf-notify")
    fields = {"title": "Goal", "body": "2:1", "url": "https://example.com/m/1", "image": "https://example.com/i.png",
              "extras": {"match": 1}}
    admin_of(server, app_).push_terminal(client.client_id, fields)
    got, = receive(client, 1)
    assert isinstance(got, Message) and got.is_notification and got.msg_type == 1 and got.content == fields
    client.close()


def test_every_scenario_has_a_python_test():
    assert [name for name in SCENARIOS if f"test_{name}" not in globals()] == []
