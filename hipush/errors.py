"""One error class for every failure an API call can answer with (SPEC §7)."""


class ApiError(Exception):
    def __init__(self, http_status: int, code: int, reason: str, headers=None):
        super().__init__(reason)
        self.http_status = http_status
        self.code = code
        self.reason = reason
        self.headers = headers or {}


def bad_param(reason):
    return ApiError(403, 1024, reason)


def internal(reason="internal server error"):
    return ApiError(500, 1025, reason)


def not_found(reason):
    return ApiError(404, 1026, reason)


def method_not_allowed(allowed):
    """405, with the Allow header (RFC 9110) naming the methods the path takes."""
    return ApiError(405, 1027, "HTTP method not allowed", {"Allow": ", ".join(allowed)})


def auth_failed(reason):
    return ApiError(401, 1028, reason)


def rate_limited(reason, retry_after: int):
    return ApiError(429, 1029, reason, {"Retry-After": str(retry_after)})


def request_timeout(reason):
    """408: the request did not arrive in time. SPEC §7 has no code of its own for that; its parameters
    are incomplete, so 1024 (bad parameter)."""
    return ApiError(408, 1024, reason)


def too_large(reason):
    return ApiError(413, 1030, reason)


def unavailable(reason, retry_after: int | None = None):
    return ApiError(503, 1031, reason, {"Retry-After": str(retry_after)} if retry_after else None)
