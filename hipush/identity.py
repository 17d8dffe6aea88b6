"""Client ids and client tokens (SPEC §3, §6). Plain functions, no Flask.

A client id is an HMAC of app_key + device_id under the server secret: stable,
and uncomputable without the secret. A token is `expiry.epoch.mac`; nothing of
it is stored, so a leaked database or Redis dump reveals no usable token.
Revoking a client raises its epoch, which ends every token issued before.
"""
import base64
import hashlib
import hmac
import re

_TOKEN = re.compile(r"([0-9]{1,12})\.([0-9]{1,12})\.[A-Za-z0-9_-]{24}")  # ASCII digits only: int() takes others


def _mac(secret_key: str, *parts) -> bytes:
    message = "\0".join(str(p) for p in parts).encode("utf-8")
    return hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).digest()


def client_id_for(secret_key: str, app_key: str, device_id: str) -> str:
    return _mac(secret_key, "client", app_key, device_id)[:16].hex()


def issue_token(secret_key: str, client_id: str, epoch: int, expires_at: int) -> str:
    mac = base64.urlsafe_b64encode(_mac(secret_key, "token", client_id, expires_at, epoch)[:18]).decode()
    return f"{expires_at}.{epoch}.{mac}"


def token_epoch(secret_key: str, client_id: str, token: str, now: float):
    """The epoch a valid, unexpired token of this client carries, else None."""
    match = _TOKEN.fullmatch(token or "")
    if match is None:
        return None
    expires_at, epoch = int(match[1]), int(match[2])
    if not hmac.compare_digest(issue_token(secret_key, client_id, epoch, expires_at), token):
        return None
    if expires_at <= now:
        return None
    return epoch
