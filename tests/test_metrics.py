"""GET /metrics as Prometheus scrapes it: one node's view across its gunicorn workers, counters that move as
a user acts and never go backwards when a worker dies, the optional bearer token, endpoints by route; and the
node's figures in the registry (services/nodes.py)."""
import json
import re
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from hipush.services.nodes import Nodes
from hipush.storage.nodes import NodeRegistry
from support import ROOT, Api, Server, park_poll, wait_for
from test_rest_api import Rest, push

TOKEN = "metrics-token-for-tests"


@pytest.fixture(scope="module")
def node(backend_env, redis_client):
    """A node of its own (its workers are killed here), 2 workers, a metrics token, and a queue cap of 2 (so a
    third message queued for a client drops its first: one expired)."""
    server = Server({**backend_env, "HIPUSH_METRICS_TOKEN": TOKEN, "HIPUSH_QUEUE_LENGTH": "2"}, workers=2).start()
    yield server
    server.stop()


@pytest.fixture
def app(store):
    return store.create_app("metrics")


@pytest.fixture
def api(node):
    """The node's API (own HTTP session per test: a killed worker must not break the next test's connection)."""
    return Api(node.base)


def scrape(node) -> dict:
    """{(sample name, ((label, value), ...)): value} of one scrape, on a connection of its own (so any worker
    may answer it)."""
    response = requests.get(node.base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def settled(node, condition, message="the node's metrics to show it") -> dict:
    """The first scrape that meets `condition`: each worker writes its counts to the node's files once a second
    (hipush/metrics.py), so a scrape shows the other workers' counts up to a second late."""
    def scrape_meeting_it():
        figures = scrape(node)
        return figures if condition(figures) else None
    return wait_for(scrape_meeting_it, interval=0.2, message=message)


def value(figures, name, **labels) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before, after, name, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_counters_move_as_a_user_acts(node, api, app, store):
    before = scrape(node)
    client = api.register(app, "phone")
    job = api.new_job(app)
    api.send(app, job, client, "hello")
    [message] = api.poll(client, timeout=5)
    api.poll(client, ack=message["id"], timeout=0)
    for _ in range(2):  # counted once
        api.ok("/user/click", {"client_id": client["client_id"], "token": client["token"], "id": message["id"]})
    rest = Rest(api, app)
    rest.ok("/push/all", {"msg_type": 0, "msg": "to all"})
    push(rest, [client], "later", push_time=int(time.time()) + 3600)
    for n in range(3):  # the queue holds 2: the first of these is dropped
        api.send(app, job, client, f"queued {n}")
    api.send(app, job, api.register(app, "mailbox", terminal_type="email"), "mail")  # no SMTP here: failed at once
    expected = [("hipush_messages_published_total", {"kind": "unicast"}, 5),
                ("hipush_messages_published_total", {"kind": "broadcast"}, 1),
                ("hipush_messages_published_total", {"kind": "timed"}, 1), ("hipush_polls_total", {}, 2),
                ("hipush_messages_acked_total", {}, 1), ("hipush_messages_clicked_total", {}, 1),
                ("hipush_publish_to_ack_seconds_count", {}, 1),
                ("hipush_route_deliveries_total", {"type": "email", "outcome": "failed"}, 1),
                ("hipush_http_request_duration_seconds_count", {"endpoint": "/comet/poll"}, 2),
                ("hipush_http_request_duration_seconds_count", {"endpoint": "/publish/private"}, 5)]
    settled(node, lambda after: moved(before, after, "hipush_messages_expired_total") >= 1 and all(
        moved(before, after, name, **labels) == n for name, labels, n in expected), message=str(expected))


def test_endpoint_label_is_the_route_not_the_url(node, api):
    before = scrape(node)
    assert requests.get(node.base + "/no/such/path-7421", timeout=10).status_code == 404
    requests.get(node.base + "/healthz?probe=7422", timeout=10)
    after = settled(node, lambda after: moved(
        before, after, "hipush_http_request_duration_seconds_count", endpoint="unmatched") == 1 and moved(
        before, after, "hipush_http_request_duration_seconds_count", endpoint="/healthz") == 1)
    labels = {v for _, pairs in after for k, v in pairs if k == "endpoint"}
    assert not [label for label in labels if "742" in label], labels


def test_parked_polls_are_the_whole_nodes_and_counts_survive_a_killed_worker(node, api, app, redis_client):
    clients = [api.register(app, f"parked-{n}") for n in range(4)]
    polls = [park_poll(node.base, redis_client, client, timeout=30, raw=True) for client in clients]
    # each scrape, answered by either worker, sees all four (they are spread over both workers, or not:
    # either way one worker alone would not know the other's)
    settled(node, lambda figures: value(figures, "hipush_parked_polls") == 4)
    for _ in range(6):
        assert value(scrape(node), "hipush_parked_polls") == 4
    before = scrape(node)
    for pid in node.worker_pids():  # every worker dies (and with it, its parked polls); gunicorn starts others
        node.kill_worker(pid)
        wait_for(lambda: pid not in node.worker_pids() and len(node.worker_pids()) == 2, timeout=30,
                 message="the killed worker replaced")
    for poll in polls:
        poll.thread.join(30)
    wait_for(lambda: value(scrape(node), "hipush_parked_polls") == 0, message="dead workers' polls dropped")
    after = scrape(node)
    for name in ("hipush_polls_total", "hipush_messages_published_total", "hipush_messages_acked_total",
                 "hipush_http_request_duration_seconds_count", "hipush_http_request_duration_seconds_sum"):
        for (sample, labels), figure in before.items():
            if sample == name:
                assert after.get((sample, labels), 0) >= figure, (sample, labels, figure, after.get((sample, labels)))


def test_the_token_is_required_when_set(node):
    assert requests.get(node.base + "/metrics", timeout=10).status_code == 401
    wrong = requests.get(node.base + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"] == 1028
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")


def test_without_a_token_metrics_are_open(server):
    response = requests.get(server.base + "/metrics", timeout=10)
    assert response.status_code == 200 and "hipush_parked_polls " in response.text


def test_live_nodes_come_with_their_figures(node, api, app, redis_client, pools, store):
    """What an operator console shows of every node (services/nodes.py), here read by an in-process service."""
    nodes = Nodes(NodeRegistry(pools), store, "127.0.0.1:1", ttl=5, figures=dict)
    addr = f"127.0.0.1:{node.port}"
    client = api.register(app, "figures")
    poll = park_poll(node.base, redis_client, client, timeout=30, raw=True)

    def this_node():
        return next((n for n in nodes.live_with_figures() if n["addr"] == addr), {})

    def figured():
        # a request that is no poll, after the heartbeat's first sample: p99 leaves long polls out (a worker
        # recycled by an earlier test starts its one-minute window afresh)
        api.http.get(node.base + "/healthz", timeout=10)
        figures = this_node()
        return figures if figures.get("parked_polls") == 1 and figures.get("p99_ms", 0) > 0 else None
    figures = wait_for(figured, message="the heartbeat to carry the parked poll and a p99")
    assert figures["workers"] == 2 and figures["requests_per_second"] > 0 and figures["p99_ms"] > 0, figures
    assert 0 <= figures["heartbeat_age_ms"] < 5000, figures
    api.send(app, api.new_job(app), client, "wake")
    poll.result(30)


def test_the_grafana_dashboard_uses_only_exported_metrics(node, api, app):
    """docs/grafana-dashboard.json: every metric a panel asks for is one that /metrics has."""
    mailbox = api.register(app, "dashboard", terminal_type="email")  # a labelled series exists once counted
    api.send(app, api.new_job(app), mailbox, "a route delivery")
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"hipush_\w+", target["expr"])}
    assert asked
    settled(node, lambda figures: asked <= {sample for sample, _ in figures})
