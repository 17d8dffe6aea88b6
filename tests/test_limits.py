"""Input rules: sizes first (413 / 1030), counts (403 / 1024), then formats (403 / 1024)."""
import pytest

from hipush import limits as L
from hipush.errors import ApiError


def error_of(fn, *args, **kwargs):
    with pytest.raises(ApiError) as caught:
        fn(*args, **kwargs)
    return caught.value.http_status, caught.value.code


def test_byte_limits_count_utf8_bytes():
    L.check_bytes("content", "é" * 2048, 4096)
    assert error_of(L.check_bytes, "content", "é" * 2048 + "x", 4096) == (413, 1030)
    assert error_of(L.check_length, "name", "x" * 65, 64) == (413, 1030)


def test_counts():
    L.check_count("client_id", ["a"] * 100, 100)
    assert error_of(L.check_count, "client_id", ["a"] * 101, 100) == (403, 1024)


@pytest.mark.parametrize("value", ["a", "A-z_0.9:@-", "x" * 64])
def test_topic_names_accepted(value):
    assert L.parse_topic("topic", value) == value


@pytest.mark.parametrize("value", ["", None, "a b", "a/b", "é", "*", "a,b"])
def test_topic_names_refused(value):
    assert error_of(L.parse_topic, "topic", value) == (403, 1024)


@pytest.mark.parametrize("value,expected", [("true", True), ("1", True), ("FALSE", False), ("0", False), (None, False)])
def test_booleans(value, expected):
    assert L.parse_bool("online", value) is expected


@pytest.mark.parametrize("value", ["yes", "2", "t"])
def test_bad_booleans(value):
    assert error_of(L.parse_bool, "online", value) == (403, 1024)


def test_ids_and_ints():
    assert L.parse_id("job_id", "42") == 42
    for bad in ("", None, "-1", "1.5", "0x10", "1" * 19, " 1"):
        assert error_of(L.parse_id, "job_id", bad) == (403, 1024)
    assert L.parse_int("timeout", None, 0, 60, default=30) == 30
    assert error_of(L.parse_int, "timeout", "61", 0, 60, default=30) == (403, 1024)
    assert L.parse_msg_type("1") == 1
    assert error_of(L.parse_msg_type, "2") == (403, 1024)


def test_client_and_device_ids():
    assert L.parse_client_id("0" * 32) == "0" * 32
    for bad in ("0" * 31, "G" * 32, "", None):
        assert error_of(L.parse_client_id, bad) == (403, 1024)
    assert L.parse_device_id("utdid+/=AB") == "utdid+/=AB"
    for bad in ("has space", "tab\t", "é", ""):
        assert error_of(L.parse_device_id, bad) == (403, 1024)


def test_coordinates():
    assert L.parse_coordinate("lat", "-90", 90) == -90.0
    for bad in ("91", "nan", "inf", "x", ""):
        assert error_of(L.parse_coordinate, "lat", bad, 90) == (403, 1024)


def test_free_text_refuses_control_characters():
    assert L.parse_text("name", "daily news") == "daily news"
    assert L.parse_text("org", None, required=False) is None
    assert error_of(L.parse_text, "name", "a\nb") == (403, 1024)
    assert error_of(L.parse_text, "name", "") == (403, 1024)


@pytest.mark.parametrize("value", ["cb", "$jsonp_1", "a.b.c", "_" + "x" * 63])
def test_jsonp_callbacks_accepted(value):
    assert L.parse_jsonp_callback(value) == value


@pytest.mark.parametrize("value", ["", "1cb", "a b", "alert(1)", "a;b", "x" * 65, "a[0]", "<script>"])
def test_jsonp_callbacks_refused(value):
    assert error_of(L.parse_jsonp_callback, value) == (403, 1024)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text", [nested(32), '{"a":' * 31 + '{"b": "[[[[{{{{"}' + "}" * 31,
                                  '["\\"' + "[" * 100 + '"]', '{"a": "\\\\"}'])
def test_json_nested_up_to_32_levels_is_parsed_brackets_in_strings_not_counted(text):
    assert L.parse_json("body", text) is not None


@pytest.mark.parametrize("text", [
    nested(33),
    nested(100_000),  # far past Python's recursion limit: measured, never parsed
    '{"a":' * 2000 + "1" + "}" * 2000,
    "[" * 5000,
    '["' + "[" * 5000,  # an unterminated string: its brackets count
    '["\\\\", ' + nested(32) + "]",  # an escaped backslash ends its string: the brackets after it count
])
def test_json_nested_deeper_is_refused_before_parsing(text):
    assert error_of(L.parse_json, "body", text) == (403, 1024)


def test_a_json_object_naming_a_field_twice_is_refused_at_any_depth():
    for text in ('{"a": 1, "a": 1}', '{"a": {"b": 1, "b": 2}}', '[{"a": 1, "a": 2}]'):
        assert error_of(L.parse_json, "body", text) == (403, 1024)
    assert L.parse_json("body", '[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]


def test_a_notification_nested_too_deep_or_naming_a_field_twice_is_refused():
    assert L.parse_message(1, '{"extras": {"k": ' + nested(30) + "}}")[1] == "json"
    for msg in ('{"extras": {"k": ' + nested(31) + "}}", '{"extras": {"k": ' + nested(2000) + "}}",
                '{"title": "a", "title": "b"}'):
        assert error_of(L.parse_message, 1, msg) == (403, 1024)


@pytest.mark.parametrize("text", ['"\\ud800"', '{"a": ["\\udc00"]}', '{"\\ud800": 1}', '"\\ude00\\ud83d"'])
def test_json_holding_an_escaped_lone_surrogate_is_refused(text):
    assert error_of(L.parse_json, "body", text) == (403, 1024)
    assert L.parse_json("body", '"\\ud83d\\ude00"') == "😀"  # a pair is one character
