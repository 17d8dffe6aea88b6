"""Slow clients cannot hold a worker's connections: a request's headers and body must arrive in time.

gunicorn's gevent worker reads the request line and headers under gevent.Timeout(keepalive), which
gunicorn.conf.py sets to min(2, HIPUSH_READ_TIMEOUT); hipush reads a POST body within
HIPUSH_READ_TIMEOUT (hipush/views/params.py) and answers 408 / 1024 when it does not arrive.
The server here runs with HIPUSH_READ_TIMEOUT=1, so both bounds are 1 second.
"""
import json
import selectors
import socket
import time
from urllib.parse import urlencode

import pytest
import requests

from support import Api, Background, Server, seed_sign, wait_for

READ_TIMEOUT = 1
MARGIN = 2.5  # a loaded 2-core machine may run the server's timer late, never early
SLOW_CLIENTS = 50
TRICKLE_EVERY = 0.2


@pytest.fixture(scope="module")
def slow_server(backend_env, redis_client):
    srv = Server({**backend_env, "HIPUSH_READ_TIMEOUT": str(READ_TIMEOUT)}, workers=2).start()
    yield srv
    srv.stop()


def _assert_closed_without_answer(sock) -> None:
    """For a readable socket: the server closed it (EOF or reset) rather than answering."""
    try:
        data = sock.recv(4096)
    except (ConnectionResetError, BrokenPipeError):
        return
    assert not data, f"the server answered an unfinished request: {data[:200]!r}"


def test_connections_trickling_their_headers_are_closed_while_others_are_served(slow_server):
    selector = selectors.DefaultSelector()
    opened = {}
    for i in range(SLOW_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", slow_server.port), timeout=5)
        sock.sendall(b"GET /service/random HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        selector.register(sock, selectors.EVENT_READ, i)
        opened[i] = time.monotonic()
    normal = Background(requests.get, slow_server.base + "/service/random", timeout=10)

    closed, line = {}, 0
    deadline = max(opened.values()) + READ_TIMEOUT + MARGIN
    while len(closed) < SLOW_CLIENTS and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=TRICKLE_EVERY):
            _assert_closed_without_answer(key.fileobj)
            closed[key.data] = time.monotonic() - opened[key.data]
            selector.unregister(key.fileobj)
            key.fileobj.close()
        line += 1
        for key in list(selector.get_map().values()):  # one more header line on every open connection
            try:
                key.fileobj.sendall(f"X-Trickle-{line}: x\r\n".encode())
            except (ConnectionResetError, BrokenPipeError):
                pass  # closed by the server: the next select sees it
    for key in list(selector.get_map().values()):
        key.fileobj.close()

    assert normal.result(10).status_code == 200
    assert normal.elapsed < 2, f"a normal request took {normal.elapsed:.2f}s beside the slow ones"
    assert len(closed) == SLOW_CLIENTS, (
        f"{SLOW_CLIENTS - len(closed)} of {SLOW_CLIENTS} connections still open {READ_TIMEOUT + MARGIN}s "
        f"after they began trickling headers")
    # closed by the header timeout, not for some other reason before it
    assert min(closed.values()) > READ_TIMEOUT - 0.1, sorted(closed.values())[:5]


def _answer(sock, timeout: float):
    """(status, body) of the server's answer, read until it closes the connection; None when it closed
    (or reset) the connection without one."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except socket.timeout:
        raise AssertionError(f"neither answered nor closed within {timeout}s; got {data[:200]!r}") from None
    except ConnectionResetError:
        return None
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize("then", ["stalls", "trickles"])
def test_a_publish_whose_body_does_not_arrive_in_time_is_refused_and_publishes_nothing(slow_server, store, then):
    app = store.create_app("slow-body")
    api = Api(slow_server.base)
    client = api.register(app, "slow-body")
    job_id = api.new_job(app)
    pairs = [("app_key", app["app_key"]), ("job_id", job_id), ("client_id", client["client_id"]),
             ("msg_type", 0), ("content", "sent slowly"), ("online", "false")]
    body = urlencode(pairs + [("sign", seed_sign(pairs, app["app_secret"]))]).encode()
    head = (f"POST /publish/private HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n").encode()

    sock = socket.create_connection(("127.0.0.1", slow_server.port), timeout=5)
    sock.sendall(head + body[:len(body) // 2])
    started = time.monotonic()
    if then == "trickles":  # a byte now and then: every read gets something, only the whole body is late
        trickle = Background(_trickle, sock, body[len(body) // 2:-1])
    answer = _answer(sock, timeout=READ_TIMEOUT + MARGIN)
    elapsed = time.monotonic() - started
    sock.close()
    assert READ_TIMEOUT - 0.1 < elapsed < READ_TIMEOUT + MARGIN, elapsed
    if then == "stalls":
        assert answer is not None, "the connection was closed without an answer"
        status, error = answer
        assert (status, json.loads(error)) == (408, {"error": 1024, "reason": (
            f"the request body did not arrive within {READ_TIMEOUT} s")}), (status, error)
    else:
        # The server answers 408 and closes with trickled bytes unread, so its kernel resets the
        # connection: the answer may or may not reach us first. Either way it is over in time.
        trickle.result(5)
        assert answer is None or answer[0] == 408, answer

    # nothing was published: the same request, sent whole, publishes the only message the client gets
    sent = requests.post(slow_server.base + "/publish/private", data=body, timeout=10,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert sent.status_code == 200, sent.text
    assert [m["content"] for m in api.receive(client, 1)] == ["sent slowly"]
    assert api.poll(client, timeout=0) == []
    stats = wait_for(lambda: (s := api.stats(app, job_id))["arrived"] == 1 and s, message="the message counted")
    assert stats["sent"] == 1, stats


def _trickle(sock, rest: bytes):
    """Sends `rest` a byte at a time until the connection is closed (it never sends all of it in time)."""
    for i in range(len(rest)):
        time.sleep(TRICKLE_EVERY)
        try:
            sock.send(rest[i:i + 1])
        except OSError:
            return
