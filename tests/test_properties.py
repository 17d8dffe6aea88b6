"""Property tests: signing canonicalisation, limits, and the queue/ack state machine."""
import itertools
import time
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hipush import limits
from hipush.errors import ApiError
from hipush.storage import queues
from hipush_client import protocol

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
values = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
pairs = st.lists(st.tuples(names, values), max_size=6)


def stable_sorted(items):
    return sorted([("app_key" if k == "appkey" else k, v) for k, v in items if k != "sign"], key=lambda kv: kv[0])


@given(pairs, st.randoms())
def test_signatures_do_not_depend_on_the_order_of_distinct_names(items, random):
    distinct = list({k: (k, v) for k, v in items}.values())
    shuffled = distinct[:]
    random.shuffle(shuffled)
    assert protocol.md5_sign(distinct, "s") == protocol.md5_sign(shuffled, "s")
    assert protocol.hmac_sign("/p", distinct, "s") == protocol.hmac_sign("/p", shuffled, "s")


@given(pairs, pairs)
def test_hmac_canonical_strings_differ_whenever_the_parameters_do(a, b):
    if stable_sorted(a) != stable_sorted(b):
        assert protocol.hmac_canonical("/p", a) != protocol.hmac_canonical("/p", b)


@given(st.text(max_size=80))
def test_topic_rule_accepts_exactly_the_documented_names(text):
    valid = 1 <= len(text) <= 64 and all(c.isascii() and (c.isalnum() or c in "_.:@-") for c in text)
    try:
        limits.parse_topic("topic", text)
        accepted = len(text) <= 64
    except ApiError:
        accepted = False
    assert accepted == valid or len(text) > 64  # lengths are a size check made before (check_length)


@given(st.text(max_size=20))
def test_ids_are_plain_decimal_or_refused(text):
    try:
        number = limits.parse_id("job_id", text)
    except ApiError as error:
        assert (error.http_status, error.code) == (403, 1024)
    else:
        assert str(number) == text.lstrip("0") or text.strip("0") == ""


class QueueAckMachine(RuleBasedStateMachine):
    """Publish, poll with or without acks, lose answers (client gone, worker killed): the client
    still sees every message, in publish order, and after acks nothing is left."""

    pools = None

    @initialize()
    def start(self):
        self.ops = queues.Queues(self.pools, queue_length=10_000)
        self.client_id = uuid.uuid4().hex
        self.ids = itertools.count(1)
        self.published, self.acked = [], 0
        self.seen_batch = []

    def _poll(self, ack, limit):
        step = self.ops.begin_poll(self.pools.commands, self.client_id, "p", ack, int(time.time() * 1000), limit, 60_000, 1000)
        batch = [int(queues.message_json(e)) for e in step.entries]
        if ack is not None and int(ack) in self.published[self.acked:]:
            self.acked = self.published.index(int(ack)) + 1
        assert batch == self.published[self.acked:self.acked + len(batch)], "lost or reordered"
        assert len(batch) >= min(limit, len(self.published) - self.acked)  # in-flight ones all come back
        return batch

    @rule(count=st.integers(1, 4))
    def publish(self, count):
        pipe = self.pools.pipeline()
        for _ in range(count):
            delivery = next(self.ids)
            self.ops.enqueue(pipe, [self.client_id], queues.entry(delivery, 1, 2**60, str(delivery)), False)
            self.published.append(delivery)
        pipe.execute()

    @rule(limit=st.integers(1, 5))
    def poll_without_ack(self, limit):
        self.seen_batch = self._poll(None, limit)

    @precondition(lambda self: self.seen_batch)
    @rule(data=st.data(), limit=st.integers(1, 5))
    def poll_acking_part_of_the_last_answer(self, data, limit):
        ack = data.draw(st.sampled_from(self.seen_batch))
        self.seen_batch = self._poll(str(ack), limit)

    @rule(limit=st.integers(1, 5))
    def answer_lost(self, limit):
        self._poll(None, limit)  # the poll took messages but its client never saw the answer
        self.seen_batch = []

    @invariant()
    def nothing_acked_beyond_published(self):
        assert self.acked <= len(self.published)

    def teardown(self):
        if not hasattr(self, "ops"):
            return
        ack = None
        for _ in range(len(self.published) + 2):
            batch = self._poll(ack, 100)
            if not batch:
                break
            ack = str(batch[-1])
        assert self.acked == len(self.published)


def test_queue_ack_state_machine(pools):
    QueueAckMachine.pools = pools
    machine = QueueAckMachine.TestCase
    machine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                suppress_health_check=list(HealthCheck))
    machine().runTest()
