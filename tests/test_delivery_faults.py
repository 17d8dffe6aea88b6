"""No message is lost (SPEC §3, §5): vanished clients, killed workers, queue overflow, several workers
and nodes, and the statistics that go with delivery. End to end against real gunicorn servers."""
import json
import os
import socket
import time
import uuid
from urllib.parse import urlencode

import pytest
import requests

from support import Api, Background, Server, client_key, park_poll, poll_parked, wait_for

PARK = 20  # timeout of polls that must park; none of the tests waits for it


# ---------------------------------------------------------------- helpers

def contents(messages) -> list:
    return [m["content"] for m in messages]


class RawPoll:
    """A long poll written by hand on a plain socket, so a test can drop it or see which worker holds it."""

    def __init__(self, server, client, timeout=PARK):
        query = urlencode({"client_id": client["client_id"], "token": client["token"], "timeout": timeout})
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        self.sock.sendall(f"GET /comet/poll?{query} HTTP/1.0\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        self.local_port = self.sock.getsockname()[1]

    def body(self, timeout: float) -> str:
        """The answer's body, read until the server closes the connection."""
        self.sock.settimeout(timeout)
        data = b""
        while chunk := self.sock.recv(65536):
            data += chunk
        self.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"200", head
        return body.decode()

    def close(self):
        self.sock.close()


def worker_holding(server, client_port: int):
    """The pid of the gunicorn worker whose socket is the far end of our connection from `client_port`."""
    wanted = f"0100007F:{server.port:04X} 0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as table:
        inodes = [line.split()[9] for line in table if " ".join(line.split()[1:3]) == wanted]
    sockets = {f"socket:[{inode}]" for inode in inodes}
    for pid in server.worker_pids():
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                    return pid
            except OSError:  # closed since listdir
                continue
    return None


def receive_across_restarts(base, client, count, timeout=40.0) -> list:
    """Like Api.receive (polls, acks, drops duplicates by id), retrying while a worker is dead or booting."""
    api = Api(base)
    seen, ordered, ack = set(), [], None
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"received {contents(ordered)}, {count - len(ordered)} missing"
        try:
            messages = api.poll(client, ack=ack, timeout=0 if len(ordered) >= count else 2)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            time.sleep(0.1)  # the master is respawning the worker; retry
            continue
        if len(ordered) >= count and ack is not None:
            assert all(m["id"] in seen for m in messages), f"more than {count} messages: {messages}"
            return ordered  # the ack of everything went through
        for m in messages:
            ack = m["id"]
            if m["id"] not in seen:
                seen.add(m["id"])
                ordered.append(m)


def answers_http(ip, port) -> bool:
    try:
        return requests.get(f"http://{ip}:{port}/service/random", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def wait_for_respawn(server, killed):
    """Waits until gunicorn has a full set of workers again, none of them one that was killed."""
    def respawned():
        pids = server.worker_pids()
        return len(pids) == server.workers and not set(pids) & set(killed)
    wait_for(respawned, timeout=30, message="gunicorn to respawn its workers")


def started(backend_env, workers, **env):
    """For fixtures: yields a further hipush server on the run's backend (same Redis, same database), then stops it."""
    srv = Server({**backend_env, **env}, workers=workers).start()
    try:
        yield srv
    finally:
        srv.stop()


# ---------------------------------------------------------------- a client that vanishes mid-poll

def test_message_taken_by_an_abandoned_poll_is_delivered_to_the_next_poll(server, api, app_, redis_client):
    client = api.register(app_, "vanishing")
    abandoned = RawPoll(server, client)
    wait_for(lambda: poll_parked(redis_client, client["client_id"]), message="the raw poll to park")
    abandoned.close()

    api.send(app_, api.new_job(app_), client, "nobody is listening")
    # the abandoned poll wakes and takes the message off the queue (into in-flight, not into memory)
    wait_for(lambda: redis_client.llen(client_key(client["client_id"], "queue")) == 0,
             message="the abandoned poll to take the message")

    assert contents(api.receive(client, 1, timeout=10)) == ["nobody is listening"], \
        "a message handed to a poll whose client vanished must be delivered again"


# ---------------------------------------------------------------- killed workers

@pytest.fixture(scope="module")
def fragile(backend_env, redis_client):
    """A dedicated 2-worker server whose workers the tests kill with SIGKILL."""
    yield from started(backend_env, workers=2)


def park_raw_polls(server, api, app, redis_client, count, prefix):
    """`count` new clients, each with a poll parked on `server` over a raw socket."""
    clients, polls = [], []
    for i in range(count):
        clients.append(api.register(app, f"{prefix}-{i}"))
        polls.append(RawPoll(server, clients[-1]))
        wait_for(lambda: poll_parked(redis_client, clients[-1]["client_id"]), message="the raw poll to park")
    return clients, polls


def test_killing_a_worker_with_parked_polls_loses_nothing(fragile, api, app_, redis_client):
    clients, polls = park_raw_polls(fragile, api, app_, redis_client, 6, "kill-one")
    try:
        victim = wait_for(lambda: worker_holding(fragile, polls[0].local_port), message="the worker of a poll")
        fragile.kill_worker(victim)  # its parked polls die with it; the other worker's stay parked
        wait_for_respawn(fragile, [victim])

        job = api.new_job(app_)
        expected = {c["client_id"]: [f"{c['client_id'][:6]}-{n}" for n in range(3)] for c in clients}
        for client in clients:
            for content in expected[client["client_id"]]:
                api.send(app_, job, client, content)
        for client in clients:
            assert contents(receive_across_restarts(fragile.base, client, 3)) == expected[client["client_id"]]
    finally:
        for poll in polls:
            poll.close()


def test_killing_every_worker_mid_delivery_loses_nothing(fragile, api, app_, redis_client):
    clients, polls = park_raw_polls(fragile, api, app_, redis_client, 6, "kill-all")
    job = api.new_job(app_)
    rounds = 5
    published = []

    def publish_rounds():
        publisher = Api(api.base)  # through the session server, which stays up
        for n in range(rounds):
            for client in clients:
                publisher.send(app_, job, client, f"round-{n}")
                published.append(client["client_id"])

    try:
        publishing = Background(publish_rounds)
        wait_for(lambda: len(published) >= len(clients), message="the first round to be published")
        killed = fragile.worker_pids()
        for pid in killed:  # while the parked polls answer and later rounds are still being published
            fragile.kill_worker(pid)
        publishing.result(timeout=60)
        wait_for_respawn(fragile, killed)

        for client in clients:
            assert contents(receive_across_restarts(fragile.base, client, rounds)) == \
                [f"round-{n}" for n in range(rounds)], client["client_id"]
    finally:
        for poll in polls:
            poll.close()


# ---------------------------------------------------------------- the queue cap

@pytest.fixture
def capped(backend_env, redis_client):
    """A server whose client queues hold only the newest 5 messages."""
    yield from started(backend_env, workers=1, HIPUSH_QUEUE_LENGTH="5")


def test_queue_overflow_drops_the_oldest_and_reports_them(capped, app_):
    api = Api(capped.base)
    client = api.register(app_, "overflowing")
    job = api.new_job(app_)
    for n in range(1, 9):
        api.send(app_, job, client, f"m{n}")

    result = api.ok("/comet/poll", {"client_id": client["client_id"], "token": client["token"], "timeout": 0})
    assert contents(result["messages"]) == ["m4", "m5", "m6", "m7", "m8"], "the newest 5, in publish order"
    assert result.get("missed") == 3
    wait_for(lambda: api.stats(app_, job)["expired"] == 3, message="expired == 3")

    after = api.ok("/comet/poll", {"client_id": client["client_id"], "token": client["token"], "timeout": 0,
                                   "ack": result["messages"][-1]["id"]})
    assert after["messages"] == [] and not after.get("missed"), "missed is reported once"
    stats = api.stats(app_, job)
    assert (stats["sent"], stats["arrived"], stats["expired"]) == (8, 5, 3)


# ---------------------------------------------------------------- several workers, several nodes

def test_polls_parked_on_either_worker_receive_a_publish(server, api, app_, redis_client):
    """Polls are parked until both workers of the session server hold at least one, so whichever worker
    takes the publish, some delivery crosses from one worker process to the other."""
    polls = {}  # client_id -> (client, RawPoll, worker pid)
    try:
        while len({pid for _, _, pid in polls.values()}) < 2:
            assert len(polls) < 40, "gunicorn never handed a poll to the second worker"
            client = api.register(app_, f"spread-{len(polls)}")
            poll = RawPoll(server, client)
            wait_for(lambda: poll_parked(redis_client, client["client_id"]), message="the raw poll to park")
            polls[client["client_id"]] = (client, poll, wait_for(lambda: worker_holding(server, poll.local_port),
                                                                 message="the worker holding the poll"))
        job = api.new_job(app_)
        for client, _, _ in polls.values():
            api.send(app_, job, client, f"to {client['client_id'][:6]}")
        for client, poll, _ in polls.values():
            answer = json.loads(poll.body(timeout=10))
            assert contents(answer["result"]["messages"]) == [f"to {client['client_id'][:6]}"]
    finally:
        for _, poll, _ in polls.values():
            poll.close()


@pytest.fixture(scope="module")
def node_b(backend_env, redis_client):
    """A second node: its own gunicorn and public address, the same Redis and database."""
    yield from started(backend_env, workers=1)


def test_poll_parked_on_one_node_receives_a_publish_made_through_another(server, api, app_, redis_client, node_b):
    api_b = Api(node_b.base)
    client = api.register(app_, "roaming")
    poll = park_poll(server.base, redis_client, client, timeout=PARK)
    api_b.send(app_, api_b.new_job(app_), client, "from node B")
    [first] = poll.result(timeout=10)
    assert first["content"] == "from node B"

    poll = park_poll(node_b.base, redis_client, client, timeout=PARK, ack=first["id"])
    api.send(app_, api.new_job(app_), client, "from node A")
    assert contents(poll.result(timeout=10)) == ["from node A"]


def test_service_hash_is_the_same_on_every_node_and_spreads_over_all_of_them(server, api, node_b):
    api_b = Api(node_b.base)
    both = {("127.0.0.1", server.port), ("127.0.0.1", node_b.port)}
    client_ids = [uuid.uuid4().hex for _ in range(64)]

    def node_for(a, client_id):
        answer = a.ok("/service/hash", {"client_id": client_id})
        assert isinstance(answer["port"], int), answer
        return answer["ip"], answer["port"]

    def answers_only_live_nodes_including_both():
        nodes = {node_for(api, c) for c in client_ids}
        return nodes >= both and all(answers_http(ip, port) for ip, port in nodes)

    # other servers of this run may be up too (they count); one that just stopped may still be listed
    # until its heartbeat lapses, which would change the answers while this test compares them
    wait_for(answers_only_live_nodes_including_both, timeout=40,
             message="/service/hash to spread clients over live nodes, both of these among them")
    for client_id in client_ids:
        assert node_for(api, client_id) == node_for(api_b, client_id), client_id


# ---------------------------------------------------------------- statistics

def test_arrived_is_counted_once_when_the_same_id_is_acknowledged_twice(api, app_):
    client = api.register(app_, "double-ack")
    job = api.new_job(app_)
    api.send(app_, job, client, "once")
    [message] = api.poll(client)
    assert api.poll(client, ack=message["id"]) == []
    assert api.stats(app_, job)["arrived"] == 1, "arrived is counted before the acknowledging poll answers"
    assert api.poll(client, ack=message["id"]) == []
    assert api.stats(app_, job)["arrived"] == 1


def test_sent_is_counted_once_per_message_and_client_however_often_redelivered(api, app_):
    client = api.register(app_, "redelivered")
    job = api.new_job(app_)
    api.send(app_, job, client, "a")
    api.send(app_, job, client, "b")
    for _ in range(3):
        assert contents(api.poll(client)) == ["a", "b"]  # never acknowledged: delivered again
    stats = api.stats(app_, job)
    assert (stats["sent"], stats["arrived"]) == (2, 0)
    last = api.poll(client)[-1]["id"]
    assert api.poll(client, ack=last) == []
    stats = api.stats(app_, job)
    assert (stats["sent"], stats["arrived"]) == (2, 2)
