"""The OpenAPI description, and schemathesis fuzzing every call against a live server with it.

Examples are bounded (HIPUSH_FUZZ_EXAMPLES, default 15 per operation) so the suite stays fast, and drawn
deterministically (the same examples every run for the same description), so the suite's answer does not
depend on luck; HIPUSH_FUZZ_RANDOM=1 draws new ones.
REST calls go out with the app's HTTP Basic credentials, so generated input reaches validation.
"""
import os

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES = int(os.environ.get("HIPUSH_FUZZ_EXAMPLES", "15"))
DERANDOMIZE = os.environ.get("HIPUSH_FUZZ_RANDOM") != "1"


def test_every_route_is_described(server):
    document = requests.get(server.base + "/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.1")
    for path in ("/user/genId", "/comet/poll", "/publish/multi", "/push/geo", "/manager/cancel_timer"):
        assert path in document["paths"]
    page = requests.get(server.base + "/docs", timeout=10)
    assert page.status_code == 200 and "/push/tags" in page.text


def test_every_405_names_the_described_methods_in_allow(server):
    """RFC 9110: a 405 carries Allow, the methods the resource takes (what schemathesis' unsupported_method
    and allow_header_conformance checks ask); here every path with every method it does not describe."""
    document = requests.get(server.base + "/openapi.json", timeout=10).json()
    wrong = []
    for path, operations in document["paths"].items():
        described = {method.upper() for method in operations}
        for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"} - described):
            response = requests.request(method, server.base + path, timeout=10)
            allowed = {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}
            if response.status_code != 405 or allowed != described:
                wrong.append(f"{method} {path}: {response.status_code}, Allow: {response.headers.get('Allow')!r}")
    assert not wrong, "\n".join(wrong)


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
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(auth=auth, timeout=30)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a group per operation
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
