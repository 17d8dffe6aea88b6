"""The client conformance scenarios (issue 19 §4), run against the JS kit's HiPush in Node (tests/js_client.js,
which uses fetch there): connect and receive, acknowledge, a redelivered message shown once, a new token after
/user/revoke, backoff while the server is down and resume after, a notification's fields; and a click. Each runs
over the long poll ("auto": Node has no EventSource) and, but the backoff, over the SSE stream ("sse", with the
harness's EventSource made of fetch streaming).
tests/test_conformance_python.py runs the same list against the Python kit; tests/test_browser.py runs the SDK
in Chromium."""
import json
import shutil
import subprocess
import threading

import pytest

from support import ROOT, Server, free_port, wait_for
from test_python_sdk import admin_of

DRIVER = ROOT / "tests" / "js_client.js"


class JsClient:
    """A HiPush in a Node process; `events` holds what it reported, in order (dicts with "event" and "t")."""

    def __init__(self, server, app, device_id, **options):
        options = {"server": server.base, "appKey": app["app_key"], "deviceId": device_id, "pollTimeout": 2,
                   "minDelay": 50, "maxDelay": 500, "notify": False, **options}
        self.process = subprocess.Popen(["node", str(DRIVER), json.dumps(options)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.transport = options["transport"]
        self.events = []
        threading.Thread(target=self._read, daemon=True).start()
        self.client_id = self.wait("connected")["clientId"]

    def _read(self):
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def of(self, kind: str) -> list:
        return [e for e in list(self.events) if e["event"] == kind]

    def wait(self, kind: str, count: int = 1, timeout: float = 20.0, **fields) -> dict:
        """The count-th event of this kind (with these fields), once it came."""
        def found():
            matching = [e for e in self.of(kind) if all(e.get(k) == v for k, v in fields.items())]
            return matching[count - 1] if len(matching) >= count else None
        return wait_for(found, timeout=timeout, message=f"{count} {kind} {fields}")

    def contents(self) -> list:
        return [e["message"]["content"] for e in list(self.events) if e["event"] in ("message", "notification")]

    def wait_content(self, content: str, timeout: float = 20.0) -> dict:
        return wait_for(lambda: next((e for e in list(self.events) if e["event"] in ("message", "notification")
                                      and e["message"]["content"] == content), None),
                        timeout=timeout, message=f"message {content!r}")

    def command(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self) -> dict:
        """Ends it; its final stats."""
        if self.process.poll() is None:
            self.command("quit")
            self.process.wait(timeout=10)
        stats = self.of("stats")
        return stats[0]["stats"] if stats else {}


@pytest.fixture(params=["auto", "sse"])
def js(request):
    if not shutil.which("node"):
        pytest.fail("node is missing: `make js` installs it (Debian nodejs)", pytrace=False)
    made = []

    def make(server, app, device_id, **options):
        made.append(JsClient(server, app, device_id, transport=request.param, **options))
        return made[-1]
    yield make
    for client in made:
        if client.process.poll() is None:
            client.process.kill()
            client.process.wait()


def test_connect_and_receive(server, app_, js):
    client = js(server, app_, "js-receive")
    msg_id = admin_of(server, app_).push_terminal(client.client_id, "hello")
    got = client.wait_content("hello")["message"]
    assert (got["msg_id"], got["msg_type"], client.of("connected")[0]["event"]) == (msg_id, 0, "connected")


def test_ack_removes_the_message_from_the_server(server, app_, js):
    client = js(server, app_, "js-ack")
    admin = admin_of(server, app_)
    admin.push_terminal(client.client_id, "once")
    client.wait_content("once")
    wait_for(lambda: admin.query_terminal(client.client_id).unacked_num == 0, message="acknowledged")
    assert admin.query_terminal(client.client_id).queued_num == 0
    assert client.close()["received"] == 1


def test_a_message_delivered_again_after_a_lost_ack_is_shown_once(server, app_, js):
    client = js(server, app_, "js-dedupe", dropFirstAck=True)
    admin = admin_of(server, app_)
    admin.push_terminal(client.client_id, "first")
    client.wait_content("first")
    if client.transport == "sse":  # its batched ack is lost with the stream: the second stream hands "first" again
        client.wait("request", 2, path="/comet/stream")
    admin.push_terminal(client.client_id, "second")
    client.wait_content("second")
    assert client.contents() == ["first", "second"]
    assert client.close()["duplicates"] == 1  # "first" came twice


def test_a_revoked_token_is_replaced_and_receiving_goes_on(server, app_, js):
    client = js(server, app_, "js-revoke")
    old_token = client.of("connected")[0]["token"]
    admin = admin_of(server, app_)
    admin.revoke(client.client_id)
    client.wait("error", status=401)  # the next poll (within its 2 s) is refused
    admin.push_terminal(client.client_id, "after")
    client.wait_content("after")
    assert client.of("connected")[-1]["token"] != old_token


@pytest.mark.parametrize("js", ["auto"], indirect=True)  # over SSE: clients/js/test/stream.test.js (probe, backoff)
def test_backoff_while_the_server_is_down_and_resume_after(backend_env, app_, js):
    own = Server(backend_env, workers=1, port=free_port()).start()
    try:
        client = js(own, app_, "js-backoff", discover=False)  # backoff 50 ms to 500 ms
        admin = admin_of(own, app_)
        admin.push_terminal(client.client_id, "before")
        client.wait_content("before")
        own.stop()

        down = len(client.of("request"))
        wait_for(lambda: len(client.of("request")) >= down + 6, timeout=30, message="six requests while down")
        times = [e["t"] for e in client.of("request")[down:down + 6]]
        gaps = [b - a for a, b in zip(times, times[1:])]
        # jittered exponential backoff: the n-th wait is at least half of min(maxDelay, minDelay * 2^n) (after
        # three failures in a row the retries fetch a token first: a JSONP or CORS client sees no 401)
        assert all(gap >= min(0.5, 0.05 * 2 ** n) / 2 for n, gap in enumerate(gaps)), gaps
        own.start()
        admin.push_terminal(client.client_id, "after")
        client.wait_content("after", timeout=60)
        assert client.contents() == ["before", "after"]
    finally:
        own.stop()


def test_a_notification_carries_its_fields(server, app_, js):
    client = js(server, app_, "js-notify")
    fields = {"title": "Goal", "body": "2:1", "url": "https://example.com/m/1", "image": "https://example.com/i.png",
              "extras": {"match": 1}}
    admin_of(server, app_).push_terminal(client.client_id, fields)
    got = client.wait("notification")
    assert (got["message"]["msg_type"], got["message"]["content"]) == (1, fields)
    assert got["notification"] == {"title": "Goal", "body": "2:1", "url": "https://example.com/m/1",
                                   "image": "https://example.com/i.png", "data": fields}


def test_a_click_is_reported_and_counted_once(server, api, app_, js):
    client = js(server, app_, "js-click")
    admin = admin_of(server, app_)
    job = admin.gen_job("clicks", "t")
    admin.push_terminal(client.client_id, "click me", job_id=job)
    delivery = client.wait_content("click me")["message"]["id"]
    for _ in range(2):
        client.command(f"click {delivery}")
    assert client.wait("clicked", 2)["error"] is None
    assert api.stats(app_, job)["clicked"] == 1
    client.command("click 999999999")
    assert client.wait("clicked", id=999999999)["error"]
