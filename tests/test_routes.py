"""Delivery routes (SPEC §4 "Delivery by terminal type"): e-mail by SMTP, sms/weixin/qq/ios by signed
webhooks, off the publishing path, retried with backoff, surviving a worker killed mid-delivery.

End to end: real gunicorn servers (2 gevent workers) on the run's backend, a real SMTP server (aiosmtpd)
and a real HTTP gateway (http.server), both in this process.

The suite's other servers share the backend but have no routes, so they never take these deliveries:
every push here is immediate (sent by the publishing call itself, never by another server's timer), and
only a worker with a route for a terminal type drains that type's queue.
"""
import email
import hashlib
import hmac
import json
import os
import signal
import tempfile
import threading
import time
import uuid
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from aiosmtpd.controller import Controller

from hipush import config as config_module
from hipush.storage import keys
from support import Api, Server, free_port, wait_for

SECRET = "gateway-hmac-secret"
SENDER = "hipush <push@hipush.test>"


# ---------------------------------------------------------------- configuration (in process)

def load(**env):
    return config_module.load({"HIPUSH_ENV_FILE": "/nonexistent", "HIPUSH_SECRET_KEY": "k",
                               "HIPUSH_DATA_DIR": tempfile.gettempdir(), **env})


def test_route_settings_default_to_no_routes():
    routes = load().routes
    assert (routes.smtp_host, routes.webhooks, routes.attempts, routes.backoff, routes.timeout) == ("", (), 5, 1, 10)


def test_route_settings_are_read_and_checked():
    routes = load(HIPUSH_SMTP_HOST="mail.example.com", HIPUSH_SMTP_TLS="ssl", HIPUSH_SMTP_FROM="a@example.com",
                  HIPUSH_WEBHOOK_SMS="https://gw.example.com/sms", HIPUSH_WEBHOOK_SECRET="s",
                  HIPUSH_ROUTE_ATTEMPTS="3").routes
    assert (routes.smtp_port, routes.smtp_tls, routes.attempts) == (465, "ssl", 3)  # ssl: port 465 by default
    assert routes.webhooks == (("sms", "https://gw.example.com/sms"),)
    assert "webhook_secret" not in repr(routes) and "smtp_password" not in repr(routes)  # no secrets in logs
    assert load(HIPUSH_SMTP_HOST="h", HIPUSH_SMTP_FROM="a@b.c").routes.smtp_port == 25


@pytest.mark.parametrize("env, complaint", [
    ({"HIPUSH_SMTP_TLS": "tls"}, "HIPUSH_SMTP_TLS must be one of none, starttls, ssl"),
    ({"HIPUSH_SMTP_PORT": "smtp"}, "HIPUSH_SMTP_PORT must be an integer"),
    ({"HIPUSH_SMTP_PORT": "70000"}, "HIPUSH_SMTP_PORT must be between 1 and 65535"),
    ({"HIPUSH_SMTP_HOST": "mail.example.com"}, "HIPUSH_SMTP_FROM"),
    ({"HIPUSH_WEBHOOK_SMS": "https://gw.example.com/sms"}, "HIPUSH_WEBHOOK_SECRET"),
    ({"HIPUSH_WEBHOOK_QQ": "gw.example.com/qq", "HIPUSH_WEBHOOK_SECRET": "s"}, "HIPUSH_WEBHOOK_QQ must be an http"),
    ({"HIPUSH_ROUTE_ATTEMPTS": "0"}, "HIPUSH_ROUTE_ATTEMPTS must be between"),
])
def test_bad_route_settings_are_refused_with_a_clear_message(env, complaint):
    with pytest.raises(config_module.ConfigError, match=complaint):
        load(**env)


# ---------------------------------------------------------------- a real SMTP server and HTTP gateway

