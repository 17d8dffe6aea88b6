"""The SSE stream (GET /comet/stream) and its acknowledgements (POST /comet/ack), end to end against gunicorn:
events, at-least-once delivery across reconnects, drops, killed workers and lost acks, heartbeats, max age,
revocation, presence, the queue cap and a graceful stop."""
import json
import queue
import socket
import threading
import time
from urllib.parse import urlencode

import pytest
import requests

from hipush_client import Admin, Client
from support import Api, Background, client_key, poll_parked, wait_for
from test_delivery_faults import started, wait_for_respawn, worker_holding


class Stream:
    """An SSE stream read in a thread: its events (id, event, data parsed) land on a queue, its comments in a
    list; `clean` tells whether it ended with the chunked terminator (not cut off)."""

    def __init__(self, base, client, token=None):
        params = {"client_id": client["client_id"], "token": token or client["token"]}
        self.response = requests.get(base + "/comet/stream", params=params, stream=True, timeout=(5, 60))
        self.events = queue.Queue()
        self.comments = []
        self.ended = threading.Event()
        self.clean = None
        if self.response.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        event = {}
        try:
            for line in self.response.iter_lines(chunk_size=None, decode_unicode=True):
                if line.startswith(":"):
                    self.comments.append(time.monotonic())
                elif line:
                    name, _, value = line.partition(": ")
                    event[name] = value
                elif "data" in event:
                    event["data"] = json.loads(event["data"])
                    self.events.put(event)
                    event = {}
                else:
                    event = {}  # the stream's opening `retry:` field
            self.clean = True
        except (requests.RequestException, AttributeError, ValueError):  # cut off, or closed by the test
            self.clean = False
        finally:
            self.ended.set()

    def take(self, count, timeout=10.0) -> list:
        """The next `count` events (a `missed` one counts), in order."""
        deadline = time.monotonic() + timeout
        taken = []
        while len(taken) < count:
            try:
                taken.append(self.events.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{len(taken)} of {count} events within {timeout} s: {taken}") from None
        return taken

    def nothing_more(self, seconds=0.5) -> bool:
        time.sleep(seconds)  # no event is expected: nothing to wait on but time
        return self.events.empty()

    def close(self):
        """Hangs up at once (closing the response would wait for the reader thread's recv to return)."""
        sock = self.response.raw._connection.sock if self.response.raw._connection else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.response.close()


def contents(events) -> list:
    return [e["data"]["content"] for e in events]


def open_stream(base, redis_client, client) -> Stream:
    """A stream of `client`, parked on its queue by the time this returns."""
    stream = Stream(base, client)
    assert stream.response.status_code == 200, stream.response.text
    wait_for(lambda: poll_parked(redis_client, client["client_id"]) or stream.ended.is_set(),
             message="the stream to park")
    assert not stream.ended.is_set(), "the stream ended instead of parking"
    return stream


def ack(api, client, delivery_id, token=None):
    return api.call("/comet/ack", {"client_id": client["client_id"], "token": token or client["token"],
                                   "ack": delivery_id}, method="POST")


@pytest.fixture(scope="module")
def shared_app(server):
    return server.create_app("stream")


@pytest.fixture(scope="module")
def short(backend_env, redis_client):
    """A server whose streams last 3 s, send a comment every 0.5 s idle, and whose queues hold 5 messages."""
    yield from started(backend_env, workers=1, HIPUSH_STREAM_MAX_AGE="3", HIPUSH_STREAM_HEARTBEAT="0.5",
                       HIPUSH_QUEUE_LENGTH="5")


# ---------------------------------------------------------------- receiving and acknowledging

def test_stream_delivers_each_message_as_an_event_and_ack_ends_its_flight(server, api, shared_app, redis_client):
    client = api.register(shared_app, "receiver")
    job = api.new_job(shared_app)
    stream = open_stream(server.base, redis_client, client)
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    try:
        api.send(shared_app, job, client, "one")
        api.send(shared_app, job, client, "two", msg_type=1)
        events = stream.take(2)
        assert contents(events) == ["one", "two"]
        for event in events:
            assert event["id"] == str(event["data"]["id"]), "the event id is the delivery id"
            assert {"id", "msg_id", "job_id", "msg_type", "content", "ts"} <= set(event["data"])
        assert events[1]["data"]["msg_type"] == 1
        inflight = client_key(client["client_id"], "inflight")
        assert redis_client.llen(inflight) == 2, "sent on the stream: in flight until acknowledged"

        assert ack(api, client, events[-1]["id"]).json() == {"ok": True, "result": "OK"}
        assert redis_client.llen(inflight) == 0
        stats = api.stats(shared_app, job)
        assert (stats["sent"], stats["arrived"]) == (2, 2)
        assert stream.nothing_more(), "nothing is sent twice on one stream"
    finally:
        stream.close()


def test_a_new_stream_hands_out_first_what_is_still_in_flight(server, api, shared_app, redis_client):
    client = api.register(shared_app, "reconnecting")
    job = api.new_job(shared_app)
    first = open_stream(server.base, redis_client, client)
    for content in ("a", "b", "c"):
        api.send(shared_app, job, client, content)
    a, b, c = first.take(3)
    first.close()
    assert ack(api, client, a["id"]).status_code == 200  # the ack of b and c never came

    second = open_stream(server.base, redis_client, client)
    try:
        assert contents(second.take(2)) == ["b", "c"]
        api.send(shared_app, job, client, "d")
        assert contents(second.take(1)) == ["d"]
    finally:
        second.close()
    assert [m["content"] for m in api.poll(client)] == ["b", "c", "d"], "a poll hands out the stream's in flight too"


def test_a_lost_ack_means_the_messages_come_again(server, api, shared_app, redis_client):
    client = api.register(shared_app, "lost-ack")
    job = api.new_job(shared_app)
    stream = open_stream(server.base, redis_client, client)
    api.send(shared_app, job, client, "x")
    [x] = stream.take(1)
    stream.close()  # its ack was lost on the way
    again = open_stream(server.base, redis_client, client)
    try:
        [x2] = again.take(1)
        assert x2["id"] == x["id"] and x2["data"] == x["data"]
        assert ack(api, client, x2["id"]).status_code == 200
        assert ack(api, client, x2["id"]).status_code == 200, "acknowledging twice is harmless"
        assert api.stats(shared_app, job)["arrived"] == 1
    finally:
        again.close()


def test_a_newer_stream_ends_the_older_one(server, api, shared_app, redis_client):
    client = api.register(shared_app, "twice")
    older = open_stream(server.base, redis_client, client)
    newer = Stream(server.base, client)
    try:
        assert older.ended.wait(10) and older.clean, "the older stream ends, cleanly"
        wait_for(lambda: poll_parked(redis_client, client["client_id"]), message="the newer stream to park")
        api.send(shared_app, api.new_job(shared_app), client, "to the newer")
        assert contents(newer.take(1)) == ["to the newer"]
        assert older.events.empty()
    finally:
        older.close()
        newer.close()


def test_a_stream_with_1000_messages_in_flight_waits_for_an_ack(server, api, shared_app, redis_client):
    client = api.register(shared_app, "window")
    with Admin(server.base, shared_app["app_key"], shared_app["app_secret"], "basic") as admin:
        admin.push_batch([{"terminal_ids": client["client_id"], "msg": f"w{i}"} for i in range(1000)])
    stream = Stream(server.base, client)
    try:
        events = stream.take(1000)
        assert contents(events) == [f"w{i}" for i in range(1000)]
        api.send(shared_app, api.new_job(shared_app), client, "beyond the window")
        wait_for(lambda: poll_parked(redis_client, client["client_id"]), message="the stream to wait for an ack")
        assert stream.nothing_more(), "a full window sends nothing more before an acknowledgement"
        assert ack(api, client, events[499]["id"]).status_code == 200
        assert contents(stream.take(1)) == ["beyond the window"]
    finally:
        stream.close()


def test_ack_needs_a_valid_token_and_an_id(server, api, shared_app):
    client = api.register(shared_app, "acker")
    assert ack(api, client, "1", token="nope").status_code == 401
    assert ack(api, client, "x").status_code == 403
    assert api.call("/comet/ack", {"client_id": client["client_id"], "token": client["token"]},
                    method="POST").status_code == 403
    assert Stream(server.base, client, token="nope").response.status_code == 401


# ---------------------------------------------------------------- heartbeat, max age, queue cap

def test_an_idle_stream_sends_comments_and_ends_at_its_max_age(short, shared_app, redis_client):
    api = Api(short.base)
    client = api.register(shared_app, "idle")
    started_at = time.monotonic()
    stream = open_stream(short.base, redis_client, client)
    try:
        assert stream.ended.wait(30) and stream.clean, "the stream ends cleanly at its max age"
        lasted = time.monotonic() - started_at
        assert lasted >= 2.9, f"the stream ended after {lasted:.1f} s, before its max age of 3 s"
        assert len(stream.comments) >= 2, f"comments while idle (every 0.5 s): {len(stream.comments)}"
        assert stream.events.empty()
    finally:
        stream.close()


def test_a_capped_queue_reports_what_it_dropped_as_a_missed_event(short, shared_app, redis_client):
    api = Api(short.base)
    client = api.register(shared_app, "overflowing")
    job = api.new_job(shared_app)
    for n in range(1, 9):
        api.send(shared_app, job, client, f"m{n}")
    stream = Stream(short.base, client)
    try:
        events = stream.take(6)
        assert contents(events[:5]) == ["m4", "m5", "m6", "m7", "m8"]
        assert events[5] == {"event": "missed", "data": {"missed": 3}}
        assert ack(api, client, events[4]["id"]).status_code == 200
        stats = api.stats(shared_app, job)
        assert (stats["sent"], stats["arrived"], stats["expired"]) == (8, 5, 3)
    finally:
        stream.close()


def test_an_expired_message_is_not_streamed_and_counts_as_expired(server, api, shared_app, redis_client):
    client = api.register(shared_app, "expiring")
    with Admin(server.base, shared_app["app_key"], shared_app["app_secret"], "basic") as admin:
        job = admin.gen_job("j", "t")
        admin.push_terminal(client["client_id"], "short-lived", expires_time=1, job_id=job)
        expired_at = time.time() + 1.1
        admin.push_terminal(client["client_id"], "lasting", job_id=job)
        time.sleep(max(0.0, expired_at - time.time()))  # the clock must pass the first one's expiry
        stream = Stream(server.base, client)
        try:
            assert contents(stream.take(1)) == ["lasting"]
            wait_for(lambda: admin.job_stats(job).expired == 1, message="expired == 1")
        finally:
            stream.close()


# ---------------------------------------------------------------- revocation, presence

def test_a_revoked_tokens_stream_ends_at_once(server, api, shared_app, redis_client):
    client = api.register(shared_app, "revoked")
    stream = open_stream(server.base, redis_client, client)
    try:
        assert api.ok("/user/revoke", {"client_id": client["client_id"]}, shared_app) == "OK"
        revoked_at = time.monotonic()
        assert stream.ended.wait(10) and stream.clean
        # the design ends it within a second (the revocation wakes it); the margin is for a loaded machine
        assert time.monotonic() - revoked_at < 3
        api.send(shared_app, api.new_job(shared_app), client, "not for the revoked token")
        assert Stream(server.base, client).response.status_code == 401
        assert ack(api, client, "1").status_code == 401
    finally:
        stream.close()


def test_a_streaming_client_is_online(server, api, shared_app, redis_client):
    streaming, never = api.register(shared_app, "online-stream"), api.register(shared_app, "online-never")
    stream = open_stream(server.base, redis_client, streaming)
    try:
        job = api.new_job(shared_app)
        api.send(shared_app, job, streaming, "live", online="true")
        api.send(shared_app, job, never, "live", online="true")
        assert contents(stream.take(1)) == ["live"]
        assert api.poll(never) == [], "online=true skips a client with no stream or poll"
        assert redis_client.exists(client_key(streaming["client_id"], "online"))
    finally:
        stream.close()


# ---------------------------------------------------------------- no loss: drops, killed workers, stopping

def raw_stream(server, client) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    query = urlencode({"client_id": client["client_id"], "token": client["token"]})
    sock.sendall(f"GET /comet/stream?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def test_a_client_that_drops_mid_stream_gets_its_messages_on_the_next_one(server, api, shared_app, redis_client):
    client = api.register(shared_app, "dropping")
    job = api.new_job(shared_app)
    sock = raw_stream(server, client)
    wait_for(lambda: poll_parked(redis_client, client["client_id"]), message="the raw stream to park")
    api.send(shared_app, job, client, "seen, never acknowledged")
    wait_for(lambda: b"seen, never" in sock.recv(65536), message="the event on the raw stream")
    sock.close()  # gone before acknowledging
    api.send(shared_app, job, client, "sent to nobody")  # the dropped stream may take it before it notices
    wait_for(lambda: redis_client.llen(client_key(client["client_id"], "queue")) == 0
             or not poll_parked(redis_client, client["client_id"]), message="the message taken or the stream gone")

    stream = open_stream(server.base, redis_client, client)
    try:
        assert contents(stream.take(2)) == ["seen, never acknowledged", "sent to nobody"]
    finally:
        stream.close()


@pytest.fixture(scope="module")
def fragile(backend_env, redis_client):
    yield from started(backend_env, workers=1)


def test_killing_the_worker_of_a_stream_loses_nothing(fragile, server, api, shared_app, redis_client):
    client = api.register(shared_app, "killed")
    job = api.new_job(shared_app)
    sock = raw_stream(fragile, client)
    try:
        wait_for(lambda: poll_parked(redis_client, client["client_id"]), message="the raw stream to park")
        api.send(shared_app, job, client, "before")
        wait_for(lambda: b"before" in sock.recv(65536), message="the event on the raw stream")
        victim = worker_holding(fragile, sock.getsockname()[1])
        fragile.kill_worker(victim)
        api.send(shared_app, job, client, "while dead")  # through the session server
        wait_for_respawn(fragile, [victim])
    finally:
        sock.close()
    stream = open_stream(fragile.base, redis_client, client)
    try:
        events = stream.take(2)
        assert contents(events) == ["before", "while dead"]
        assert ack(Api(fragile.base), client, events[-1]["id"]).status_code == 200
        assert api.poll(client) == []
    finally:
        stream.close()


def test_a_stopping_node_ends_its_streams_cleanly_and_clients_go_elsewhere(backend_env, server, api, shared_app,
                                                                            redis_client):
    stopping = next(started_gen := started(backend_env, workers=1))
    client = api.register(shared_app, "stopping")
    stream = open_stream(stopping.base, redis_client, client)
    try:
        stopping.stop()
        assert stream.ended.wait(20) and stream.clean, "the stream ends with the end of its chunked body"
        elsewhere = open_stream(server.base, redis_client, client)
        api.send(shared_app, api.new_job(shared_app), client, "after the stop")
        assert contents(elsewhere.take(1)) == ["after the stop"]
        elsewhere.close()
    finally:
        stream.close()
        started_gen.close()


# ---------------------------------------------------------------- the Python kit over SSE

def test_the_python_client_receives_over_sse_acknowledges_in_batches_and_stops_at_once(server, api, shared_app,
                                                                                       redis_client):
    admin = Admin(server.base, shared_app["app_key"], shared_app["app_secret"])
    client = Client(server.base, app_key=shared_app["app_key"], device_id="kit-sse", transport="sse",
                    backoff_base=0.05, backoff_cap=0.5)
    job = admin.gen_job("j", "t")
    for i in range(150):
        admin.publish_private(job, client.client_id, f"k{i}")
    stop = threading.Event()
    seen = []

    def on_message(message):
        seen.append(message.content)
        if len(seen) == 150:
            admin.publish_private(job, client.client_id, "last")
        if len(seen) == 151:
            stop.set()

    running = Background(client.run, on_message, stop)
    running.result(30)
    assert seen == [f"k{i}" for i in range(150)] + ["last"]
    wait_for(lambda: redis_client.llen(client_key(client.client_id, "inflight")) == 0,
             message="everything acknowledged when run() returned")
    assert admin.job_stats(job).arrived == 151 or wait_for(lambda: admin.job_stats(job).arrived == 151)
    client.close()
    admin.close()
