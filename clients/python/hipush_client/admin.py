"""Admin: the calls of an app backend, legacy signed (SPEC §3) and REST (SPEC §4)."""
import logging
import secrets
import time
from datetime import datetime
from typing import Iterable, Optional, Sequence, Union

import requests

from . import protocol
from .errors import HipushError
from .models import JobStats, MsgStatus, Page, PushRecord, Tag, Terminal, known_fields, page_of
from .transport import (backoff, base_url, comma_list, legacy_result, never_sent, rest_result, transport_error,
                        wire_text)

log = logging.getLogger("hipush_client")


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
        if sign_method not in ("md5", protocol.HMAC_METHOD, "basic"):
            raise ValueError("sign_method must be md5, hmac-sha256 or basic")
        if not app_key or not app_secret:
            raise ValueError("app_key and app_secret are required")
        self.server = base_url(server)
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
        pairs = [(name, wire_text(value)) for name, value in params if value is not None]
        if not any(name in ("app_key", "appkey") for name, _ in pairs):
            pairs.insert(0, ("app_key", self.app_key))
        if method == "md5":
            return pairs + [("sign", protocol.md5_sign(pairs, self.app_secret))]
        pairs += [("sign_method", protocol.HMAC_METHOD), ("timestamp", str(int(time.time()))),
                  ("nonce", secrets.token_hex(16))]
        return pairs + [("sign", protocol.hmac_sign(path, pairs, self.app_secret))]

    # transport
    def _call(self, path: str, params: Sequence[tuple], *, rest: bool, idempotent: bool):
        def attempt():  # POST with a form body: every call takes it, and no URL length limit applies
            if rest and self.sign_method == "basic":
                pairs = [(name, wire_text(value)) for name, value in params if value is not None]
                auth = (self.app_key, self.app_secret)
            else:
                pairs, auth = self.sign(path, params), None
            return self.http.post(self.server + path, data=pairs, auth=auth, timeout=self.timeout)

        failures = 0
        while True:
            try:
                response = attempt()  # signed afresh each time: a repeat needs a new HMAC nonce
            except requests.RequestException as exc:
                if failures < self.retries and (idempotent or never_sent(exc)):
                    failures += 1
                    delay = backoff(failures, self.backoff, self.backoff_cap)
                    log.info("%s: %s; again in %.2f s", path, type(exc).__name__, delay)
                    time.sleep(delay)
                    continue
                raise transport_error(exc) from exc
            try:
                return rest_result(response) if rest else legacy_result(response)
            except HipushError as error:
                if failures >= self.retries:
                    raise
                if error.http_status == 429 and (error.retry_after or 0) <= self.max_retry_after:
                    delay = max(error.retry_after or 0, backoff(failures + 1, self.backoff, self.backoff_cap))
                elif idempotent and error.http_status is not None and error.http_status >= 500:
                    delay = backoff(failures + 1, self.backoff, self.backoff_cap)
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
        batch = protocol.SUBSCRIBE_BATCH  # the server takes 1-100 per call
        for start in range(0, len(ids), batch):
            self._legacy(path, [("topic", topic)] + [("client_id", c) for c in ids[start:start + batch]],
                         idempotent=True)

    def subscribe(self, topic: str, client_ids: Union[str, Iterable[str]]) -> None:
        """/topic/subscribe (as many calls of 100 as needed)."""
        self._subscription("/topic/subscribe", topic, client_ids)

    def unsubscribe(self, topic: str, client_ids: Union[str, Iterable[str]]) -> None:
        """/topic/unsubscribe (as many calls of 100 as needed)."""
        self._subscription("/topic/unsubscribe", topic, client_ids)

    def job_stats(self, job_id: int) -> JobStats:
        """/job/stats: sent / arrived / expired / failed / clicked of one job."""
        return JobStats(**known_fields(JobStats, self._legacy("/job/stats", [("job_id", job_id)], idempotent=True)))

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
            ("msg_type", msg_type), ("msg", protocol.json_value_text(msg)),
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
        return self._push("/push/terminal", [("terminal_ids", comma_list(terminal_ids, "terminal_ids"))], msg,
                          msg_type, push_time, expires_time, job_id, online, idempotency_key)

    def push_batch(self, messages: Iterable[dict], idempotency_key: Optional[str] = None) -> list:
        """/push/batch: up to 1,000 pushes to client ids in one call, all or nothing; returns their msg_ids in
        order. Each message is a dict of push_terminal's arguments: terminal_ids (one id or several) and msg,
        optionally msg_type, expires_time, job_id, online. A refused batch names the entry (`messages[i]: ...`)."""
        entries = []
        for message in messages:
            ids = message["terminal_ids"]
            msg_type = message.get("msg_type")
            entries.append({**{k: v for k, v in message.items() if v is not None},
                            "terminal_ids": comma_list([ids] if isinstance(ids, str) else ids, "terminal_ids"),
                            "msg_type": (1 if isinstance(message["msg"], dict) else 0) if msg_type is None
                            else msg_type})
        result = self._rest("/push/batch", [("messages", protocol.json_value_text(entries)),
                                            ("idempotency_key", idempotency_key)],
                            idempotent=idempotency_key is not None)
        return [int(msg_id) for msg_id in result["msg_ids"]]

    def push_all(self, msg, msg_type: Optional[int] = None, *, push_time=None, expires_time=None, job_id=None,
                 online=None, idempotency_key=None) -> int:
        """/push/all: to every client of the app; returns msg_id."""
        return self._push("/push/all", [], msg, msg_type, push_time, expires_time, job_id, online, idempotency_key)

    def push_tags(self, tags: Union[str, Iterable[str]], msg, msg_type: Optional[int] = None, *, push_time=None,
                  expires_time=None, job_id=None, online=None, idempotency_key=None) -> int:
        """/push/tags: to the clients of any of the tags (= topics), each once; returns msg_id."""
        if isinstance(tags, str):
            tags = [tags]
        return self._push("/push/tags", [("tags", comma_list(tags, "tags"))], msg, msg_type, push_time,
                          expires_time, job_id, online, idempotency_key)

    def push_org(self, orgs: Union[str, Iterable[str]], msg, msg_type: Optional[int] = None, *,
                 terminal_types: Union[str, Iterable[str], None] = None, push_time=None, expires_time=None,
                 job_id=None, online=None, idempotency_key=None) -> int:
        """/push/org: to the clients of the orgs ("*": any) of the terminal types (None or "*": any)."""
        target = [("orgs", comma_list(orgs, "orgs"))]
        if terminal_types is not None:
            target.append(("terminal_types", comma_list(terminal_types, "terminal_types")))
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
        return [MsgStatus(**known_fields(MsgStatus, row)) for row in body.get("data") or []]

    def query_tag_msgs(self, tag: str, start: int = 0, limit: int = 20, range_start=None, range_end=None) -> Page:
        """/manager/query_tag_msgs: a Page of PushRecord pushed to the tag (range_*: like push_time)."""
        body = self._rest("/manager/query_tag_msgs", [
            ("tag", tag), ("start", start), ("limit", limit), ("range_start", _push_time_text(range_start)),
            ("range_end", _push_time_text(range_end))], idempotent=True)
        return page_of(PushRecord, body)

    def query_tags(self, start: int = 0, limit: int = 20) -> Page:
        """/manager/query_tags: a Page of Tag."""
        return page_of(Tag, self._rest("/manager/query_tags", [("start", start), ("limit", limit)],
                                         idempotent=True))

    def create_tag(self, tag: str, info: Optional[str] = None) -> None:
        """/manager/create_tag (sets the info of a tag that exists)."""
        self._rest("/manager/create_tag", [("tag", tag), ("info", info)], idempotent=True)

    def del_tag(self, tag: str) -> None:
        """/manager/del_tag."""
        self._rest("/manager/del_tag", [("tag", tag)])

    def terminal_add_tag(self, tag: str, terminal_ids: Union[str, Iterable[str]]) -> None:
        """/manager/terminal_add_tag: subscribes the clients to the tag."""
        self._rest("/manager/terminal_add_tag",
                   [("tag", tag), ("terminal_ids", comma_list(terminal_ids, "terminal_ids"))], idempotent=True)

    def terminal_del_tag(self, tag: str, terminal_ids: Union[str, Iterable[str]]) -> None:
        """/manager/terminal_del_tag: unsubscribes the clients from the tag."""
        self._rest("/manager/terminal_del_tag",
                   [("tag", tag), ("terminal_ids", comma_list(terminal_ids, "terminal_ids"))], idempotent=True)

    def terminal_num_with_tag(self, tag: str) -> int:
        """/manager/terminal_num_with_tag: how many clients the tag has."""
        return int(self._rest("/manager/terminal_num_with_tag", [("tag", tag)], idempotent=True)["num"])

    def query_timers(self, start: int = 0, limit: int = 20) -> Page:
        """/manager/query_timers: a Page of PushRecord of timed pushes neither fired nor cancelled."""
        return page_of(PushRecord, self._rest("/manager/query_timers", [("start", start), ("limit", limit)],
                                               idempotent=True))

    def cancel_timer(self, msg_id: int) -> None:
        """/manager/cancel_timer: the timed push of the message never fires."""
        self._rest("/manager/cancel_timer", [("msg_id", msg_id)])

    def query_terminal(self, terminal_id: str) -> Terminal:
        """/manager/query_terminal: one terminal (client) of the app."""
        body = self._rest("/manager/query_terminal", [("terminal_id", terminal_id)], idempotent=True)
        return Terminal(**known_fields(Terminal, body["data"]))

    def query_terminals(self, start: int = 0, limit: int = 20, tag: Optional[str] = None, org: Optional[str] = None,
                        terminal_type: Optional[str] = None) -> Page:
        """/manager/query_terminals: a Page of Terminal, by terminal id; only a tag's, an org's or a type's when
        given."""
        return page_of(Terminal, self._rest("/manager/query_terminals", [
            ("start", start), ("limit", limit), ("tag", tag), ("org", org), ("terminal_type", terminal_type)],
            idempotent=True))

    def update_terminal(self, terminal_id: str, *, terminal_type: Optional[str] = None,
                        address: Optional[str] = None, org: Optional[str] = None, lat=None, lng=None) -> Terminal:
        """/manager/update_terminal: sets the fields given (None: unchanged; "" clears org, address, or, for
        both lat and lng, the location); returns the terminal as it is now."""
        body = self._rest("/manager/update_terminal", [
            ("terminal_id", terminal_id), ("terminal_type", terminal_type), ("address", address), ("org", org),
            ("lat", lat), ("lng", lng)], idempotent=True)
        return Terminal(**known_fields(Terminal, body["data"]))

    def del_terminal(self, terminal_ids: Union[str, Iterable[str]]) -> None:
        """/manager/del_terminal: deletes the terminals with their tags, tokens and waiting messages."""
        self._rest("/manager/del_terminal", [("terminal_ids", comma_list(terminal_ids, "terminal_ids"))])

