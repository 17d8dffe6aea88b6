"""The client conformance scenarios (issue 19 §4, docs/PROTOCOL.md "Conformance"): one list that every kit's
tests follow. The Python kit runs them as test_<name> in tests/test_conformance_python.py, the Java kit as the
JUnit methods of clients/java/test/io/hipush/ConformanceTest.java named in camelCase (tests/test_java_kit.py
reports each one). A new kit adds its runner and covers every name."""

SCENARIOS = {
    "connect_and_receive": "a client registers, connects and receives a pushed message with its msg_id, type and "
                           "content",
    "ack_removes_the_message_from_the_server": "a received message is acknowledged: once the client stops, the "
                                               "server holds nothing unacknowledged and a new poll gets nothing",
    "a_message_delivered_again_after_a_lost_ack_is_shown_once": "the acknowledgement of a message is lost (as with "
                                                                "a dropped connection); the server delivers it "
                                                                "again and the client drops the repeat",
    "a_revoked_token_is_replaced_and_receiving_goes_on": "after /user/revoke the next poll answers 401; the client "
                                                         "fetches a new token and keeps receiving",
    "backoff_while_the_server_is_down_and_resume_after": "while the server is down the client retries with "
                                                         "jittered exponential backoff; it receives again once "
                                                         "the server is back",
    "a_notification_carries_its_fields": "a notification pushed as a JSON object arrives with msg_type 1 and its "
                                         "title, body, url, image and extras",
}


def camel_case(name: str) -> str:
    """A scenario's name as a Java (or JavaScript) method name."""
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)
