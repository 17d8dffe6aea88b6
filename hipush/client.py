"""The hipush Python SDK: `Client` receives messages over the comet long poll, `Admin` calls the
backend APIs (legacy signed calls of SPEC §3 and the REST API of §4).

It depends on `requests` and `hipush.signing` only (no Flask, no Redis), so scripts,
gateways and app backends can use it without the server's dependencies.

Receiving::

    from hipush.client import Client

    client = Client("http://127.0.0.1:8080", app_key=KEY, device_id="gateway-1")
    for message in client.messages():      # blocks; reconnects by itself
        handle(message.content)              # acknowledged once the loop asks for the next one

Pushing::

    from hipush.client import Admin

    admin = Admin("http://127.0.0.1:8080", KEY, SECRET)
    msg_id = admin.push_terminal([client_id], "hello")

Every failure the server answers with (either envelope) is raised as one exception
class, `HipushError(code, reason, http_status)`, carrying SPEC §7's error code; a call
that got no answer at all (connection refused, timed out) raises it with `code` and
`http_status` None and the transport error as `__cause__`.
"""
from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import MISSING, dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union
from urllib.parse import urlsplit

import requests
import urllib3

from . import signing

__all__ = [
    "Admin", "Client", "HipushError", "Message", "JobStats", "MsgStatus", "PushRecord", "Tag", "Terminal", "Page",
    "ERROR_BAD_PARAM", "ERROR_INTERNAL", "ERROR_NOT_FOUND", "ERROR_METHOD", "ERROR_AUTH", "ERROR_RATE_LIMITED",
    "ERROR_TOO_LARGE", "ERROR_UNAVAILABLE", "STATUS_SENT", "STATUS_WAITING", "STATUS_SENDING", "STATUS_FAILED",
    "STATUS_CANCELLED",
]

log = logging.getLogger("hipush.client")

# SPEC §7 error codes
ERROR_BAD_PARAM = 1024
ERROR_INTERNAL = 1025
ERROR_NOT_FOUND = 1026
ERROR_METHOD = 1027
ERROR_AUTH = 1028
ERROR_RATE_LIMITED = 1029
ERROR_TOO_LARGE = 1030
ERROR_UNAVAILABLE = 1031
_CODE_OF_STATUS = {403: ERROR_BAD_PARAM, 500: ERROR_INTERNAL, 404: ERROR_NOT_FOUND, 405: ERROR_METHOD,
                   401: ERROR_AUTH, 429: ERROR_RATE_LIMITED, 413: ERROR_TOO_LARGE, 503: ERROR_UNAVAILABLE}

# SPEC §4 message (push) status codes
STATUS_SENT = 0
STATUS_WAITING = 1
STATUS_SENDING = 2
STATUS_FAILED = 3
STATUS_CANCELLED = 4

MAX_POLL_TIMEOUT = 60
SUBSCRIBE_BATCH = 100  # client_ids per /topic/subscribe call (SPEC §8)


# ---------------------------------------------------------------- errors and answers

class HipushError(Exception):
    """A failed call. `code`: SPEC §7's error code (1024 bad parameter, 1026 not found, 1028 authentication,
    1029 rate limited, ...), None when no answer came at all; `http_status`: the answer's HTTP status
    (None without an answer); `reason`: the server's explanation; `retry_after`: seconds, for 429."""

    def __init__(self, code: Optional[int], reason: str, http_status: Optional[int] = None,
                 retry_after: Optional[float] = None):
        super().__init__(f"{reason} (error {code}, HTTP {http_status})" if http_status else reason)
        self.code = code
        self.reason = reason
        self.http_status = http_status
        self.retry_after = retry_after

    def __repr__(self):
        return f"HipushError(code={self.code!r}, reason={self.reason!r}, http_status={self.http_status!r})"


def _retry_after(response) -> Optional[float]:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_of(response, body) -> HipushError:
    """The HipushError of a failed answer, in either envelope (or none: a proxy's error page)."""
    code = reason = None
    if isinstance(body, dict):
        if "error_code" in body:  # REST: {"status": 0, "error_code": CODE, "error": "reason"}
            code, reason = body.get("error_code"), body.get("error")
        elif isinstance(body.get("error"), int):  # legacy: {"error": CODE, "reason": "..."}
            code, reason = body.get("error"), body.get("reason")
    if code is None:
        code = _CODE_OF_STATUS.get(response.status_code)
    if not reason:
        reason = (response.text or "").strip()[:200] or f"HTTP {response.status_code}"
    return HipushError(code, reason, response.status_code, _retry_after(response))


def _json_body(response):
    try:
        return response.json()
    except ValueError:
        return None


def _legacy_result(response):
    """R of a legacy answer {"ok": true, "result": R}, else raises HipushError."""
    body = _json_body(response)
    if response.status_code == 200 and isinstance(body, dict) and body.get("ok") is True:
        return body.get("result")
    raise _error_of(response, body)


