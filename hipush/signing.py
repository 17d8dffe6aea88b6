"""Request signatures (SPEC §3, §6): the schemes themselves are hipush_client.protocol's, shared with the
Python kit so that the two cannot drift; here is what only the server does, checking a signature.
"""
import hmac

from hipush_client.protocol import HMAC_METHOD, hmac_sign, md5_sign


def signature_matches(path: str, params, secret: str, given: str) -> bool:
    """Checks `given` against the scheme the request names with `sign_method` (MD5 when absent); `path` is
    the request path, which HMAC signs and MD5 (as the seed defines it) does not."""
    method = dict(params).get("sign_method", "md5")
    expected = hmac_sign(path, params, secret) if method == HMAC_METHOD else md5_sign(params, secret)
    return hmac.compare_digest(expected.encode(), (given or "").lower().encode("utf-8"))  # str form: ASCII only
