"""Timed pushes fire exactly once with several workers on several nodes (SPEC §4), whatever the nodes' clocks."""
import glob
import time
from email.utils import parsedate_to_datetime

import pytest
import requests

from support import Api, Background, Server, wait_for

PUSHES = 10


def start_nodes(first_env: dict, *others) -> list:
    """Nodes on one backend, each (env, workers): the first alone (it may create the schema), the others
    side by side."""
    nodes = [Server(first_env[0], workers=first_env[1]).start()] + [Server(env, workers) for env, workers in others]
    starting = [Background(node.start) for node in nodes[1:]]
    try:
        for start in starting:
            start.result(60)
    except BaseException:
        stop_nodes(nodes)
        raise
    return nodes


def stop_nodes(nodes) -> None:
    for stopping in [Background(node.stop) for node in nodes]:
        stopping.result(60)


@pytest.fixture
def two_nodes(backend_env, redis_client):
    nodes = start_nodes((backend_env, 3), (backend_env, 2))
    yield nodes
    stop_nodes(nodes)


def _libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is missing: the clock-skew test needs Debian's faketime package. "
                    "`make test` installs it (its `faketime` target runs apt-get install -y faketime).", pytrace=False)
    return found[0]


def skewed(backend_env: dict, seconds: int) -> dict:
    """The environment of a node whose clock is `seconds` off: libfaketime, preloaded into gunicorn and every
    process it starts. Its monotonic clock is faked too, consistently in all of them: with
    FAKETIME_DONT_FAKE_MONOTONIC=1, Debian's libfaketime 0.9.10 fails Python 3.11's time.sleep with EINVAL
    (clock_nanosleep with an absolute monotonic time; libfaketime issue 426), which kills gunicorn's master.
    Faking it makes timed waits of real threads (sem_clockwait) hang instead, and a node has none: its master
    is single-threaded and its workers' threads are gevent's greenlets."""
    return {**backend_env, "LD_PRELOAD": _libfaketime(), "FAKETIME": f"{seconds:+d}s"}


def clock_offset(node) -> float:
    """How far the node's wall clock is from ours, by the Date header of its answer (1 s resolution)."""
    answer = requests.get(node.base + "/service/random", timeout=10)
    return parsedate_to_datetime(answer.headers["Date"]).timestamp() - time.time()


def push_timed(nodes, app, client, due: int) -> list:
    """PUSHES pushes of one message each, due at unix second `due`, made on the nodes in turn; their msg_ids."""
    auth = (app["app_key"], app["app_secret"])
    msg_ids = []
    for i in range(PUSHES):
        answer = requests.post(nodes[i % len(nodes)].base + "/push/terminal", auth=auth, timeout=30, data={
            "terminal_ids": client["client_id"], "msg_type": 0, "msg": f"timer {i}", "push_time": str(due)}).json()
        msg_ids.append(answer["msg_id"])
    return msg_ids


def receive_all_once(api, client, until: float) -> None:
    """Polls (acknowledging each batch with the next poll) until PUSHES pushes came and `until` (unix time)
    has passed, so that every node has looked for due pushes after their time; then nothing more may come.
    No answer is lost here, so any repeat is a push sent twice (it would come again with its id, as a
    second delivery of an acknowledged message)."""
    deliveries, ack = [], None
    deadline = time.monotonic() + 60
    while len(deliveries) < PUSHES or time.time() < until:
        assert time.monotonic() < deadline, f"{len(deliveries)} deliveries so far"
        batch = api.poll(client, ack=ack, timeout=1)
        if batch:
            ack = batch[-1]["id"]
            deliveries += [(m["id"], m["content"]) for m in batch]
    deliveries += [(m["id"], m["content"]) for m in api.poll(client, ack=ack, timeout=0)]
    assert sorted(content for _, content in deliveries) == sorted(f"timer {i}" for i in range(PUSHES)), deliveries
    assert len({delivery_id for delivery_id, _ in deliveries}) == PUSHES, deliveries


def assert_sent_once(node, app, msg_ids) -> None:
    auth = (app["app_key"], app["app_secret"])

    def status(msg_id):
        return requests.get(node.base + "/manager/query_msg_status", params={"msg_id": msg_id}, auth=auth,
                            timeout=30).json()

    for msg_id in msg_ids:
        [push] = wait_for(lambda: (d := status(msg_id)["data"]) and d[0]["arrived_num"] == 1 and d,
                          message=f"message {msg_id} counted arrived")
        assert (push["status"], push["target_num"], push["sent_num"]) == (0, 1, 1)


def test_timed_pushes_fire_once_across_three_workers_and_two_nodes(two_nodes, store):
    node_a, node_b = two_nodes
    app = store.create_app("timers")
    api = Api(node_a.base)
    client = api.register(app, "timed")
    due = int(time.time()) + 3
    msg_ids = push_timed(two_nodes, app, client, due)
    receive_all_once(api, client, until=due + 1)
    assert_sent_once(node_b, app, msg_ids)


AHEAD, BEHIND = 30, -3


@pytest.fixture
def skewed_nodes(backend_env, redis_client):
    nodes = start_nodes((backend_env, 3), (skewed(backend_env, AHEAD), 2), (skewed(backend_env, BEHIND), 1))
    yield nodes
    stop_nodes(nodes)


def test_a_node_whose_clock_is_ahead_or_behind_never_fires_a_push_twice(skewed_nodes, store):
    """Nodes: true clock (3 workers), 30 s ahead (2 workers), 3 s behind (1 worker); ten pushes due in
    3 s, made on each node in turn.

    What happens: the push row's status is the only claim (waiting -> sending, in SQL), and no clock takes
    part in it. The node ahead sees the pushes due at once: it fires them about 3 s early, and sends those
    made on it before answering (their push_time is in its past, within the 60 s tolerance). Early is
    accepted; twice is not. The node with the true clock, and the one behind 3 s after it, find the pushes
    no longer waiting when their clocks reach the push time: the client polls on until the slowest clock
    has passed it (and one check of every node after that), and gets each push once, counted sent once.
    (A node further behind only delays the same observation.)"""
    true_node, ahead, behind = skewed_nodes
    offsets = clock_offset(ahead), clock_offset(behind)
    assert abs(offsets[0] - AHEAD) <= 2 and abs(offsets[1] - BEHIND) <= 2, f"libfaketime did not skew: {offsets}"
    app = store.create_app("skewed timers")
    api = Api(true_node.base)
    client = api.register(app, "timed-skewed")
    due = int(time.time()) + 3
    msg_ids = push_timed(skewed_nodes, app, client, due)
    receive_all_once(api, client, until=due - BEHIND + 2)
    assert_sent_once(behind, app, msg_ids)
