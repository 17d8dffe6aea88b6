"""Request parameters as the signature sees them: (name, value) pairs in request order.

Query string first, then a form body or a JSON object (each top-level field a
pair, non-strings as their compact JSON text, as SPEC §4 signs them). Values
must be UTF-8; a name that should appear once but appears twice is refused
rather than silently picking one.

A body over the size cap is refused (413) whatever its framing: Werkzeug checks a
Content-Length, but reads a chunked body only up to the cap, so one byte more is
read to tell a longer body from one exactly at the cap.

The body is read within HIPUSH_READ_TIMEOUT seconds, so a client that stalls or
trickles mid-body cannot hold its connection and greenlet: it is answered 408
and disconnected, having changed nothing. (The request line and headers are
bounded by gunicorn, see gunicorn.conf.py.)
"""
from urllib.parse import unquote_to_bytes

import gevent
from flask import current_app, request
from gunicorn.http.errors import ParseException
from hipush_client.protocol import json_value_text
from werkzeug.exceptions import RequestEntityTooLarge

from .. import limits as L
from ..errors import bad_param, request_timeout, too_large


class Params:
    def __init__(self, pairs):
        self.pairs = pairs

    def all(self, name) -> list:
        return [value for key, value in self.pairs if key == name]

    def first(self, name):
        """The value of `name` (None when absent) without checking that it appears once."""
        for key, value in self.pairs:
            if key == name:
                return value
        return None

    def get(self, name):
        values = self.all(name)
        if len(values) > 1:
            raise bad_param(f"parameter {name} given more than once")
        return values[0] if values else None


def _decode(raw: bytes) -> list:
    """name=value pairs of a query string or form body, percent-decoded as UTF-8 (strictly)."""
    pairs = []
    for part in raw.split(b"&"):
        if part:
            name, _, value = part.partition(b"=")
            pairs.append((_text(name), _text(value)))
    return pairs


def _text(raw: bytes) -> str:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise bad_param("parameters must be UTF-8") from None


class _BodyTimeout(Exception):
    """Raised into a body read that ran out of time. An Exception (gevent.Timeout is not one), so that
    gunicorn marks the body failed and closes the connection after the answer instead of draining it."""


def _body(max_bytes: int, seconds: int) -> bytes:
    request.max_content_length = max_bytes + 1
    try:
        with gevent.Timeout(seconds, _BodyTimeout):
            body = request.get_data(cache=True)
    except _BodyTimeout:
        raise request_timeout(f"the request body did not arrive within {seconds} s") from None
    except ParseException as exc:  # a malformed chunk or trailer: gunicorn closes the connection after the answer
        raise bad_param(f"the request body is malformed: {exc}") from None
    if len(body) > max_bytes:
        raise RequestEntityTooLarge()
    return body


def request_authorization():
    """request.authorization, but a Basic header whose base64 is not ASCII is no credentials, as Werkzeug
    takes every other undecodable one (it raises ValueError on that one alone)."""
    try:
        return request.authorization
    except ValueError:
        return None


def request_params(body_bytes: int = None) -> Params:
    """body_bytes: the call's body cap, if not HIPUSH's usual one (Limits.body_bytes)."""
    config = current_app.extensions["hipush"].config
    limits = config.limits
    body_bytes = body_bytes or limits.body_bytes
    if len(request.query_string) > limits.query_string_bytes:
        raise too_large(f"query string is longer than {limits.query_string_bytes} bytes")
    pairs = _decode(request.query_string)
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        pairs += _decode(_body(body_bytes, config.read_timeout))
    elif request.method == "POST" and request.mimetype == "application/json":
        pairs += _json_pairs(_body(body_bytes, config.read_timeout))
    return Params(pairs)


def _json_pairs(raw: bytes) -> list:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_param("the body is not valid UTF-8 JSON") from None
    body = L.parse_json("the body", text)
    if not isinstance(body, dict):
        raise bad_param("the JSON body must be an object")
    return [(name, json_value_text(value)) for name, value in body.items()]
