"""What every route shares: one delivery to hand over, and how a route says it failed."""
from dataclasses import dataclass


class Retry(Exception):
    """The delivery failed but may work later (timeout, connection error, 5xx, 4xx SMTP reply).
    after: seconds the gateway asked us to wait (Retry-After), if any."""

    def __init__(self, reason: str, after: float = None):
        super().__init__(reason)
        self.after = after


class Permanent(Exception):
    """The delivery can never work as it is (the gateway refused it): no more attempts."""


@dataclass
class Delivery:
    terminal_type: str
    client_id: str
    address: str  # may be empty for a gateway that knows its users by client_id
    push_id: int  # the delivery id (SPEC §3): the same for every attempt and every terminal of a push
    message: dict  # {id, msg_id, job_id, msg_type, content, ts}, as a long-polling client gets it
    attempt: int  # 1 for the first
