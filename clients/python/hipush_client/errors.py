"""The one exception every failed call raises."""
from typing import Optional


class HipushError(Exception):
    """A failed call. `code`: SPEC §7's error code (1024 bad parameter, 1026 not found, 1028 authentication,
    1029 rate limited, ...), None when no answer came at all; `http_status`: the answer's HTTP status
    (None without an answer); `reason`: the server's explanation; `retry_after`: seconds, for 429."""

    def __init__(self, code: Optional[int], reason: str, http_status: Optional[int] = None,
                 retry_after: Optional[float] = None):
        super().__init__(f"{reason} (error {code}, HTTP {http_status})" if http_status else reason)
        self.code = code
        self.reason = reason
        self.http_status = http_status
        self.retry_after = retry_after

    def __repr__(self):
        return f"HipushError(code={self.code!r}, reason={self.reason!r}, http_status={self.http_status!r})"

