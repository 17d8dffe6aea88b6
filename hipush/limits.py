"""Size, count and format rules for every input (SPEC §6, §8). Plain functions, no Flask.

Each check raises ApiError; callers run them in SPEC's order: sizes and counts
first (check_bytes, check_count), then formats (the parse_* functions).
"""
import json
import re
from datetime import datetime

from hipush_client.protocol import (CLIENT_ID_RE, DEVICE_ID_RE, INT_RE, NOTIFICATION_FIELDS, TERMINAL_TYPES,
                                    TOPIC_RE)

from .errors import bad_param, too_large

JSONP_CALLBACK_RE = re.compile(r"[A-Za-z_$][0-9A-Za-z_$.]{0,63}")
MAX_JSON_DEPTH = 32
# characters of a name (job name and type, topic/tag, org, HMAC nonce, idempotency_key) and of a longer text
# (tag info, terminal address); the byte and count limits that an operator may change are in config.Limits
NAME_CHARS = 64
TEXT_CHARS = 255
DEVICE_ID_CHARS = 128
MAX_LIST_ITEMS = 100  # tags of /push/tags, orgs and terminal types of /push/org
MAX_PAGE = 1000  # rows of one page of a query_* call
DEFAULT_PAGE = 20
MAX_BATCH = 1000  # entries of one /push/batch
BATCH_FIELDS = ("msg_type", "msg", "expires_time", "job_id", "online")  # of a /push/batch entry, with terminal_ids
MAX_START = 10**9  # the first row of a page
MAX_LATITUDE, MAX_LONGITUDE = 90, 180
MAX_RADIUS = 20_000_000  # metres: half the Earth's circumference
# a JSON string (its escapes included) or a bracket: brackets inside strings are not nesting
JSON_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[][{}]', re.DOTALL)


def check_bytes(name, value, limit):
    if value is not None and len(value.encode("utf-8")) > limit:
        raise too_large(f"{name} is longer than {limit} bytes")


def check_length(name, value, max_chars):
    if value is not None and len(value) > max_chars:
        raise too_large(f"{name} is longer than {max_chars} characters")


def check_count(name, values, limit):
    if len(values) > limit:
        raise bad_param(f"too many {name}: at most {limit}")


def require(name, value):
    if value is None or value == "":
        raise bad_param(f"missing parameter: {name}")
    return value


def parse_id(name, value):
    """Integer ids (job_id, msg_id): decimal digits."""
    require(name, value)
    if not INT_RE.fullmatch(value):
        raise bad_param(f"{name} must be a positive integer")
    return int(value)


def parse_int(name, value, lo, hi, default=None):
    if value is None or value == "":
        if default is None:
            raise bad_param(f"missing parameter: {name}")
        return default
    if not re.fullmatch(r"-?[0-9]{1,12}", value):
        raise bad_param(f"{name} must be an integer")
    number = int(value)
    if not lo <= number <= hi:
        raise bad_param(f"{name} must be between {lo} and {hi}")
    return number


def parse_bool(name, value, default=False):
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise bad_param(f"{name} must be true, false, 1 or 0")


def parse_msg_type(value):
    return parse_int("msg_type", value, 0, 1)


def parse_topic(name, value):
    require(name, value)
    if not TOPIC_RE.fullmatch(value):
        raise bad_param(f"{name} must be made of A-Z a-z 0-9 _ . : @ -")
    return value


def parse_client_id(value, name="client_id"):
    require(name, value)
    if not CLIENT_ID_RE.fullmatch(value):
        raise bad_param(f"{name} is malformed")
    return value


def parse_device_id(value):
    require("device_id", value)
    if not DEVICE_ID_RE.fullmatch(value):
        raise bad_param("device_id must be printable ASCII characters without spaces")
    return value


def parse_terminal_type(value):
    """None when absent: an existing client keeps its type, a new one is "web"."""
    if value is None or value == "":
        return None
    if value not in TERMINAL_TYPES:
        raise bad_param(f"terminal_type must be one of {', '.join(TERMINAL_TYPES)}")
    return value


def parse_coordinate(name, value, bound):
    require(name, value)
    try:
        number = float(value)
    except ValueError:
        raise bad_param(f"{name} must be a number") from None
    if not -bound <= number <= bound:  # also rejects nan
        raise bad_param(f"{name} must be between {-bound} and {bound}")
    return number


def parse_text(name, value, required=True):
    """Free text (job name/type, org, address; lengths checked before): no control characters."""
    if value is None or value == "":
        if required:
            raise bad_param(f"missing parameter: {name}")
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise bad_param(f"{name} contains control characters")
    return value


def parse_jsonp_callback(value):
    if value is None:
        return None
    if not JSONP_CALLBACK_RE.fullmatch(value):
        raise bad_param("callback must match ^[A-Za-z_$][0-9A-Za-z_$.]{0,63}$")
    return value


def parse_time(name, value, tz) -> int:
    """Unix ms of `YYYY-MM-DD HH:MM:SS` (in tz), ISO 8601 (with an offset, or in tz without), or unix seconds."""
    require(name, value)
    if re.fullmatch(r"[0-9]{1,12}", value):
        return int(value) * 1000
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise bad_param(f"{name} must be YYYY-MM-DD HH:MM:SS, ISO 8601 or unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return int(moment.timestamp() * 1000)


def parse_list(name, value, max_items, parse_item):
    """A comma list: each item parsed, repeats dropped, order kept."""
    items = [item.strip() for item in require(name, value).split(",")]
    check_count(name, items, max_items)
    return list(dict.fromkeys(parse_item(name, item) for item in items))


def parse_json(name, text: str):
    """A JSON document: nested at most MAX_JSON_DEPTH deep, no name twice in any of its objects, and
    UTF-8 text throughout.

    The depth is measured by a flat scan before parsing, so json.loads (which recurses once per level)
    never sees a deeper document. A repeated name is refused rather than letting the last one win, as a
    repeated query parameter is. An escaped lone surrogate ("\\ud800") is valid JSON but no UTF-8
    text: every later step (signing, storing) would fail on it.
    """
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise bad_param(f"{name} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, object_pairs_hook=lambda pairs: _unique_names(name, pairs))
    except ValueError:
        raise bad_param(f"{name} is not valid JSON") from None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad_param(f"{name} holds a lone surrogate (\\ud800-\\udfff), which is not UTF-8 text") from None
    return value


def _json_depth(text: str) -> int:
    """How deep the brackets of `text` nest, strings skipped. Exact for the part json.loads can parse:
    an unterminated string only makes the count higher."""
    depth = deepest = 0
    for token in JSON_STRING_OR_BRACKET.findall(text):
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest


def _unique_names(name, pairs) -> dict:
    fields = {}
    for key, value in pairs:
        if key in fields:
            raise bad_param(f"{name} gives {key[:64]!r} more than once")
        fields[key] = value
    return fields


def parse_message(msg_type: int, msg: str):
    """(content, format) of a REST `msg`: a notification given as a JSON object is checked and kept as JSON."""
    if msg_type == 1 and msg.lstrip().startswith("{"):
        fields = parse_json("msg", msg)
        unknown = sorted(set(fields) - set(NOTIFICATION_FIELDS))
        if unknown:
            raise bad_param(f"unknown notification field: {unknown[0]} (allowed: {', '.join(NOTIFICATION_FIELDS)})")
        for key, value in fields.items():
            if not isinstance(value, NOTIFICATION_FIELDS[key]):
                raise bad_param(f"notification field {key} must be a{'n object' if key == 'extras' else ' string'}")
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":")), "json"
    return msg, "text"
