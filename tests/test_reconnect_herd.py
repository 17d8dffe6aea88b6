"""1,000 clients reconnecting at once (a thundering herd) after their server restarted.

1,000 clients park long polls on one node (tests/herd.py, one gevent process). The node is killed (master
and workers, SIGKILL, as in a crash: every connection drops at once); while it is down another node of the
same service publishes one message to each client; the node starts again on the same port, and every
client, retrying every 0.5 s (±50 %) since it lost its connection, comes back within 0.75 s of its
listener. Each must get its own message exactly once and acknowledge it, with no 5xx but 503 on the way,
and the node must be healthy afterwards.
"""
import json
import subprocess
import sys
import time
import uuid

import pytest

from support import ROOT, Api, Background, Server, polls_parked, wait_for

CLIENTS = 1000
# failures a client may see while its server is stopping, down or starting: anything else fails the test
CONNECTION_FAILURES = {"ConnectionRefusedError", "ConnectionResetError", "BrokenPipeError", "Closed"}


class HerdProcess:
    """tests/herd.py: one JSON line a command, one JSON line an answer."""

    def __init__(self, config: dict):
        self.process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "herd.py")], cwd=ROOT, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.process.stdin.write(json.dumps(config) + "\n")
        self.process.stdin.flush()

    def answer(self, timeout: float) -> dict:
        line = Background(self.process.stdout.readline).result(timeout)
        assert line, f"tests/herd.py exited ({self.process.poll()})"
        return json.loads(line)

    def ask(self, cmd: str, timeout: float = 30, **fields) -> dict:
        self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()
        return self.answer(timeout)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def herd_node(backend_env, redis_client):
    """Its own node: 1,000 registrations from one address would trip the per-IP limit on /user/*."""
    node = Server({**backend_env, "HIPUSH_CLIENT_IP_RATE": "0"}, workers=2).start()
    yield node
    node.stop()


def test_a_thousand_clients_reconnecting_at_once_get_their_messages_once(herd_node, server, store, redis_client):
    app = store.create_app("herd")
    herd = HerdProcess({"host": "127.0.0.1", "port": herd_node.port, "app": app, "count": CLIENTS,
                        "prefix": f"herd-{uuid.uuid4().hex[:8]}", "poll_timeout": 30, "retry_every": 0.5})
    try:
        registered = herd.answer(timeout=60)
        assert registered["errors"] == 0 and len(registered["clients"]) == CLIENTS, registered["errors"]
        client_ids = [c["client_id"] for c in registered["clients"]]
        herd.ask("open")
        wait_for(lambda: polls_parked(redis_client, client_ids) == CLIENTS, timeout=30, interval=0.2,
                 message=f"{CLIENTS} polls parked")

        herd_node.kill()
        published = herd.ask("publish", timeout=60, port=server.port)  # by the other node, while it is down
        assert published["statuses"] == {"200": CLIENTS}, published
        assert herd.ask("status")["received"] == 0

        restarted = time.monotonic()
        herd_node.start()
        ready = time.monotonic()
        wait_for(lambda: herd.ask("status")["clients_with_messages"] == CLIENTS, timeout=30, interval=0.2,
                 message=f"all {CLIENTS} clients served")
        served = time.monotonic()
        wait_for(lambda: polls_parked(redis_client, client_ids) == CLIENTS, timeout=30, interval=0.2,
                 message="every client parked again, having acknowledged its message")

        deliveries = herd.ask("deliveries")["deliveries"]
        wrong = {idx: d for idx, d in enumerate(deliveries) if [content for _, content in d] != [f"herd-{idx}"]}
        assert not wrong, f"{len(wrong)} clients got other than their one message: {list(wrong.items())[:5]}"
        api = Api(herd_node.base)
        stats = wait_for(lambda: (s := api.stats(app, registered["job_id"]))["arrived"] == CLIENTS and s,
                         message="every message counted arrived")
        assert (stats["sent"], stats["expired"], stats["failed"]) == (CLIENTS, 0, 0), stats

        # healthy: its workers all up, and a message reaches a parked poll at once
        back = herd.ask("status")
        assert len(herd_node.worker_pids()) == 2
        api.send(app, registered["job_id"], registered["clients"][0], "after the herd")
        wait_for(lambda: herd.ask("status")["received"] == CLIENTS + 1, timeout=5, message="a message after it")
        final = herd.ask("stop")
    finally:
        herd.close()

    print(f"\nherd: the node took {ready - restarted:.1f}s to start and served all {CLIENTS} clients "
          f"{served - ready:.1f}s later; publishing took {published['seconds']}s; "
          f"answers {final['statuses']}, failures {final['failures']}")
    assert set(final["statuses"]) <= {"200", "503"}, (final["statuses"], final["samples"])
    assert set(final["failures"]) <= CONNECTION_FAILURES, (final["failures"], final["samples"])
    assert (final["statuses"], final["failures"]) == (
        {**back["statuses"], "200": back["statuses"]["200"] + 1}, back["failures"]), "a failure after the node was back"