def _rest_result(response) -> dict:
    """The body of a REST answer {"status": 1, ...}, else raises HipushError."""
    body = _json_body(response)
    if response.status_code == 200 and isinstance(body, dict) and body.get("status") == 1:
        return body
    raise _error_of(response, body)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request surely did not reach the server (it could not connect), so any call may be
    repeated; a read timeout or a dropped connection may come after the server acted."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        cause = exc.args[0] if exc.args else None
        reason = getattr(cause, "reason", cause)  # urllib3's MaxRetryError wraps the connect failure
        return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))
    return False


def _transport_error(exc: requests.RequestException) -> HipushError:
    """No answer at all. The reason names the host and path but never the query string (tokens, signs)."""
    request = getattr(exc, "request", None)
    where = ""
    if request is not None and request.url:
        parts = urlsplit(request.url)
        where = f" from {parts.scheme}://{parts.netloc}{parts.path}"
    cause = exc.args[0] if exc.args else None
    detail = type(getattr(cause, "reason", None) or cause or exc).__name__
    error = HipushError(None, f"no answer{where} ({type(exc).__name__}: {detail})")
    error.__cause__ = exc
    return error


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: between half and all of min(cap, base * 2^(attempt-1))."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return ceiling / 2 + random.random() * ceiling / 2


def _text(value) -> str:
    """A parameter as the wire (and the signature) sees it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _comma(values, name: str) -> str:
    if isinstance(values, str):
        return values
    items = [_text(v) for v in values]
    if not items:
        raise ValueError(f"{name} must not be empty")
    return ",".join(items)


# ---------------------------------------------------------------- typed results

def _split(cls, data: dict) -> dict:
    """The known fields of `cls` from `data` (a missing one: its default, else None), the rest in `extra`."""
    fields = {name: f for name, f in cls.__dataclass_fields__.items() if name != "extra"}
    known = {name: data[name] for name in fields if name in data}
    for name, f in fields.items():
        if name not in known and f.default is MISSING and f.default_factory is MISSING:
            known[name] = None
    known["extra"] = {k: v for k, v in data.items() if k not in fields}
    return known


@dataclass(frozen=True)
class Message:
    """One message a poll handed out (SPEC §5). `id` is the delivery id (what is acknowledged and
    deduplicated); `msg_id` the message's id (what /push/* answered); `content` a string, or for a
    notification pushed as a JSON object, that object (a dict); `ts` unix milliseconds."""

    id: int
    msg_id: Optional[int]
    job_id: Optional[int]
    msg_type: int
    content: Any
    ts: Optional[int]
    extra: dict = field(default_factory=dict)

    @property
    def is_notification(self) -> bool:
        return self.msg_type == 1

    @classmethod
    def from_json(cls, data: dict) -> "Message":
        return cls(**_split(cls, data))


@dataclass(frozen=True)
class JobStats:
    """/job/stats: (message, client) pairs sent, arrived (acknowledged), expired and failed for one job."""

    job_id: int
    name: str
    type: str
    created_at: Any = None
    sent: int = 0
    arrived: int = 0
    expired: int = 0
    failed: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MsgStatus:
    """One push (delivery) of a message, from /manager/query_msg_status. status: STATUS_SENT (0),
    STATUS_WAITING (1), STATUS_SENDING (2), STATUS_FAILED (3), STATUS_CANCELLED (4)."""

    msg_id: int
    status: int
    send_time: Optional[str] = None
    target_num: int = 0
    sent_num: int = 0
    arrived_num: int = 0
    delivery_id: Optional[int] = None
    push_time: Optional[str] = None
    expired_num: Optional[int] = None
    failed_num: Optional[int] = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PushRecord:
    """A push of /manager/query_tag_msgs or /manager/query_timers; `msg` a string or a notification dict."""

    msg_id: int
    msg: Any
    msg_type: int
    status: int
    send_time: Optional[str] = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Tag:
    """A tag (= topic) of /manager/query_tags."""

    id: int
    tag: str
    info: str = ""
    create_time: Optional[str] = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Terminal:
    """A terminal (= client) of /manager/query_terminal(s) and update_terminal, with its live state: `online`
    (a poll parked now, or lately), `queued_num` messages waiting for it and `unacked_num` handed to a poll
    and not yet acknowledged."""

    terminal_id: str
    device_id: str
    terminal_type: str
    org: Optional[str] = None
    address: Optional[str] = None
    lat: Optional[float] = None
    lng: Optional[float] = None
    create_time: Optional[str] = None
    online: bool = False
    queued_num: int = 0
    unacked_num: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """One page of a listing: `total_num` items in all, `items` those of this page."""

    total_num: int
    items: list

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)


def _page_of(cls, body: dict) -> Page:
    return Page(int(body.get("total_num", 0)), [cls(**_split(cls, row)) for row in body.get("data") or []])


# ---------------------------------------------------------------- the admin (backend) client

def _base_url(server: str) -> str:
    server = server.strip().rstrip("/")
    if "://" not in server:
        server = "http://" + server
    return server


def _push_time_text(value) -> Optional[str]:
    """push_time as SPEC §4 takes it: a datetime with a time zone as ISO 8601, a naive one as
    'YYYY-MM-DD HH:MM:SS' (read in the server's HIPUSH_TIMEZONE), a number as unix seconds, text as is."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.isoformat(timespec="seconds")
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value))
    return str(value)


