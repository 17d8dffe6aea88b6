"""One error class for every failure an API call can answer with (SPEC §7; the codes are hipush_client's)."""
from hipush_client.protocol import (ERROR_AUTH, ERROR_BAD_PARAM, ERROR_INTERNAL, ERROR_METHOD, ERROR_NOT_FOUND,
                                    ERROR_RATE_LIMITED, ERROR_TOO_LARGE, ERROR_UNAVAILABLE)


class ApiError(Exception):
    def __init__(self, http_status: int, code: int, reason: str, headers=None):
        super().__init__(reason)
        self.http_status = http_status
        self.code = code
        self.reason = reason
        self.headers = headers or {}


def bad_param(reason):
    return ApiError(403, ERROR_BAD_PARAM, reason)


def internal(reason="internal server error"):
    return ApiError(500, ERROR_INTERNAL, reason)


def not_found(reason):
    return ApiError(404, ERROR_NOT_FOUND, reason)


def method_not_allowed(allowed):
    """405, with the Allow header (RFC 9110) naming the methods the path takes."""
    return ApiError(405, ERROR_METHOD, "HTTP method not allowed", {"Allow": ", ".join(allowed)})


def auth_failed(reason, headers=None):
    return ApiError(401, ERROR_AUTH, reason, headers)


def rate_limited(reason, retry_after: int):
    return ApiError(429, ERROR_RATE_LIMITED, reason, {"Retry-After": str(retry_after)})


def request_timeout(reason):
    """408: the request did not arrive in time. SPEC §7 has no code of its own for that; its parameters
    are incomplete, so 1024 (bad parameter)."""
    return ApiError(408, ERROR_BAD_PARAM, reason)


def too_large(reason):
    return ApiError(413, ERROR_TOO_LARGE, reason)


def unavailable(reason, retry_after: int | None = None):
    return ApiError(503, ERROR_UNAVAILABLE, reason, {"Retry-After": str(retry_after)} if retry_after else None)
