"""Apps: registration, settings, and authentication of signed calls (SPEC §3, §6)."""
import re
import secrets
import time

from hipush_client import protocol

from .. import limits, signing
from ..errors import auth_failed, bad_param, not_found

SIGN_POLICIES = ("md5", "hmac")
TOKEN_POLICIES = ("open", "signed")
JSONP_SETTINGS = ("on", "off")


class Apps:
    def __init__(self, store, nonces, cache_seconds: float = 5.0):
        """nonces: storage.guards.Nonces (None for the CLI, which authenticates no call)."""
        self.store = store
        self.nonces = nonces
        self.cache_seconds = cache_seconds
        self._cache = {}  # app_key or id -> (fetched_at, row); secrets change rarely

    def _cached(self, key, fetch, fresh=False):
        hit = self._cache.get(key)
        if hit and not fresh and time.monotonic() - hit[0] < self.cache_seconds:
            return hit[1]
        row = fetch()
        if row is not None:  # misses are not kept: random app_keys must not grow the cache
            self._cache[key] = (time.monotonic(), row)
        return row

    def by_key(self, app_key: str, fresh=False):
        return self._cached(("key", app_key), lambda: self.store.get_app(app_key), fresh)

    def by_id(self, app_id: int):
        return self._cached(("id", app_id), lambda: self.store.get_app_by_id(app_id))

    def require(self, app_key):
        """The app of an unsigned call (genId): unknown keys fail authentication."""
        app = self.by_key(app_key) if app_key else None
        if app is None:
            raise auth_failed("unknown app_key")
        return app

    def authenticate(self, params, path: str) -> dict:
        """The app a signed call comes from, or 401 / 1028. `path`: the request path ("/manager/del_tag"),
        which an HMAC signature covers."""
        if params.all("app_key") and params.all("appkey"):
            raise auth_failed("give app_key or appkey, not both")
        app = self.require(params.get("app_key") or params.get("appkey"))
        method = params.get("sign_method") or "md5"
        if method not in ("md5", protocol.HMAC_METHOD):
            raise auth_failed("sign_method must be md5 or hmac-sha256")
        if method == "md5" and app["sign_policy"] == "hmac":
            raise auth_failed("this app accepts only hmac-sha256 signatures")
        if method == protocol.HMAC_METHOD:
            self._check_freshness(params)
        sign = params.get("sign")
        if not sign:
            raise auth_failed("missing sign")
        if not signing.signature_matches(path, params.pairs, app["app_secret"], sign):
            app = self.by_key(app["app_key"], fresh=True)  # the secret may have just been rotated
            if not signing.signature_matches(path, params.pairs, app["app_secret"], sign):
                raise auth_failed("wrong sign")
        if method == protocol.HMAC_METHOD:
            nonce = params.get("nonce")
            if not self.nonces.use(app["app_key"], nonce, protocol.NONCE_TTL):
                raise auth_failed("nonce already used")
        return app

    @staticmethod
    def _check_freshness(params):
        timestamp, nonce = params.get("timestamp"), params.get("nonce")
        if not re.fullmatch(r"[0-9]{1,12}", timestamp or "") \
                or abs(int(timestamp) - time.time()) > protocol.TIMESTAMP_SKEW:
            raise auth_failed(f"timestamp must be unix seconds within {protocol.TIMESTAMP_SKEW} s of the server's clock")
        if not nonce or len(nonce) > limits.NAME_CHARS:
            raise auth_failed(f"nonce must be 1-{limits.NAME_CHARS} characters")

    # administration (CLI)
    def create(self, name: str) -> dict:
        if not name or len(name) > 64:
            raise bad_param("name must be 1-64 characters")
        return self.store.create_app(name)

    def rotate_secret(self, app_key: str) -> dict:
        secret = secrets.token_hex(24)
        if not self.store.update_app(app_key, app_secret=secret):
            raise not_found("no such app")
        return {"app_key": app_key, "app_secret": secret}

    def configure(self, app_key: str, sign_policy=None, token_policy=None, allowed_origins=None,
                  publish_rate=None, subscribe_rate=None, jsonp=None) -> dict:
        """Changes the given settings; a rate of "default" returns to the server's default."""
        values = {}
        for name, rate in (("publish_rate", publish_rate), ("subscribe_rate", subscribe_rate)):
            if rate is not None:
                if rate != "default" and not re.fullmatch(r"[0-9]{1,9}", rate):
                    raise bad_param(f"{name} must be a number of calls per second (0: unlimited) or default")
                values[name] = None if rate == "default" else int(rate)
        if sign_policy is not None:
            if sign_policy not in SIGN_POLICIES:
                raise bad_param(f"sign policy must be one of {', '.join(SIGN_POLICIES)}")
            values["sign_policy"] = sign_policy
        if token_policy is not None:
            if token_policy not in TOKEN_POLICIES:
                raise bad_param(f"token policy must be one of {', '.join(TOKEN_POLICIES)}")
            values["token_policy"] = token_policy
        if jsonp is not None:
            if jsonp not in JSONP_SETTINGS:
                raise bad_param("jsonp must be on or off")
            values["jsonp"] = jsonp == "on"
        if allowed_origins is not None:
            values["allowed_origins"] = ",".join(o.strip() for o in allowed_origins.split(",") if o.strip()) or "*"
        if values and not self.store.update_app(app_key, **values):
            raise not_found("no such app")
        return self.by_key(app_key, fresh=True)


def origin_allowed(app: dict, origin: str) -> bool:
    allowed = app["allowed_origins"].split(",")
    return "*" in allowed or origin in allowed
