"""The wire protocol both sides speak (SPEC §3-§8): error codes, statuses, terminal types, id formats and
the request signatures. The hipush server imports this module too, so client and server cannot drift.

Signatures are plain functions over (name, value) pairs:

MD5 (the seed's scheme): every parameter but `sign`, `appkey` read as `app_key`,
stably sorted by name, joined raw as name=value with '&', the app secret
appended, MD5 in lowercase hex. Raw joining is ambiguous: a value holding
"&b=2" reads the same as a separate parameter b, and nothing names the call, so
a signature is good for any path taking the same parameters. The HMAC scheme
closes both: it signs the request path, a newline, then every name and value
percent-encoded before joining.
"""
import hashlib
import hmac
import json
import re
from urllib.parse import quote

# SPEC §7 error codes, and the HTTP status each comes with
ERROR_BAD_PARAM = 1024
ERROR_INTERNAL = 1025
ERROR_NOT_FOUND = 1026
ERROR_METHOD = 1027
ERROR_AUTH = 1028
ERROR_RATE_LIMITED = 1029
ERROR_TOO_LARGE = 1030
ERROR_UNAVAILABLE = 1031
CODE_OF_STATUS = {403: ERROR_BAD_PARAM, 500: ERROR_INTERNAL, 404: ERROR_NOT_FOUND, 405: ERROR_METHOD,
                  401: ERROR_AUTH, 429: ERROR_RATE_LIMITED, 413: ERROR_TOO_LARGE, 503: ERROR_UNAVAILABLE}

# SPEC §4 message (push) status codes
STATUS_SENT = 0
STATUS_WAITING = 1
STATUS_SENDING = 2
STATUS_FAILED = 3
STATUS_CANCELLED = 4

# message types (SPEC §3): shown to the app, or to the user
MSG_TYPE_MESSAGE = 0
MSG_TYPE_NOTIFICATION = 1
# the fields of a notification pushed as a JSON object, and their types (SPEC §4)
NOTIFICATION_FIELDS = {"title": str, "body": str, "image": str, "sound": str, "url": str, "extras": dict}

TERMINAL_TYPES = ("web", "android", "ios", "weixin", "qq", "email", "sms")

# id and name formats (SPEC §6, §8)
TOPIC_RE = re.compile(r"[A-Za-z0-9_.:@-]+")
CLIENT_ID_RE = re.compile(r"[0-9a-f]{32}")
DEVICE_ID_RE = re.compile(r"[\x21-\x7e]+")
INT_RE = re.compile(r"[0-9]{1,18}")

MAX_POLL_TIMEOUT = 60  # seconds a /comet/poll may park
SUBSCRIBE_BATCH = 100  # client_ids per /topic/subscribe call

# signatures (SPEC §3, §6)
HMAC_METHOD = "hmac-sha256"
TIMESTAMP_SKEW = 300  # seconds an HMAC-signed call's timestamp may differ from the server's clock
NONCE_TTL = 600  # seconds the server remembers a nonce


def _signed_pairs(params):
    pairs = [("app_key" if name == "appkey" else name, value) for name, value in params if name != "sign"]
    return sorted(pairs, key=lambda pair: pair[0])  # stable: repeated names keep request order


def md5_canonical(params) -> str:
    return "&".join(f"{name}={value}" for name, value in _signed_pairs(params))


def md5_sign(params, secret: str) -> str:
    return hashlib.md5((md5_canonical(params) + secret).encode("utf-8")).hexdigest()


def hmac_canonical(path: str, params) -> str:
    """`path` is the request path ("/manager/del_tag": no host, no query), so a signature fits one call only."""
    return path + "\n" + "&".join(f"{quote(name, safe='')}={quote(value, safe='')}"
                                  for name, value in _signed_pairs(params))


def hmac_sign(path: str, params, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), hmac_canonical(path, params).encode("utf-8"), hashlib.sha256).hexdigest()


def json_value_text(value) -> str:
    """How a top-level JSON field is signed (SPEC §4): strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
