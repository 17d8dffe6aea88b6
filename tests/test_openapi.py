"""The OpenAPI description, and schemathesis fuzzing every call against a live server with it.

Examples are bounded (HIPUSH_FUZZ_EXAMPLES, default 15 per operation) so the suite stays fast.
REST calls go out with the app's HTTP Basic credentials, so generated input reaches validation.
"""
import os

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES = int(os.environ.get("HIPUSH_FUZZ_EXAMPLES", "15"))


def test_every_route_is_described(server):
    document = requests.get(server.base + "/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.1")
    for path in ("/user/genId", "/comet/poll", "/publish/multi", "/push/geo", "/manager/cancel_timer"):
        assert path in document["paths"]
    page = requests.get(server.base + "/docs", timeout=10)
    assert page.status_code == 200 and "/push/tags" in page.text


def test_no_call_fails_or_breaks_its_description(server):
    """Every operation, fuzzed; failures of all operations are collected and reported together.
    (schemathesis' lazy pytest fixture does not run on pytest 9, so the loop is written out.)"""
    app = server.create_app("fuzz")
    auth = (app["app_key"], app["app_secret"])
    schema = schemathesis.openapi.from_url(server.base + "/openapi.json")
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(auth=auth, timeout=30)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a group per operation
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
