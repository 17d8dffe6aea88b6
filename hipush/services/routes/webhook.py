"""The gateway routes (sms, weixin, qq, ios): a signed JSON POST to the URL configured for the type.

Body: {"terminal_type", "client_id", "address", "message", "delivery_id", "attempt"}.
Headers: X-Hipush-Timestamp (unix seconds) and
X-Hipush-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>.
2xx: delivered. Timeouts, connection errors, 408, 429 and 5xx: tried again.
Any other status: refused for good.
"""
import hashlib
import hmac
import json
import time

import requests
from requests.adapters import HTTPAdapter

from .base import Delivery, Permanent, Retry

MAX_RETRY_AFTER = 3600


def signature(secret: str, timestamp: str, raw_body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + raw_body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def session(pool_size: int) -> requests.Session:
    """One keep-alive pool per worker, shared by the webhook routes."""
    http = requests.Session()
    http.trust_env = False  # a proxy from the environment is not meant for the gateways
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=pool_size, max_retries=0)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def _retry_after(response) -> float:
    value = response.headers.get("Retry-After", "")
    return min(float(value), MAX_RETRY_AFTER) if value.isdigit() else None


class WebhookRoute:
    def __init__(self, terminal_type: str, url: str, secret: str, timeout: float, http: requests.Session):
        self.terminal_type = terminal_type
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.http = http

    def accepts(self, address) -> bool:
        return True  # a gateway may know its users by client_id alone

    def send(self, delivery: Delivery) -> None:
        raw = json.dumps({"terminal_type": delivery.terminal_type, "client_id": delivery.client_id,
                          "address": delivery.address or "", "message": delivery.message,
                          "delivery_id": delivery.push_id, "attempt": delivery.attempt},
                         ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "hipush",
                   "X-Hipush-Timestamp": timestamp, "X-Hipush-Signature": signature(self.secret, timestamp, raw)}
        try:
            with self.http.post(self.url, data=raw, headers=headers, timeout=(self.timeout, self.timeout),
                                allow_redirects=False) as response:
                status = response.status_code
                retry_after = _retry_after(response)
        except requests.RequestException as exc:  # connection refused or reset, timeouts
            raise Retry(f"{type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            return
        if status in (408, 429) or status >= 500:
            raise Retry(f"HTTP {status}", after=retry_after)
        raise Permanent(f"HTTP {status}")
