"""hipush on a Redis Cluster whose master fails (HIPUSH_TEST_REDIS_CLUSTER=1: the session's local cluster).

A master holding parked clients' keys is killed with SIGKILL. Its parked polls answer 503 / 1031; within
the cluster's node timeout plus a few seconds (its replica has taken over) publishes and polls work again;
a message the clients acknowledged before is never handed out again, and every publish answered OK is
delivered (those the dead shard could not take are queued by the retry of pushes left sending). Publishes
answered with an error during the failover are counted (they are not delivered).
"""
import time
import uuid

import pytest
import redis

import support
from bench.cluster import LocalCluster
from hipush.services.publish import STATUS_SENT
from hipush.storage import queues
from hipush.storage import redis as redis_pools
from support import Api, park_poll, pushes_of_job, wait_for

pytestmark = pytest.mark.cluster

RECOVERY_SLACK = 15  # seconds past the node timeout the cluster and hipush may take to serve again


def test_a_killed_master_fails_over_without_redelivery_or_loss(server, api, app_, store, redis_client, local_cluster):
    job = api.new_job(app_)
    clients = [api.register(app_, f"failover-{i}") for i in range(24)]
    victim = local_cluster.master_of(_queue_key(clients[0]))
    on_victim = [c for c in clients if local_cluster.master_of(_queue_key(c)) == victim]
    others = [c for c in clients if c not in on_victim][:3]
    acked = {}
    for client in on_victim + others:
        api.send(app_, job, client, "before")
        [message] = api.receive(client, 1)
        acked[client["client_id"]] = message["id"]
    parked = [park_poll(server.base, redis_client, client, timeout=30, raw=True) for client in on_victim]

    local_cluster.kill(victim)
    killed_at = time.monotonic()
    try:
        answers = [_status(poll.result(timeout=40)) for poll in parked]
        assert answers == [(503, 1031)] * len(parked)

        probe, published, refused = on_victim[0], 0, 0
        deadline = killed_at + local_cluster.node_timeout / 1000 + RECOVERY_SLACK
        while True:
            assert time.monotonic() < deadline, f"no recovery within {deadline - killed_at:.0f}s"
            response = api.call("/publish/private", {"job_id": job, "client_id": probe["client_id"], "msg_type": 0,
                                                     "content": "after", "online": "false"}, app_)
            if response.status_code == 200:
                published += 1
                response = api.poll_response(probe, timeout=1)
                if response.status_code == 200:
                    break
            assert _status(response) == (503, 1031), response.text
            refused += 1
            time.sleep(0.2)
        recovered_after = time.monotonic() - killed_at
        print(f"\npolls and publishes work again {recovered_after:.1f}s after the master was killed "
              f"(node timeout {local_cluster.node_timeout} ms); {refused} calls answered 503 / 1031 meanwhile")

        # publishes answered OK while the shard was down are queued by a retry (HIPUSH_SEND_LEASE) before "later"
        wait_for(lambda: all(p["status"] == STATUS_SENT for p in pushes_of_job(store, job)), timeout=30,
                 message="every push answered OK queued")
        for client in on_victim + others:
            api.send(app_, job, client, "later")
        for client in on_victim + others:
            received = _drain(api, client)
            assert acked[client["client_id"]] not in [m["id"] for m in received], "an acknowledged message came back"
            contents = [m["content"] for m in received]
            assert contents[-1] == "later" and "before" not in contents
            if client is probe:
                assert contents.count("after") == published, "a publish answered OK was lost"
    finally:
        local_cluster.restart(victim)
        local_cluster.wait_healthy()


def test_a_password_protected_cluster_is_reached_with_the_password_of_the_redis_url():
    """HIPUSH_REDIS_URL gives the cluster's password; its host is not used."""
    cluster = LocalCluster(masters=3).start()
    try:
        for port in cluster.ports:
            node = redis.Redis(port=port)
            node.config_set("masterauth", "s3cret")
            node.config_set("requirepass", "s3cret")
            node.close()
        pools = redis_pools.connect("redis://:s3cret@unused.invalid:1/0", cluster.seeds, 5, 60)
        ops = queues.Queues(pools, queue_length=10)
        clients = [uuid.uuid4().hex for _ in range(10)]
        pipe = pools.pipeline()
        at = ops.enqueue(pipe, clients, queues.entry(1, 7, 2**60, "{}"), False)
        assert ops.enqueued(pipe.execute(), at) == [[]] * 10
        held = ops.hold(clients[0])  # a blocking connection of its own pool, with the password too
        try:
            step = ops.begin_poll(held, clients[0], held.poller_id(1), None, 0, 10, 60_000, 1000)
            assert [queues.message_json(e) for e in step.entries] == ["{}"]
        finally:
            held.release()
        with pytest.raises(redis.exceptions.RedisClusterException, match="username-password"):
            redis_pools.connect("redis://:wrong@unused.invalid:1/0", cluster.seeds, 5, 60)
    finally:
        cluster.stop()


def _queue_key(client: dict) -> str:
    return support.client_key(client["client_id"], "queue")


def _status(response) -> tuple:
    """(HTTP status, error code; 0 for a success)"""
    return response.status_code, response.json().get("error", 0)


def _drain(api: Api, client: dict) -> list:
    """Every message waiting for the client, acknowledged as they come, until a poll finds none."""
    received, ack = [], None
    while True:
        messages = api.poll(client, ack=ack, timeout=0)
        if not messages:
            return received
        received += messages
        ack = messages[-1]["id"]
