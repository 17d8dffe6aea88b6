"""Typed results: what a poll hands out and what the backend calls answer. Fields the server adds later
land in `extra`, so an older client keeps working against a newer server."""
from dataclasses import MISSING, dataclass, field
from typing import Any, Optional


def known_fields(cls, data: dict) -> dict:
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
        return cls(**known_fields(cls, data))

    def to_json(self) -> dict:
        """The message as the poll answer gave it (what `hipush subscribe` prints)."""
        return {"id": self.id, "msg_id": self.msg_id, "job_id": self.job_id, "msg_type": self.msg_type,
                "content": self.content, "ts": self.ts, **self.extra}


@dataclass(frozen=True)
class JobStats:
    """/job/stats: (message, client) pairs sent, arrived (acknowledged), expired, failed and clicked for one job."""

    job_id: int
    name: str
    type: str
    created_at: Any = None
    sent: int = 0
    arrived: int = 0
    expired: int = 0
    failed: int = 0
    clicked: int = 0
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
    clicked_num: Optional[int] = None
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


def page_of(cls, body: dict) -> Page:
    return Page(int(body.get("total_num", 0)), [cls(**known_fields(cls, row)) for row in body.get("data") or []])

