"""Client: receives messages over the comet long poll (SPEC §5) or the SSE stream."""
import json
import logging
import socket
import random
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterator, Optional, Union
from urllib.parse import urlsplit

import requests

from . import protocol
from .errors import HipushError
from .models import Message
from .transport import backoff, base_url, legacy_result, transport_error, wire_text

log = logging.getLogger("hipush_client")
TRANSPORTS = ("poll", "sse")


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

    transport: "poll" (the long poll, default) or "sse" (one GET /comet/stream kept open: each message an
    event, far fewer requests). Over SSE, acknowledgements go by POST /comet/ack, in batches: at most every
    `ack_interval` seconds or `ack_every` messages, when the stream idles, before it reconnects and on close.
    A stream ends by itself now and then (the server's HIPUSH_STREAM_MAX_AGE): the client connects again.

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
                 session: Optional[requests.Session] = None, transport: str = "poll", ack_interval: float = 1.0,
                 ack_every: int = 100):
        if client_id is None and not (app_key and device_id):
            raise ValueError("give app_key and device_id, or client_id (and token or token_fetcher)")
        if client_id is not None and token is None and token_fetcher is None and not app_key:
            raise ValueError("a client_id needs a token, a token_fetcher, or the app_key of an open-token app")
        if not 0 <= poll_timeout <= protocol.MAX_POLL_TIMEOUT:
            raise ValueError(f"poll_timeout must be 0-{protocol.MAX_POLL_TIMEOUT} seconds")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
        self.server = base_url(server)
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
        self.transport = transport
        self.ack_interval = ack_interval
        self.ack_every = max(1, int(ack_every))
        self._stream = None  # the open SSE answer
        self._unsent_acks = 0  # messages processed since the last POST /comet/ack
        self._acked_at = time.monotonic()

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
                      **{k: wire_text(v) for k, v in self._registration.items() if v is not None}}
            self._client_id = self._get(self.server, "/user/genId", params)["client_id"]
        if self.token is None:
            self._refresh_token()

    def _refresh_token(self) -> None:
        if self.token_fetcher is not None:
            self.token = self.token_fetcher(self._client_id)
        elif self.app_key:
            self.token = self._get(self.server, "/user/token", {"client_id": self._client_id})["token"]
        else:
            raise HipushError(protocol.ERROR_AUTH, "the token was refused and there is no way to fetch a new one", 401)

    def _get(self, base: str, path: str, params: dict, read_timeout: Optional[float] = None):
        response = self.http.get(base + path, params=params,
                                 timeout=(self.connect_timeout, read_timeout or self.request_timeout))
        return legacy_result(response)

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

    def clicked(self, message: Union[Message, int]) -> None:
        """Reports that the user opened this message (/user/click). The server counts it once per message and
        client, so calling it again is harmless. Retried like a poll; a 401 fetches a new token once."""
        delivery_id = message.id if isinstance(message, Message) else int(message)
        if self._client_id is None or self.token is None:
            self.register()
        self._with_retries(lambda: self._get(self.server, "/user/click", {
            "client_id": self._client_id, "token": self.token, "id": str(delivery_id)}), "click")

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
            result = legacy_result(response)
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
                failure = transport_error(exc)
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
            delay = backoff(failures, self.backoff_base, self.backoff_cap)
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
            if self.transport == "sse":
                batch = self._stream_messages(should_stop)
            else:
                batch = self._with_retries(lambda: self._poll_once(self.poll_timeout), "poll", should_stop)
            for message in batch or ():
                if message is None:  # the stream idles
                    self._ack_stream(due=self._unsent_acks > 0)
                    continue
                if self._closed or should_stop():
                    return
                if self._seen(message.id):
                    self.ack(message)  # processed before: acknowledge it again (its ack got lost)
                    continue
                yield message
                self.ack(message)  # the loop asked for the next one: this one is processed
                if self.transport == "sse":
                    self._unsent_acks += 1
                    self._ack_stream(due=self._unsent_acks >= self.ack_every
                                     or time.monotonic() - self._acked_at >= self.ack_interval)

    # ------------------------------------------------ the SSE stream
    def _stream_messages(self, should_stop) -> Iterator[Optional[Message]]:
        """The messages of one stream (None for each comment line: it idles), until it ends or is cut."""
        response = self._with_retries(self._open_stream, "poll", should_stop)
        if response is None:
            return
        event = {}
        try:
            for line in response.iter_lines(chunk_size=None, decode_unicode=True):
                if line.startswith(":"):
                    yield None
                elif line:
                    name, _, value = line.partition(":")
                    event[name] = value[1:] if value.startswith(" ") else value
                elif "data" in event:
                    data = json.loads(event["data"])
                    if event.get("event") == "missed":
                        self.missed += int(data["missed"])
                    else:
                        yield Message.from_json(data)
                    event = {}
                else:
                    event = {}
        except (requests.RequestException, ValueError, AttributeError) as exc:  # cut off (or hung up by close)
            if not self._closed:
                self.node = None
                self._connected = False
                self._notify("disconnected", transport_error(exc) if isinstance(exc, requests.RequestException)
                             else HipushError(None, f"the stream was cut: {exc}"))
                self._wake.wait(backoff(1, self.backoff_base, self.backoff_cap))
        finally:
            self._stream = None
            response.close()

    def _open_stream(self):
        self._ack_stream(due=True)  # a new stream first hands out what is not acknowledged
        base = self._node_base()
        response = self.http.get(base + "/comet/stream", params={"client_id": self._client_id, "token": self.token},
                                 stream=True, timeout=(self.connect_timeout, self.poll_timeout + self.read_margin))
        if response.status_code != 200:
            legacy_result(response)  # raises its error
        self._stream = response
        return response

    def _ack_stream(self, due: bool) -> None:
        """POST /comet/ack of what was processed, when `due`."""
        with self._lock:
            ack = self._ack
        if not due or ack is None or self._client_id is None:
            return
        try:
            legacy_result(self.http.post(self._node_base() + "/comet/ack",
                                         data={"client_id": self._client_id, "token": self.token, "ack": str(ack)},
                                         timeout=(self.connect_timeout, self.request_timeout)))
        except (HipushError, requests.RequestException) as error:
            log.info("could not acknowledge: %s", error)  # the messages come again; they are dropped as seen
            return
        with self._lock:
            if self._ack == ack:
                self._ack = None
        self._unsent_acks = 0
        self._acked_at = time.monotonic()

    def _hang_up(self) -> None:
        """Ends the open stream at once (closing the answer would wait for a read in progress)."""
        response = self._stream
        connection = getattr(response.raw, "_connection", None) if response is not None else None
        if connection is not None and connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

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
                    if self.transport == "sse":
                        self._hang_up()
                    else:
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
        """Sends a pending acknowledgement now (over SSE by POST /comet/ack, else a poll with timeout 0: what
        it hands out comes again later)."""
        if self.transport == "sse":
            self._ack_stream(due=True)
            return
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
        if self.transport == "sse":
            self._hang_up()
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

