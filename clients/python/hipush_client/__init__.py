"""hipush-client: `Client` receives messages over the comet long poll, `Admin` calls the backend APIs
(legacy signed calls of SPEC §3 and the REST API of §4); `hipush` is the command line. Needs `requests` only.

Receiving::

    from hipush_client import Client

    client = Client("http://127.0.0.1:8080", app_key=KEY, device_id="gateway-1")
    for message in client.messages():      # blocks; reconnects by itself
        handle(message.content)              # acknowledged once the loop asks for the next one

Pushing::

    from hipush_client import Admin

    admin = Admin("http://127.0.0.1:8080", KEY, SECRET)
    msg_id = admin.push_terminal([client_id], "hello")

Every failure the server answers with (either envelope) is raised as one exception
class, `HipushError(code, reason, http_status)`, carrying SPEC §7's error code; a call
that got no answer at all (connection refused, timed out) raises it with `code` and
`http_status` None and the transport error as `__cause__`. The wire constants (error codes,
statuses, terminal types, id formats) and the signing functions are in `hipush_client.protocol`.
"""
import importlib

from .protocol import (ERROR_AUTH, ERROR_BAD_PARAM, ERROR_INTERNAL, ERROR_METHOD, ERROR_NOT_FOUND,
                       ERROR_RATE_LIMITED, ERROR_TOO_LARGE, ERROR_UNAVAILABLE, STATUS_CANCELLED, STATUS_FAILED,
                       STATUS_SENDING, STATUS_SENT, STATUS_WAITING)

__version__ = "1.0.0"

# Loaded when first used, so that importing hipush_client.protocol (as the server does, before gevent
# patches the standard library) does not import requests and ssl.
_LAZY = {"Admin": "admin", "Client": "client", "HipushError": "errors", "Message": "models", "JobStats": "models",
         "MsgStatus": "models", "PushRecord": "models", "Tag": "models", "Terminal": "models", "Page": "models"}

__all__ = [
    *_LAZY, "ERROR_BAD_PARAM", "ERROR_INTERNAL", "ERROR_NOT_FOUND", "ERROR_METHOD", "ERROR_AUTH", "ERROR_RATE_LIMITED",
    "ERROR_TOO_LARGE", "ERROR_UNAVAILABLE", "STATUS_SENT", "STATUS_WAITING", "STATUS_SENDING", "STATUS_FAILED",
    "STATUS_CANCELLED",
]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