class Admin:
    """Calls of an app backend: the legacy signed API (SPEC §3) and the REST API (SPEC §4).

    sign_method: "md5" (the seed's signature), "hmac-sha256" (SPEC §6: adds sign_method, timestamp and a
    fresh nonce to every call), or "basic" (REST calls authenticate with HTTP Basic app_key:app_secret;
    legacy calls, which accept only signatures, are then signed with HMAC-SHA256).

    Timeouts: `timeout` seconds to connect and to read each answer (a number or a (connect, read) pair).
    Retries: a call is repeated (up to `retries` more times, after a jittered `backoff`) when the request
    could not be sent at all; when the server answered 429 (it did nothing; waits Retry-After, at most
    `max_retry_after` s); and, for reads and other idempotent calls only, after a read timeout, a
    dropped connection or a 5xx answer. A publish is repeated after those only when it carries an
    `idempotency_key`, which makes the server answer a repeat as it answered the first call.
    """

    def __init__(self, server: str, app_key: str, app_secret: str, sign_method: str = "md5", *,
                 timeout: Union[float, tuple] = (5.0, 30.0), retries: int = 2, backoff: float = 0.5,
                 backoff_cap: float = 10.0, max_retry_after: float = 30.0,
                 session: Optional[requests.Session] = None):
        if sign_method not in ("md5", signing.HMAC_METHOD, "basic"):
            raise ValueError("sign_method must be md5, hmac-sha256 or basic")
        if not app_key or not app_secret:
            raise ValueError("app_key and app_secret are required")
        self.server = _base_url(server)
        self.app_key = app_key
        self.app_secret = app_secret
        self.sign_method = sign_method
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self._own_session = session is None
        self.http = session or requests.Session()

    def close(self) -> None:
        if self._own_session:
            self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # signing
    def sign(self, path: str, params: Sequence[tuple], method: Optional[str] = None) -> list:
        """(name, value) pairs for a call of `path` ("/manager/del_tag") with app_key and the signature added,
        as `method` (default: this Admin's; "basic" signs with HMAC-SHA256) wants them. An HMAC signature
        covers the path, so it is good for that call only; each call makes a fresh timestamp and nonce."""
        method = method or self.sign_method
        pairs = [(name, _text(value)) for name, value in params if value is not None]
        if not any(name in ("app_key", "appkey") for name, _ in pairs):
            pairs.insert(0, ("app_key", self.app_key))
        if method == "md5":
            return pairs + [("sign", signing.md5_sign(pairs, self.app_secret))]
        pairs += [("sign_method", signing.HMAC_METHOD), ("timestamp", str(int(time.time()))),
                  ("nonce", secrets.token_hex(16))]
        return pairs + [("sign", signing.hmac_sign(path, pairs, self.app_secret))]

    # transport
    def _call(self, path: str, params: Sequence[tuple], *, rest: bool, idempotent: bool):
        def attempt():  # POST with a form body: every call takes it, and no URL length limit applies
            if rest and self.sign_method == "basic":
                pairs = [(name, _text(value)) for name, value in params if value is not None]
                auth = (self.app_key, self.app_secret)
            else:
                pairs, auth = self.sign(path, params), None
            return self.http.post(self.server + path, data=pairs, auth=auth, timeout=self.timeout)

        failures = 0
        while True:
            try:
                response = attempt()  # signed afresh each time: a repeat needs a new HMAC nonce
            except requests.RequestException as exc:
                if failures < self.retries and (idempotent or _never_sent(exc)):
                    failures += 1
                    delay = _backoff(failures, self.backoff, self.backoff_cap)
                    log.info("%s: %s; again in %.2f s", path, type(exc).__name__, delay)
                    time.sleep(delay)
                    continue
                raise _transport_error(exc) from exc
            try:
                return _rest_result(response) if rest else _legacy_result(response)
            except HipushError as error:
                if failures >= self.retries:
                    raise
                if error.http_status == 429 and (error.retry_after or 0) <= self.max_retry_after:
                    delay = max(error.retry_after or 0, _backoff(failures + 1, self.backoff, self.backoff_cap))
                elif idempotent and error.http_status is not None and error.http_status >= 500:
                    delay = _backoff(failures + 1, self.backoff, self.backoff_cap)
                else:
                    raise
                failures += 1
                log.info("%s: %s; again in %.2f s", path, error, delay)
                time.sleep(delay)

    def _legacy(self, path, params, idempotent=False):
        return self._call(path, params, rest=False, idempotent=idempotent)

    def _rest(self, path, params=(), idempotent=False):
        return self._call(path, params, rest=True, idempotent=idempotent)

    # ------------------------------------------------ legacy API (SPEC §3)
    def gen_job(self, name: str, type: str) -> int:
        """/job/genId: a new job (groups messages for statistics); returns its job_id."""
        return int(self._legacy("/job/genId", [("name", name), ("type", type)])["job_id"])

    def publish_private(self, job_id: int, client_id: str, content: str, msg_type: int = 0, online: bool = False,
                        idempotency_key: Optional[str] = None) -> None:
        """/publish/private: one message to one client. online=True: only if the client is online now."""
        self._legacy("/publish/private", [
            ("job_id", job_id), ("client_id", client_id), ("msg_type", msg_type), ("content", content),
            ("online", online), ("idempotency_key", idempotency_key)], idempotent=idempotency_key is not None)

    def save_message(self, job_id: int, content: str, msg_type: int = 0) -> int:
        """/message/save: a message to publish later with publish_multi; returns its message_id."""
        return int(self._legacy("/message/save", [("job_id", job_id), ("msg_type", msg_type),
                                                  ("content", content)])["message_id"])

    def publish_multi(self, topic: str, msg_id: int, online: bool = False,
                      idempotency_key: Optional[str] = None) -> None:
        """/publish/multi: a saved message to every subscriber of `topic` ("*": every client of the app)."""
        self._legacy("/publish/multi", [("topic", topic), ("msg_id", msg_id), ("online", online),
                                        ("idempotency_key", idempotency_key)], idempotent=idempotency_key is not None)

    def _subscription(self, path, topic, client_ids):
        ids = [client_ids] if isinstance(client_ids, str) else list(client_ids)
        if not ids:
            raise ValueError("client_ids must not be empty")
        for start in range(0, len(ids), SUBSCRIBE_BATCH):  # the server takes 1-100 per call
            self._legacy(path, [("topic", topic)] + [("client_id", c) for c in ids[start:start + SUBSCRIBE_BATCH]],
                         idempotent=True)

    def subscribe(self, topic: str, client_ids: Union[str, Iterable[str]]) -> None:
        """/topic/subscribe (as many calls of 100 as needed)."""
        self._subscription("/topic/subscribe", topic, client_ids)

    def unsubscribe(self, topic: str, client_ids: Union[str, Iterable[str]]) -> None:
        """/topic/unsubscribe (as many calls of 100 as needed)."""
        self._subscription("/topic/unsubscribe", topic, client_ids)

    def job_stats(self, job_id: int) -> JobStats:
        """/job/stats: sent / arrived / expired / failed of one job."""
        return JobStats(**_split(JobStats, self._legacy("/job/stats", [("job_id", job_id)], idempotent=True)))

    def revoke(self, client_id: str) -> None:
        """/user/revoke: every token of the client stops working."""
        self._legacy("/user/revoke", [("client_id", client_id)])

    def client_token(self, client_id: str) -> str:
        """/user/token, signed: a client's token for apps with the signed token policy (hand it to the
        client, or pass `token_fetcher=admin.client_token` to a Client)."""
        return self._legacy("/user/token", [("client_id", client_id)], idempotent=True)["token"]

    # ------------------------------------------------ REST API (SPEC §4)
    def _push(self, path, target: list, msg, msg_type, push_time, expires_time, job_id, online,
              idempotency_key) -> int:
        if msg_type is None:
            msg_type = 1 if isinstance(msg, dict) else 0
        params = target + [
            ("msg_type", msg_type), ("msg", signing.json_value_text(msg)),
            ("push_time", _push_time_text(push_time)), ("expires_time", expires_time), ("job_id", job_id),
            ("online", online), ("idempotency_key", idempotency_key)]
        return int(self._rest(path, params, idempotent=idempotency_key is not None)["msg_id"])

    def push_terminal(self, terminal_ids: Union[str, Iterable[str]], msg, msg_type: Optional[int] = None, *,
                      push_time=None, expires_time: Optional[int] = None, job_id: Optional[int] = None,
                      online: Optional[bool] = None, idempotency_key: Optional[str] = None) -> int:
        """/push/terminal to the given client ids; returns msg_id.

        msg: text, or a dict (title, body, image, sound, url, extras) for a notification. msg_type: 0
        message, 1 notification (default: 1 for a dict, else 0). push_time: a datetime (naive = the
        server's time zone), unix seconds or text, for a timed push. expires_time: seconds to live."""
        if isinstance(terminal_ids, str):
            terminal_ids = [terminal_ids]
        return self._push("/push/terminal", [("terminal_ids", _comma(terminal_ids, "terminal_ids"))], msg,
                          msg_type, push_time, expires_time, job_id, online, idempotency_key)

    def push_all(self, msg, msg_type: Optional[int] = None, *, push_time=None, expires_time=None, job_id=None,
                 online=None, idempotency_key=None) -> int:
        """/push/all: to every client of the app; returns msg_id."""
        return self._push("/push/all", [], msg, msg_type, push_time, expires_time, job_id, online, idempotency_key)

    def push_tags(self, tags: Union[str, Iterable[str]], msg, msg_type: Optional[int] = None, *, push_time=None,
                  expires_time=None, job_id=None, online=None, idempotency_key=None) -> int:
        """/push/tags: to the clients of any of the tags (= topics), each once; returns msg_id."""
        if isinstance(tags, str):
            tags = [tags]
        return self._push("/push/tags", [("tags", _comma(tags, "tags"))], msg, msg_type, push_time,
                          expires_time, job_id, online, idempotency_key)

    def push_org(self, orgs: Union[str, Iterable[str]], msg, msg_type: Optional[int] = None, *,
                 terminal_types: Union[str, Iterable[str], None] = None, push_time=None, expires_time=None,
                 job_id=None, online=None, idempotency_key=None) -> int:
        """/push/org: to the clients of the orgs ("*": any) of the terminal types (None or "*": any)."""
        target = [("orgs", _comma(orgs, "orgs"))]
        if terminal_types is not None:
            target.append(("terminal_types", _comma(terminal_types, "terminal_types")))
        return self._push("/push/org", target, msg, msg_type, push_time, expires_time, job_id, online,
                          idempotency_key)

    def push_geo(self, lat: float, lng: float, radius: int, msg, msg_type: Optional[int] = None, *,
                 push_time=None, expires_time=None, job_id=None, online=None, idempotency_key=None) -> int:
        """/push/geo: to the clients last seen within `radius` metres of (lat, lng)."""
        return self._push("/push/geo", [("lat", lat), ("lng", lng), ("radius", radius)], msg, msg_type,
                          push_time, expires_time, job_id, online, idempotency_key)

    def query_msg_status(self, msg_id: int) -> list:
        """/manager/query_msg_status: a MsgStatus per push of the message (usually one)."""
        body = self._rest("/manager/query_msg_status", [("msg_id", msg_id)], idempotent=True)
        return [MsgStatus(**_split(MsgStatus, row)) for row in body.get("data") or []]

    def query_tag_msgs(self, tag: str, start: int = 0, limit: int = 20, range_start=None, range_end=None) -> Page:
        """/manager/query_tag_msgs: a Page of PushRecord pushed to the tag (range_*: like push_time)."""
        body = self._rest("/manager/query_tag_msgs", [
            ("tag", tag), ("start", start), ("limit", limit), ("range_start", _push_time_text(range_start)),
            ("range_end", _push_time_text(range_end))], idempotent=True)
        return _page_of(PushRecord, body)

    def query_tags(self, start: int = 0, limit: int = 20) -> Page:
        """/manager/query_tags: a Page of Tag."""
        return _page_of(Tag, self._rest("/manager/query_tags", [("start", start), ("limit", limit)],
                                         idempotent=True))

    def create_tag(self, tag: str, info: Optional[str] = None) -> None:
        """/manager/create_tag (sets the info of a tag that exists)."""
        self._rest("/manager/create_tag", [("tag", tag), ("info", info)], idempotent=True)

    def del_tag(self, tag: str) -> None:
        """/manager/del_tag."""
        self._rest("/manager/del_tag", [("tag", tag)])

    def terminal_add_tag(self, tag: str, terminal_ids: Union[str, Iterable[str]]) -> None:
        """/manager/terminal_add_tag: subscribes the clients to the tag."""
        self._rest("/manager/terminal_add_tag", [("tag", tag), ("terminal_ids", _comma(terminal_ids, "terminal_ids"))],
                   idempotent=True)

    def terminal_del_tag(self, tag: str, terminal_ids: Union[str, Iterable[str]]) -> None:
        """/manager/terminal_del_tag: unsubscribes the clients from the tag."""
        self._rest("/manager/terminal_del_tag", [("tag", tag), ("terminal_ids", _comma(terminal_ids, "terminal_ids"))],
                   idempotent=True)

    def terminal_num_with_tag(self, tag: str) -> int:
        """/manager/terminal_num_with_tag: how many clients the tag has."""
        return int(self._rest("/manager/terminal_num_with_tag", [("tag", tag)], idempotent=True)["num"])

    def query_timers(self, start: int = 0, limit: int = 20) -> Page:
        """/manager/query_timers: a Page of PushRecord of timed pushes neither fired nor cancelled."""
        return _page_of(PushRecord, self._rest("/manager/query_timers", [("start", start), ("limit", limit)],
                                               idempotent=True))

    def cancel_timer(self, msg_id: int) -> None:
        """/manager/cancel_timer: the timed push of the message never fires."""
        self._rest("/manager/cancel_timer", [("msg_id", msg_id)])

    def query_terminal(self, terminal_id: str) -> Terminal:
        """/manager/query_terminal: one terminal (client) of the app."""
        body = self._rest("/manager/query_terminal", [("terminal_id", terminal_id)], idempotent=True)
        return Terminal(**_split(Terminal, body["data"]))

    def query_terminals(self, start: int = 0, limit: int = 20, tag: Optional[str] = None, org: Optional[str] = None,
                        terminal_type: Optional[str] = None) -> Page:
        """/manager/query_terminals: a Page of Terminal, by terminal id; only a tag's, an org's or a type's when
        given."""
        return _page_of(Terminal, self._rest("/manager/query_terminals", [
            ("start", start), ("limit", limit), ("tag", tag), ("org", org), ("terminal_type", terminal_type)],
            idempotent=True))

    def update_terminal(self, terminal_id: str, *, terminal_type: Optional[str] = None,
                        address: Optional[str] = None, org: Optional[str] = None, lat=None, lng=None) -> Terminal:
        """/manager/update_terminal: sets the fields given (None: unchanged; "" clears org, address, or, for
        both lat and lng, the location); returns the terminal as it is now."""
        body = self._rest("/manager/update_terminal", [
            ("terminal_id", terminal_id), ("terminal_type", terminal_type), ("address", address), ("org", org),
            ("lat", lat), ("lng", lng)], idempotent=True)
        return Terminal(**_split(Terminal, body["data"]))

    def del_terminal(self, terminal_ids: Union[str, Iterable[str]]) -> None:
        """/manager/del_terminal: deletes the terminals with their tags, tokens and waiting messages."""
        self._rest("/manager/del_terminal", [("terminal_ids", _comma(terminal_ids, "terminal_ids"))])