class Mailbox:
    """aiosmtpd handler: keeps every mail it is given."""

    def __init__(self):
        self.mails = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                           "mail": email.message_from_bytes(envelope.original_content, policy=policy.default)})
        return "250 Message accepted for delivery"

    def to(self, address) -> list:
        return [m for m in self.mails if address in m["to"]]


class Hold:
    """A gateway answer that waits: until released (or `seconds`), then 200."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.received, self.release, self.answered = threading.Event(), threading.Event(), threading.Event()
        self.peer_port = None


class Gateway:
    """An HTTP gateway: records every POST; answers per client_id as planned (default 200)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.plans = {}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                with gateway.lock:
                    gateway.requests.append({"path": self.path, "headers": dict(self.headers), "raw": raw,
                                             "body": body})
                    plan = gateway.plans.get(body["client_id"])
                    action = plan.pop(0) if plan else 200
                if isinstance(action, Hold):
                    action.peer_port = self.client_address[1]
                    action.received.set()
                    action.release.wait(action.seconds)
                    action_status = 200
                else:
                    action_status = action
                try:
                    self.send_response(action_status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    self.wfile.flush()
                except OSError:  # the worker that asked is gone
                    return
                if isinstance(action, Hold):
                    action.answered.set()

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def url(self, path) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def of(self, client) -> list:
        with self.lock:
            return [r for r in self.requests if r["body"]["client_id"] == client["client_id"]]

    def stop(self):
        self.http.shutdown()
        self.http.server_close()


def text_of(mail) -> str:
    return mail.get_content().replace("\r\n", "\n")  # SMTP carries CRLF line ends


def signed_by(secret: str, request: dict) -> bool:
    """How a gateway checks a delivery (README, Delivery routes)."""
    timestamp = request["headers"]["X-Hipush-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + request["raw"],
                                    hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request["headers"]["X-Hipush-Signature"]) \
        and abs(time.time() - int(timestamp)) < 300


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture(scope="module")
def gateway():
    gw = Gateway()
    yield gw
    gw.stop()


class Routed:
    """A hipush server with routes, on a backend of its own (see the module docstring)."""

    def __init__(self, backend_env: dict, redis_client, env: dict, workers: int = 2):
        self.server = Server({**backend_env, **env}, workers=workers)
        self.base = self.server.base
        self.api = Api(self.base)
        self.redis = redis_client

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop()

    # REST calls (HTTP Basic) and the client side

    def rest(self, app, path, **params) -> dict:
        response = requests.post(self.base + path, data=params, auth=(app["app_key"], app["app_secret"]), timeout=30)
        body = response.json()
        assert response.status_code == 200 and body["status"] == 1, (path, response.status_code, body)
        return body

    def push(self, app, clients, msg, msg_type=0, **extra) -> int:
        return self.rest(app, "/push/terminal", terminal_ids=",".join(c["client_id"] for c in clients),
                         msg_type=msg_type, msg=msg if isinstance(msg, str) else json.dumps(msg), **extra)["msg_id"]

    def status(self, app, msg_id) -> dict:
        return self.rest(app, "/manager/query_msg_status", msg_id=msg_id)["data"][0]

    def counted(self, app, msg_id, timeout=15.0, **expected) -> dict:
        """Waits until the push's counts (sent, failed, expired, arrived) are as expected; returns its status."""
        last = {}

        def check():
            last["status"] = s = self.status(app, msg_id)
            return s if all(s[f"{name}_num"] == n for name, n in expected.items()) else None
        try:
            return wait_for(check, timeout=timeout, message=f"counts {expected} of message {msg_id}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last status: {last.get('status')}") from None

    def pending(self, terminal_type, delivery_id, client) -> bool:
        """Is a delivery still queued (or in hand) for a route?"""
        return bool(self.redis.hexists(keys.route_keys(terminal_type)["jobs"], f"{delivery_id}:{client['client_id']}"))

    def register(self, app, terminal_type, address=None) -> dict:
        fields = {"terminal_type": terminal_type}
        if address is not None:
            fields["address"] = address
        return self.api.register(app, f"dev-{uuid.uuid4().hex[:12]}", **fields)


@pytest.fixture(scope="module")
def routed(backend_env, redis_client, mailbox, gateway):
    """E-mail, sms, weixin and ios configured; qq not. Three attempts, backoff 1 s."""
    hipush = Routed(backend_env, redis_client, {
        "HIPUSH_SMTP_HOST": "127.0.0.1", "HIPUSH_SMTP_PORT": str(mailbox.port), "HIPUSH_SMTP_TLS": "none",
        "HIPUSH_SMTP_FROM": SENDER,
        "HIPUSH_WEBHOOK_SMS": gateway.url("/sms"), "HIPUSH_WEBHOOK_WEIXIN": gateway.url("/weixin"),
        "HIPUSH_WEBHOOK_IOS": gateway.url("/ios"), "HIPUSH_WEBHOOK_SECRET": SECRET,
        "HIPUSH_ROUTE_ATTEMPTS": "3", "HIPUSH_ROUTE_BACKOFF": "1",
    }).start()
    yield hipush
    hipush.stop()


@pytest.fixture
def app(routed):
    return routed.server.create_app("routes")


# ---------------------------------------------------------------- e-mail

def test_a_notification_is_mailed_utf8_with_its_title_as_subject(routed, app, mailbox):
    reader = routed.register(app, "email", "reader+1@example.com")
    msg_id = routed.push(app, [reader], {"title": "Grüße — 你好", "body": "Ünïcödé body ✓\nsecond line",
                                         "url": "https://example.com/news/1"}, msg_type=1)
    mails = wait_for(lambda: mailbox.to("reader+1@example.com"), message="the mail")
    assert len(mails) == 1
    got = mails[0]
    assert got["to"] == ["reader+1@example.com"] and got["from"] == "push@hipush.test"
    mail = got["mail"]
    assert mail["Subject"] == "Grüße — 你好"
    assert mail["To"] == "reader+1@example.com" and mail["From"] == SENDER
    assert mail.get_content_charset() == "utf-8"
    assert text_of(mail) == "Ünïcödé body ✓\nsecond line\n\nhttps://example.com/news/1\n"
    status = routed.counted(app, msg_id, sent=1)
    assert (status["target_num"], status["failed_num"], status["expired_num"]) == (1, 0, 0)
    assert mail["Message-ID"] == f"<hipush.{status['delivery_id']}.{reader['client_id']}@hipush.test>"


def test_a_plain_message_takes_its_first_line_as_subject(routed, app, mailbox):
    reader = routed.register(app, "email", "plain@example.com")
    routed.push(app, [reader], "\nFirst line here\nand the rest")
    mail = wait_for(lambda: mailbox.to("plain@example.com"), message="the mail")[0]["mail"]
    assert mail["Subject"] == "First line here"
    assert text_of(mail) == "\nFirst line here\nand the rest\n"


def test_an_email_terminal_without_an_address_counts_failed(routed, app, mailbox):
    nobody = routed.register(app, "email")
    broken = routed.register(app, "email", "not-an-address")
    msg_id = routed.push(app, [nobody, broken], "hello")
    status = routed.counted(app, msg_id, failed=2)
    assert (status["target_num"], status["sent_num"]) == (2, 0)


# ---------------------------------------------------------------- webhooks

def test_a_gateway_gets_signed_json(routed, app, gateway):
    phone = routed.register(app, "sms", "+8613800000000")
    msg_id = routed.push(app, [phone], "验证码 1234")
    status = routed.counted(app, msg_id, sent=1)
    [request] = gateway.of(phone)
    assert request["path"] == "/sms"
    assert request["headers"]["Content-Type"].startswith("application/json")
    assert signed_by(SECRET, request)
    assert not signed_by("another secret", request)
    body = request["body"]
    assert {k: body[k] for k in ("terminal_type", "client_id", "address", "delivery_id", "attempt")} == {
        "terminal_type": "sms", "client_id": phone["client_id"], "address": "+8613800000000",
        "delivery_id": status["delivery_id"], "attempt": 1}
    assert body["message"]["content"] == "验证码 1234" and body["message"]["msg_id"] == msg_id
    assert body["message"]["id"] == status["delivery_id"]
    assert "验证码".encode() in request["raw"]  # UTF-8, not \u escapes
    assert status["failed_num"] == 0


def test_a_gateway_failing_twice_with_503_gets_it_once_more_and_it_counts_sent_once(routed, app, gateway):
    user = routed.register(app, "weixin", "wx-openid-1")
    gateway.plans[user["client_id"]] = [503, 503, 200]
    msg_id = routed.push(app, [user], {"title": "t", "body": "b"}, msg_type=1)
    status = routed.counted(app, msg_id, sent=1)
    wait_for(lambda: not routed.pending("weixin", status["delivery_id"], user), message="the job to leave the queue")
    requests_seen = gateway.of(user)
    assert [r["body"]["attempt"] for r in requests_seen] == [1, 2, 3]
    assert {r["body"]["delivery_id"] for r in requests_seen} == {status["delivery_id"]}
    assert all(signed_by(SECRET, r) for r in requests_seen)
    status = routed.status(app, msg_id)
    assert (status["sent_num"], status["failed_num"], status["expired_num"]) == (1, 0, 0)


def test_a_gateway_refusing_with_400_counts_failed_without_retrying(routed, app, gateway):
    user = routed.register(app, "weixin", "wx-openid-2")
    gateway.plans[user["client_id"]] = [400]
    msg_id = routed.push(app, [user], "hi")
    status = routed.counted(app, msg_id, failed=1)
    assert not routed.pending("weixin", status["delivery_id"], user)
    assert len(gateway.of(user)) == 1 and status["sent_num"] == 0


def test_a_gateway_that_keeps_failing_counts_failed_after_the_last_attempt(routed, app, gateway):
    user = routed.register(app, "sms", "+15550000001")
    gateway.plans[user["client_id"]] = [503, 429, 500, 200]  # three attempts are configured
    msg_id = routed.push(app, [user], "hi")
    status = routed.counted(app, msg_id, failed=1)
    assert not routed.pending("sms", status["delivery_id"], user)
    assert [r["body"]["attempt"] for r in gateway.of(user)] == [1, 2, 3]
    assert status["sent_num"] == 0


def test_a_type_without_a_route_counts_failed(routed, app, gateway):
    qq = routed.register(app, "qq", "10001")  # no HIPUSH_WEBHOOK_QQ
    phone = routed.register(app, "sms", "+15550000002")
    msg_id = routed.push(app, [qq, phone], "hi")
    status = routed.counted(app, msg_id, failed=1, sent=1)
    assert status["target_num"] == 2
    assert gateway.of(qq) == [] and len(gateway.of(phone)) == 1


def test_an_expired_push_is_not_delivered(routed, app, gateway):
    phone = routed.register(app, "sms", "+15550000003")
    gateway.plans[phone["client_id"]] = [503]  # the retry (1 s later) would come after the expiry
    msg_id = routed.push(app, [phone], "short-lived", expires_time=1)
    status = routed.counted(app, msg_id, expired=1)
    assert (status["sent_num"], status["failed_num"]) == (0, 0)
    assert len(gateway.of(phone)) <= 1
    assert not routed.pending("sms", status["delivery_id"], phone)


def test_a_slow_gateway_does_not_slow_publishing(routed, app, gateway):
    """A REST and a legacy call, each fanning its push out before it answers, answer while the gateway still
    holds the delivery."""
    phones = [routed.register(app, "ios", f"apns-token-{i}") for i in range(2)]
    holds = [Hold(5), Hold(5)]
    for phone, hold in zip(phones, holds):
        gateway.plans[phone["client_id"]] = [hold]
    msg_id = routed.push(app, [phones[0]], "slow REST")
    job = routed.api.new_job(app)
    routed.api.send(app, job, phones[1], "slow legacy")
    assert not any(h.answered.is_set() for h in holds), "a publish call waited for the gateway"
    for hold in holds:
        assert hold.received.wait(15), "the gateway never got the delivery"
    assert not any(h.answered.is_set() for h in holds)
    for hold in holds:
        hold.release.set()
    routed.counted(app, msg_id, sent=1)
    wait_for(lambda: routed.api.stats(app, job)["sent"] == 1, message="the legacy push counted sent")


# ---------------------------------------------------------------- mixed push

def test_a_tag_with_a_web_and_an_email_client_reaches_both(routed, app, mailbox):
    web = routed.register(app, "web")
    mail = routed.register(app, "email", "tagged@example.com")
    routed.rest(app, "/manager/create_tag", tag="news")
    routed.rest(app, "/manager/terminal_add_tag", tag="news", terminal_ids=f"{web['client_id']},{mail['client_id']}")
    msg_id = routed.rest(app, "/push/tags", tags="news", msg_type=0, msg="breaking ✓")["msg_id"]
    [message] = routed.api.receive(web, 1)
    assert message["content"] == "breaking ✓" and message["msg_id"] == msg_id
    received = wait_for(lambda: mailbox.to("tagged@example.com"), message="the mail")
    assert received[0]["mail"]["Subject"] == "breaking ✓"
    status = routed.counted(app, msg_id, sent=2, arrived=1)
    assert (status["target_num"], status["failed_num"]) == (2, 0)


# ---------------------------------------------------------------- a worker dies mid-delivery

def worker_connected_from(server, local_port: int, remote_port: int):
    """The pid of the gunicorn worker holding the TCP connection 127.0.0.1:local_port -> 127.0.0.1:remote_port."""
    wanted = f"0100007F:{local_port:04X} 0100007F:{remote_port:04X}"
    with open("/proc/net/tcp") as table:
        sockets = {f"socket:[{line.split()[9]}]" for line in table if " ".join(line.split()[1:3]) == wanted}
    for pid in server.worker_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                    return pid
            except OSError:
                continue
    return None


def test_a_delivery_whose_worker_is_killed_is_made_by_another(backend_env, redis_client, gateway):
    """The job stays in Redis under a lease while it is delivered; when the worker dies the lease runs out
    (4 x HIPUSH_ROUTE_TIMEOUT + 2 s) and another worker delivers it."""
    # qq: a type the module's server has no route for, so only this server's workers deliver it
    hipush = Routed(backend_env, redis_client, {"HIPUSH_WEBHOOK_QQ": gateway.url("/qq"),
                                                "HIPUSH_WEBHOOK_SECRET": SECRET, "HIPUSH_ROUTE_TIMEOUT": "2"}).start()
    hold = Hold(30)
    try:
        app = hipush.server.create_app("crash")
        phone = hipush.register(app, "qq", "10002")
        gateway.plans[phone["client_id"]] = [hold]  # then 200
        msg_id = hipush.push(app, [phone], "survives")
        assert hold.received.wait(15), "the gateway never got the delivery"
        pid = wait_for(lambda: worker_connected_from(hipush.server, hold.peer_port, gateway.port),
                       message="the worker delivering it")
        os.kill(pid, signal.SIGKILL)
        hold.release.set()
        status = hipush.counted(app, msg_id, timeout=40, sent=1)  # the lease runs out 10 s after the claim
        wait_for(lambda: not hipush.pending("qq", status["delivery_id"], phone), message="the job to leave the queue")
        attempts = [r["body"]["attempt"] for r in gateway.of(phone)]
        assert attempts == [1, 2]
        status = hipush.status(app, msg_id)
        assert (status["sent_num"], status["failed_num"]) == (1, 0)
    finally:
        hold.release.set()
        hipush.stop()
