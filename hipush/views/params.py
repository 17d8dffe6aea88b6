"""Request parameters as the signature sees them: (name, value) pairs in request order.

Query string first, then a form body or a JSON object (each top-level field a
pair, non-strings as their compact JSON text, as SPEC §4 signs them). Values
must be UTF-8; a name that should appear once but appears twice is refused
rather than silently picking one.
"""
import json
from urllib.parse import unquote_to_bytes

from flask import current_app, request

from ..errors import bad_param, too_large
from ..signing import json_value_text


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


def request_params() -> Params:
    limits = current_app.extensions["hipush"].config.limits
    if len(request.query_string) > limits.query_string_bytes:
        raise too_large(f"query string is longer than {limits.query_string_bytes} bytes")
    pairs = _decode(request.query_string)
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        pairs += _decode(request.get_data(cache=True))
    elif request.method == "POST" and request.mimetype == "application/json":
        pairs += _json_pairs(request.get_data(cache=True))
    return Params(pairs)


def _json_pairs(raw: bytes) -> list:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad_param("the body is not valid UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise bad_param("the JSON body must be an object")
    return [(name, json_value_text(value)) for name, value in body.items()]
