"""Request signatures (SPEC §3, §6). Plain functions over (name, value) pairs, no Flask.

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
from urllib.parse import quote

HMAC_METHOD = "hmac-sha256"
TIMESTAMP_SKEW = 300
NONCE_TTL = 600


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


def signature_matches(path: str, params, secret: str, given: str) -> bool:
    """Checks `given` against the scheme the request names with `sign_method` (MD5 when absent); `path` is
    the request path, which HMAC signs and MD5 (as the seed defines it) does not."""
    method = dict(params).get("sign_method", "md5")
    expected = hmac_sign(path, params, secret) if method == HMAC_METHOD else md5_sign(params, secret)
    return hmac.compare_digest(expected.encode(), (given or "").lower().encode("utf-8"))  # str form: ASCII only