# ---------------------------------------------------------------- the long-poll client

class Client:
    """A long-poll client (SPEC §5) for scripts, gateways and tests.

    Identity, either:
      Client(server, app_key=K, device_id=D[, terminal_type=, org=, address=, lat=, lng=])
          registers with /user/genId and fetches a token with /user/token (again on a 401); or
      Client(server, client_id=ID, token=T[, token_fetcher=fn])
          uses ids handed out by the app's backend; token_fetcher(client_id) -> token (e.g.
          `Admin.client_token`) is asked for a new token on a 401, else a 401 is raised.
    Nothing is fetched before it is needed: `register()` (or reading `client_id`) does it early.

    Receiving, either:
      for message in client.messages(): ...   blocks; a message is acknowledged once the loop body
          asks for the next one (leaving the loop with break or an exception leaves that message
          unacknowledged: it comes again next time); `ack(message)` acknowledges one early.
      client.run(on_message, stop_event=None)  calls on_message(message) for each; a message is
          acknowledged once on_message returns; an exception of on_message ends run() and propagates.
    Acknowledgements are cumulative and ride on the next poll (`ack=`). Messages whose delivery id was
    processed recently (the last `recent_ids`) are dropped: delivery is at least once.

    Connection: the comet node comes from /service/hash (else /service/random, else `server` itself;
    discover=False always polls `server`). A failed poll is retried after a jittered exponential
    backoff (backoff_base * 2^n, at most backoff_cap seconds) against a freshly discovered node,
    forever (max_retries=None) or up to max_retries consecutive failures, then HipushError is raised.
    A 403 / 413 answer, or a 401 that a new token does not cure, is raised at once.
    poll_timeout: seconds a poll parks on the server (0-60); the HTTP read timeout is that plus
    read_margin; connect_timeout and request_timeout (the non-poll calls) are explicit too.

    on_state(state, error): optional; called with ("connected", None) when a poll succeeds after a start
    or failure, and ("disconnected", error) when one fails.
    """

    def __init__(self, server: str, *, app_key: Optional[str] = None, device_id: Optional[str] = None,
                 client_id: Optional[str] = None, token: Optional[str] = None,
                 token_fetcher: Optional[Callable[[str], str]] = None,
                 terminal_type: Optional[str] = None, org: Optional[str] = None, address: Optional[str] = None,
                 lat: Optional[float] = None, lng: Optional[float] = None,
                 discover: bool = True, poll_timeout: int = 30, connect_timeout: float = 5.0,
                 read_margin: float = 10.0, request_timeout: float = 10.0,
                 backoff_base: float = 0.5, backoff_cap: float = 30.0, max_retries: Optional[int] = None,
                 recent_ids: int = 1000, on_state: Optional[Callable[[str, Optional[Exception]], None]] = None,
                 session: Optional[requests.Session] = None):
        if client_id is None and not (app_key and device_id):
            raise ValueError("give app_key and device_id, or client_id (and token or token_fetcher)")
        if client_id is not None and token is None and token_fetcher is None and not app_key:
            raise ValueError("a client_id needs a token, a token_fetcher, or the app_key of an open-token app")
        if not 0 <= poll_timeout <= MAX_POLL_TIMEOUT:
            raise ValueError(f"poll_timeout must be 0-{MAX_POLL_TIMEOUT} seconds")
        self.server = _base_url(server)
        self.app_key = app_key
        self.device_id = device_id
        self._client_id = client_id
        self.token = token
        self.token_fetcher = token_fetcher
        self._registration = {"terminal_type": terminal_type, "org": org, "address": address, "lat": lat, "lng": lng}
        self.discover = discover
        self.poll_timeout = int(poll_timeout)
        self.connect_timeout = connect_timeout
        self.read_margin = read_margin
        self.request_timeout = request_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retries = max_retries
        self.on_state = on_state
        self._own_session = session is None
        self.http = session or requests.Session()

        self.node: Optional[str] = None  # base URL of the comet node in use
        self.missed = 0  # messages the server dropped from an overflowing queue (its "missed" counts)
        self.reconnects = 0  # polls that succeeded after a failure
        self._recent = OrderedDict()  # delivery ids processed lately, oldest first
        self._recent_max = max(1, int(recent_ids))
        self._ack: Optional[int] = None  # the last processed delivery id not yet confirmed by the server
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._polls_in_flight = 0
        self._wake = threading.Event()  # interrupts a backoff sleep (close, stop)
        self._closed = False
        self._connected = False

    # ------------------------------------------------ identity
    @property
    def client_id(self) -> str:
        """This client's id (registers with /user/genId first when needed)."""
        if self._client_id is None:
            self.register()
        return self._client_id

    def register(self) -> str:
        """Fetches the client id (when made from app_key + device_id) and a token now; returns the id."""
        self._with_retries(self._register_once, "registration")
        return self._client_id

    def _register_once(self):
        if self._client_id is None:
            params = {"device_id": self.device_id, "app_key": self.app_key,
                      **{k: _text(v) for k, v in self._registration.items() if v is not None}}
            self._client_id = self._get(self.server, "/user/genId", params)["client_id"]
        if self.token is None:
            self._refresh_token()

    def _refresh_token(self) -> None:
        if self.token_fetcher is not None:
            self.token = self.token_fetcher(self._client_id)
        elif self.app_key:
            self.token = self._get(self.server, "/user/token", {"client_id": self._client_id})["token"]
        else:
            raise HipushError(ERROR_AUTH, "the token was refused and there is no way to fetch a new one", 401)

    def _get(self, base: str, path: str, params: dict, read_timeout: Optional[float] = None):
        response = self.http.get(base + path, params=params,
                                 timeout=(self.connect_timeout, read_timeout or self.request_timeout))
        return _legacy_result(response)

    # ------------------------------------------------ the comet node
    def _node_base(self) -> str:
        if self.node is None:
            self.node = self._discover()
        return self.node

    def _discover(self) -> str:
        if not self.discover:
            return self.server
        scheme = urlsplit(self.server).scheme or "http"
        for path, params in (("/service/hash", {"client_id": self._client_id}), ("/service/random", {})):
            try:
                address = self._get(self.server, path, params)
            except requests.RequestException:
                return self.server  # unreachable: poll it, fail, back off, ask again
            except HipushError as error:
                log.info("%s: %s", path, error)
                continue
            try:
                host, port = str(address["ip"]), int(address["port"])
            except (KeyError, TypeError, ValueError):
                continue
            if ":" in host and not host.startswith("["):
                host = f"[{host}]"  # IPv6
            return f"{scheme}://{host}:{port}"
        return self.server

    # ------------------------------------------------ acknowledgements and duplicates
    def ack(self, message: Union[Message, int]) -> None:
        """Marks a message processed: it is acknowledged (with everything delivered before it) on the next
        poll, and dropped should it come again."""
        delivery_id = message.id if isinstance(message, Message) else int(message)
        with self._lock:
            self._ack = delivery_id
            self._recent[delivery_id] = True
            self._recent.move_to_end(delivery_id)
            while len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)

    def _seen(self, delivery_id: int) -> bool:
        with self._lock:
            return delivery_id in self._recent

    # ------------------------------------------------ one poll
    def _poll_once(self, timeout: int) -> list:
        base = self._node_base()
        with self._lock:
            ack = self._ack
            self._polls_in_flight += 1
        params = {"client_id": self._client_id, "token": self.token, "timeout": str(timeout)}
        if ack is not None:
            params["ack"] = str(ack)
        try:
            response = self.http.get(base + "/comet/poll", params=params,
                                     timeout=(self.connect_timeout, timeout + self.read_margin))
            result = _legacy_result(response)
        finally:
            with self._lock:
                self._polls_in_flight -= 1
                self._idle.notify_all()
        with self._lock:
            if ack is not None and self._ack == ack:
                self._ack = None  # confirmed: the server dropped everything up to it
        self.missed += int(result.get("missed") or 0)
        return [Message.from_json(m) for m in result.get("messages") or []]

    @staticmethod
    def _transient(error: HipushError, what: str) -> bool:
        """Worth another try: no answer, 5xx, 429; for a poll also 404 / 405 (a node without the comet role)."""
        status = error.http_status
        return status is None or status >= 500 or status == 429 or (what == "poll" and status in (404, 405))

    def _with_retries(self, action, what: str, should_stop: Callable[[], bool] = lambda: False):
        """Runs action() until it succeeds, retrying transient failures after a backoff; a 401 fetches a
        new token once. Returns None when stopped or closed during a backoff."""
        failures = 0
        token_refreshed = False
        while True:
            try:
                try:
                    value = action()
                except HipushError as error:
                    if error.http_status != 401 or token_refreshed or self._client_id is None \
                            or not (self.token_fetcher is not None or self.app_key):
                        raise
                    log.info("%s: %s; fetching a new token", what, error)
                    token_refreshed = True
                    self._refresh_token()  # a 401 here (signed-token app, revoked fetcher) is final
                    value = action()
            except HipushError as error:
                if not self._transient(error, what):
                    raise
                failure = error
            except requests.RequestException as exc:
                failure = _transport_error(exc)
            else:
                if what == "poll":
                    if failures:
                        self.reconnects += 1
                    if not self._connected:
                        self._connected = True
                        self._notify("connected", None)
                return value
            failures += 1
            token_refreshed = False
            self.node = None  # ask for a node again: this one may be gone
            if self._connected or failures == 1:
                self._connected = False
                self._notify("disconnected", failure)
            if self.max_retries is not None and failures > self.max_retries:
                raise failure
            delay = _backoff(failures, self.backoff_base, self.backoff_cap)
            if failure.retry_after:  # never sooner than asked; up to half again later, so a node's clients spread out
                delay = max(delay, min(failure.retry_after * random.uniform(1, 1.5), self.backoff_cap))
            log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                    "%s failed (%s); again in %.2f s", what, failure.reason, delay)
            if self._wake.wait(delay) or self._closed or should_stop():
                return None

    def _notify(self, state: str, error) -> None:
        if self.on_state is not None:
            try:
                self.on_state(state, error)
            except Exception:  # a broken observer must not stop delivery
                log.exception("on_state(%r) failed", state)

    # ------------------------------------------------ receiving
    def _iterate(self, should_stop: Callable[[], bool]) -> Iterator[Message]:
        if self._closed:
            raise HipushError(None, "the client is closed")
        if self._client_id is None or self.token is None:
            self.register()
        while not (self._closed or should_stop()):
            batch = self._with_retries(lambda: self._poll_once(self.poll_timeout), "poll", should_stop)
            for message in batch or ():
                if self._closed or should_stop():
                    return
                if self._seen(message.id):
                    self.ack(message)  # processed before: acknowledge it again (its ack got lost)
                    continue
                yield message
                self.ack(message)  # the loop asked for the next one: this one is processed

    def messages(self) -> Iterator[Message]:
        """Yields messages as they arrive, in publish order, each once, until close()."""
        return self._iterate(lambda: False)

    def run(self, on_message: Callable[[Message], Any], stop_event: Optional[threading.Event] = None) -> None:
        """Calls on_message(message) for every message until close() or stop_event is set (a parked poll
        is released at once); acknowledges what was processed before returning."""
        stop = stop_event or threading.Event()
        finished = threading.Event()

        def watch():
            while not finished.is_set():
                if stop.wait(0.05):
                    self._wake.set()
                    self._release_poll(wait=2.0)
                    return

        watcher = threading.Thread(target=watch, name="hipush-client-stop", daemon=True)
        if stop_event is not None:
            watcher.start()
        iterator = self._iterate(stop.is_set)
        try:
            for message in iterator:
                on_message(message)
                self.ack(message)  # processed: on_message returned
        finally:
            iterator.close()
            finished.set()
            if watcher.is_alive():
                watcher.join(5)
            if not self._closed:
                self._wake.clear()
                self.flush()

    def flush(self) -> None:
        """Sends a pending acknowledgement now (a poll with timeout 0; what it hands out comes again later)."""
        with self._lock:
            pending = self._ack is not None
        if pending and self._client_id is not None and self.token is not None:
            try:
                self._poll_once(0)
            except (HipushError, requests.RequestException) as error:
                log.info("could not send the last acknowledgement: %s", error)

    def _release_poll(self, wait: float) -> None:
        """Ends our parked poll (if any) at once: a newer poll of the same client answers the older one
        empty (SPEC §5). Repeated while one is in flight, in case the release overtook it."""
        if self._client_id is None or self.token is None:
            return
        deadline = time.monotonic() + wait
        while True:
            try:
                self._poll_once(0)  # also carries the pending acknowledgement
            except (HipushError, requests.RequestException) as error:
                log.info("could not release the parked poll: %s", error)
                return
            with self._lock:
                # one in flight = the release's own poll has ended; wait for the parked one
                self._idle.wait_for(lambda: self._polls_in_flight == 0,
                                    timeout=max(0.0, min(0.5, deadline - time.monotonic())))
                if self._polls_in_flight == 0 or time.monotonic() >= deadline:
                    return

    def close(self, wait: float = 5.0) -> None:
        """Stops receiving: acknowledges what was processed, ends a parked poll, closes the HTTP session.
        Safe from another thread, a signal handler's thread or the loop body."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        with self._lock:
            polling = self._polls_in_flight > 0
        if polling:
            self._release_poll(wait)  # carries the pending acknowledgement too
        else:
            self.flush()
        with self._lock:
            self._idle.wait_for(lambda: self._polls_in_flight == 0, timeout=wait)
        if self._own_session:
            self.http.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
