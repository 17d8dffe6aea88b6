"""What the guards of the API keep in Redis: rate-limit windows, used nonces, idempotent answers."""
from . import keys


class RateWindows:
    """Calls counted per fixed window of a rate limit."""

    def __init__(self, pools):
        self.commands = pools.commands

    def hit(self, scope: str, window_number: int, window: int) -> int:
        """Counts one call in the window; returns the calls counted in it so far."""
        key = keys.rate(scope, window_number)
        pipe = self.commands.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window + 1)
        count, _ = pipe.execute()
        return count


class Nonces:
    """Nonces of HMAC-signed calls, each usable once within its lifetime."""

    def __init__(self, pools):
        self.commands = pools.commands

    def use(self, app_key: str, nonce: str, ttl: int) -> bool:
        """False when the nonce was used already."""
        return bool(self.commands.set(keys.nonce(app_key, nonce), 1, nx=True, ex=ttl))


class IdempotentAnswers:
    """A publish call's answer under its idempotency_key (per family of calls, `api`): a marker while it
    runs, then the answer."""

    def __init__(self, pools):
        self.commands = pools.commands

    def claim(self, api: str, app_id, key: str, marker: str, ttl: int) -> bool:
        """Stores `marker` unless the key holds something already; True when it did."""
        return bool(self.commands.set(keys.idempotency(api, app_id, key), marker, nx=True, ex=ttl))

    def get(self, api: str, app_id, key: str):
        """The stored value (bytes), or None."""
        return self.commands.get(keys.idempotency(api, app_id, key))

    def put(self, api: str, app_id, key: str, value: str, ttl: int) -> None:
        self.commands.set(keys.idempotency(api, app_id, key), value, ex=ttl)

    def drop(self, api: str, app_id, key: str) -> None:
        self.commands.delete(keys.idempotency(api, app_id, key))
