"""How a client and an app backend talk to each system: the only code that differs between hipush and Nchan.

A subscriber keeps one keep-alive connection and long-polls in a loop:
- hipush: `GET /comet/poll?client_id&token&timeout[&ack]`, a JSON answer with a list of messages (an empty
  list at the poll's timeout); the next poll acknowledges the last message received.
- Nchan: `GET /sub/<channel>`, one message per answer, 408 at the subscriber timeout; the next request sends
  the answer's Last-Modified and Etag back (If-Modified-Since / If-None-Match) to follow the stream; with
  transport "sse" the same URL as an EventSource stream (`Accept: text/event-stream`), nothing acknowledged.

or, with transport "sse", keeps one `GET /comet/stream` open (each message an event) and acknowledges by
`POST /comet/ack`, in batches (every 100 messages or every second), as the kits do.

A publisher sends:
- hipush: unicast by a signed `/publish/private` (one job, made once), or 100 at a time by `/push/batch`
  (HTTP Basic, JSON); fan-out by a signed `/message/save` and `/publish/multi` to a topic.
- Nchan: `POST /pub/<channel>` for both (a channel with many subscribers is Nchan's fan-out).

Message contents are plain ASCII made by the load generator: "<tag>.<seq>.<scheduled unix ns>".
"""
import base64
import hashlib
import json
import time
from urllib.parse import quote


def md5_sign(pairs, secret: str) -> str:
    """hipush's (the seed's) signature: sort by name, join name=value with &, append the secret, MD5 hex."""
    named = sorted(((k, v) for k, v in pairs if k != "sign"), key=lambda kv: kv[0])
    return hashlib.md5(("&".join(f"{k}={v}" for k, v in named) + secret).encode()).hexdigest()


def signed_query(pairs, secret: str) -> str:
    pairs = list(pairs) + [("sign", md5_sign(pairs, secret))]
    return "&".join(f"{k}={quote(str(v), safe='')}" for k, v in pairs)


class Hipush:
    name = "hipush"

    def __init__(self, config: dict):
        self.poll_timeout = int(config.get("poll_timeout", 55))
        self.app = config.get("app")  # {"app_key", "app_secret"} for publishers
        self.job_id = config.get("job_id")

    # subscriber side: `sub` is {"client_id", "token"} plus the loop's state ("ack")
    def poll_request(self, sub: dict):
        path = (f"/comet/poll?client_id={sub['client_id']}&token={quote(sub['token'], safe='')}"
                f"&timeout={self.poll_timeout}")
        if sub.get("ack") is not None:
            path += f"&ack={sub['ack']}"
        return "GET", path, ""

    def on_answer(self, sub: dict, status: int, headers: dict, body: bytes):
        """The contents received, or None when the answer is an error."""
        if status != 200:
            return None
        messages = json.loads(body)["result"]["messages"]
        if messages:
            sub["ack"] = messages[-1]["id"]
        return [m["content"] for m in messages]

    def stream_request(self, sub: dict):
        return "GET", f"/comet/stream?client_id={sub['client_id']}&token={quote(sub['token'], safe='')}", ""

    @staticmethod
    def stream_contents(events) -> list:
        """The contents of a stream chunk's events ((id, data) pairs)."""
        return [json.loads(data)["content"] for _, data in events]

    def ack_request(self, sub: dict, ack: str):
        body = f"client_id={sub['client_id']}&token={quote(sub['token'], safe='')}&ack={ack}".encode()
        return "POST", "/comet/ack", "Content-Type: application/x-www-form-urlencoded\r\n", body

    # publisher side
    def publish_batch(self, conn, items) -> int:
        """Unicasts [(client id, content), ...] in one /push/batch call; the HTTP status."""
        body = json.dumps({"messages": [{"terminal_ids": target, "msg_type": 0, "msg": content, "job_id": self.job_id}
                                        for target, content in items]}).encode()
        basic = base64.b64encode(f"{self.app['app_key']}:{self.app['app_secret']}".encode()).decode()
        status, _, _ = conn.request("POST", "/push/batch", f"Authorization: Basic {basic}\r\n"
                                    "Content-Type: application/json\r\n", body)
        return status

    def _signed_get(self, conn, path: str, pairs):
        status, _, body = conn.request("GET", path + "?" + signed_query(pairs, self.app["app_secret"]))
        return status, body

    def publish_one(self, conn, target: str, content: str) -> int:
        """Unicast to the client `target`; the HTTP status."""
        status, _ = self._signed_get(conn, "/publish/private", [
            ("app_key", self.app["app_key"]), ("job_id", self.job_id), ("client_id", target),
            ("msg_type", 0), ("content", content), ("online", "false")])
        return status

    def publish_fanout(self, conn, target: str, content: str) -> dict:
        """To every subscriber of the topic `target`: save the message, then publish it."""
        started = time.perf_counter()
        status, body = self._signed_get(conn, "/message/save", [
            ("app_key", self.app["app_key"]), ("job_id", self.job_id), ("msg_type", 0), ("content", content)])
        saved = time.perf_counter()
        if status != 200:
            return {"status": status, "error": body[:200].decode(errors="replace")}
        msg_id = json.loads(body)["result"]["message_id"]
        status, body = self._signed_get(conn, "/publish/multi", [
            ("app_key", self.app["app_key"]), ("topic", target), ("msg_id", msg_id), ("online", "false")])
        done = time.perf_counter()
        result = {"status": status, "save_ms": (saved - started) * 1000, "publish_ms": (done - saved) * 1000}
        if status != 200:
            result["error"] = body[:200].decode(errors="replace")
        return result


class Nchan:
    name = "nchan"

    def __init__(self, config: dict):
        pass

    # subscriber side: `sub` is {"channel"} plus the loop's state ("last_modified", "etag")
    def poll_request(self, sub: dict):
        headers = ""
        if sub.get("last_modified"):
            headers = f"If-Modified-Since: {sub['last_modified']}\r\nIf-None-Match: {sub['etag']}\r\n"
        return "GET", f"/sub/{sub['channel']}", headers

    def on_answer(self, sub: dict, status: int, headers: dict, body: bytes):
        if status in (304, 408):  # the subscriber timeout: ask again
            return []
        if status != 200:
            return None
        sub["last_modified"] = headers.get("last-modified", "")
        sub["etag"] = headers.get("etag", "")
        return [body.decode()]

    def stream_request(self, sub: dict):
        return "GET", f"/sub/{sub['channel']}", "Accept: text/event-stream\r\n"

    @staticmethod
    def stream_contents(events) -> list:
        return [data.decode() for _, data in events]

    ack_request = None  # Nchan streams need no acknowledgement

    def publish_one(self, conn, target: str, content: str) -> int:
        status, _, _ = conn.request("POST", f"/pub/{target}", "Content-Type: text/plain\r\n", content.encode())
        return 200 if status in (201, 202) else status

    def publish_fanout(self, conn, target: str, content: str) -> dict:
        started = time.perf_counter()
        status = self.publish_one(conn, target, content)
        return {"status": status, "save_ms": 0.0, "publish_ms": (time.perf_counter() - started) * 1000}


PROTOCOLS = {"hipush": Hipush, "nchan": Nchan}


def content_for(tag: str, seq: int, scheduled_ns: int) -> str:
    return f"{tag}.{seq}.{scheduled_ns}"


def parse_content(content: str):
    """(tag, seq, scheduled unix ns) of a message the generator made."""
    tag, seq, scheduled = content.rsplit(".", 2)
    return tag, int(seq), int(scheduled)
