"""Rate limits (429 / 1029 with Retry-After) and idempotent publishing (SPEC §6), kept in Redis."""
import json
import time

from ..errors import rate_limited

IDEMPOTENCY_TTL = 86400
IN_PROGRESS = "in-progress"


class RateLimiter:
    """Fixed windows: at most `limit` calls per `window` seconds for a scope."""

    def __init__(self, windows):
        self.windows = windows

    def hit(self, scope: str, limit: int, window: int = 1) -> None:
        if not limit:
            return
        now = time.time()
        number = int(now // window)
        if self.windows.hit(scope, number, window) > limit:
            retry_after = max(1, int((number + 1) * window - now + 0.999))
            raise rate_limited(f"rate limit of {limit} calls per {window} s reached", retry_after)


class Idempotency:
    """A publish repeated with the same key within 24 hours answers as the first did and sends nothing.

    `api` names the family of calls a key belongs to: the legacy and REST APIs answer in different
    envelopes, so the same key used on both is two different calls."""

    def __init__(self, answers):
        self.answers = answers

    def begin(self, api: str, app_id, key: str):
        """None when this call goes ahead; else (http status, body) of the first call."""
        if self.answers.claim(api, app_id, key, IN_PROGRESS, IDEMPOTENCY_TTL):
            return None
        stored = self.answers.get(api, app_id, key)
        if stored is None or stored.decode() == IN_PROGRESS:
            raise rate_limited("a call with this idempotency_key is still in progress", 1)
        answer = json.loads(stored)
        return answer["status"], answer["body"]

    def finish(self, api: str, app_id, key: str, status: int, body: str) -> None:
        self.answers.put(api, app_id, key, json.dumps({"status": status, "body": body}), IDEMPOTENCY_TTL)

    def abandon(self, api: str, app_id, key: str) -> None:
        """The first call failed: a retry with the same key may go ahead."""
        self.answers.drop(api, app_id, key)
