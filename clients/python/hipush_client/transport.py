"""How answers, failures and parameters look on the wire: shared by Admin and Client (not a public API)."""
import random
from typing import Optional
from urllib.parse import urlsplit

import requests
import urllib3

from . import protocol
from .errors import HipushError


def retry_after_of(response) -> Optional[float]:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_of(response, body) -> HipushError:
    """The HipushError of a failed answer, in either envelope (or none: a proxy's error page)."""
    code = reason = None
    if isinstance(body, dict):
        if "error_code" in body:  # REST: {"status": 0, "error_code": CODE, "error": "reason"}
            code, reason = body.get("error_code"), body.get("error")
        elif isinstance(body.get("error"), int):  # legacy: {"error": CODE, "reason": "..."}
            code, reason = body.get("error"), body.get("reason")
    if code is None:
        code = protocol.CODE_OF_STATUS.get(response.status_code)
    if not reason:
        reason = (response.text or "").strip()[:200] or f"HTTP {response.status_code}"
    return HipushError(code, reason, response.status_code, retry_after_of(response))


def json_body(response):
    try:
        return response.json()
    except ValueError:
        return None


def legacy_result(response):
    """R of a legacy answer {"ok": true, "result": R}, else raises HipushError."""
    body = json_body(response)
    if response.status_code == 200 and isinstance(body, dict) and body.get("ok") is True:
        return body.get("result")
    raise error_of(response, body)


def rest_result(response) -> dict:
    """The body of a REST answer {"status": 1, ...}, else raises HipushError."""
    body = json_body(response)
    if response.status_code == 200 and isinstance(body, dict) and body.get("status") == 1:
        return body
    raise error_of(response, body)


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request surely did not reach the server (it could not connect), so any call may be
    repeated; a read timeout or a dropped connection may come after the server acted."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        cause = exc.args[0] if exc.args else None
        reason = getattr(cause, "reason", cause)  # urllib3's MaxRetryError wraps the connect failure
        return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))
    return False


def transport_error(exc: requests.RequestException) -> HipushError:
    """No answer at all. The reason names the host and path but never the query string (tokens, signs)."""
    request = getattr(exc, "request", None)
    where = ""
    if request is not None and request.url:
        parts = urlsplit(request.url)
        where = f" from {parts.scheme}://{parts.netloc}{parts.path}"
    cause = exc.args[0] if exc.args else None
    detail = type(getattr(cause, "reason", None) or cause or exc).__name__
    error = HipushError(None, f"no answer{where} ({type(exc).__name__}: {detail})")
    error.__cause__ = exc
    return error


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: between half and all of min(cap, base * 2^(attempt-1))."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return ceiling / 2 + random.random() * ceiling / 2


def wire_text(value) -> str:
    """A parameter as the wire (and the signature) sees it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def comma_list(values, name: str) -> str:
    if isinstance(values, str):
        return values
    items = [wire_text(v) for v in values]
    if not items:
        raise ValueError(f"{name} must not be empty")
    return ",".join(items)


def base_url(server: str) -> str:
    server = server.strip().rstrip("/")
    if "://" not in server:
        server = "http://" + server
    return server

