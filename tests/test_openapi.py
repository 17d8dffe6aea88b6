"""The OpenAPI description and the API reference at /docs; schemathesis fuzzing every call against a live
server with it.

Examples are bounded (HIPUSH_FUZZ_EXAMPLES, default 15 per operation) so the suite stays fast, and drawn
deterministically (the same examples every run for the same description), so the suite's answer does not
depend on luck; HIPUSH_FUZZ_RANDOM=1 draws new ones.
REST calls go out with the app's HTTP Basic credentials, so generated input reaches validation.
"""
import dataclasses
import os
import re

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate

import hipush
from hipush import errors, openapi

EXAMPLES = int(os.environ.get("HIPUSH_FUZZ_EXAMPLES", "15"))
DERANDOMIZE = os.environ.get("HIPUSH_FUZZ_RANDOM") != "1"
# routes that are pages and files, not API calls, so not in the document: the reference itself (/openapi.json,
# /docs and its Swagger UI files), the browser SDK and its demo page, the landing page and its favicon, Flask's
# static files, and the operator console (HTML pages behind a login, with forms of their own)
UNDESCRIBED = re.compile(r"^/(|favicon\.ico|openapi\.json|docs(/.*)?|sdk/.*|demo|static/.*|console(/.*)?)$")


@pytest.fixture(scope="module")
def document(server):
    return requests.get(server.base + "/openapi.json", timeout=10).json()


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises, naming the first place that breaks the OpenAPI 3.1 schema


def test_every_route_of_the_app_is_described_with_its_methods(test_config, document):
    flask_app = hipush.create_app(dataclasses.replace(test_config, background=False))
    missing = []
    for rule in flask_app.url_map.iter_rules():
        if UNDESCRIBED.match(rule.rule):
            continue
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        described = sorted(method.upper() for method in document["paths"].get(rule.rule, {}))
        if described != methods:
            missing.append(f"{rule.rule}: routed {methods}, described {described}")
    assert not missing, "\n".join(missing)


def test_every_parameter_has_a_type_description_and_example(document):
    incomplete = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            fields = [(p["name"], p, p["schema"]) for p in operation.get("parameters", [])]
            for media in operation.get("requestBody", {}).get("content", {}).values():
                fields += [(name, schema, schema) for name, schema in media["schema"]["properties"].items()]
            for name, described, schema in fields:
                if not (described.get("description") and schema.get("examples")
                        and ("type" in schema or "enum" in schema or "const" in schema)):
                    incomplete.append(f"{method.upper()} {path} {name}")
    assert not incomplete, incomplete


def test_every_documented_error_code_is_one_of_hipush_errors(document):
    codes = {value for name, value in vars(errors).items() if name.startswith("ERROR_")}
    documented = set()
    for response in document["components"]["responses"].values():
        schema = response["content"]["application/json"]["schema"]["properties"]
        documented.add((schema.get("error_code") or schema["error"])["const"])
    assert documented and documented <= codes, documented - codes
    for operations in document["paths"].values():
        for operation in operations.values():
            assert set(operation["responses"]) >= {"200", "403", "500", "503"}
            assert "security" in operation


def test_a_call_outside_the_envelopes_is_described_by_its_media_type():
    """How an endpoint like a health check or a metrics page goes into openapi.CALLS."""
    call = openapi.Call("Metrics", "GET", "none", "", {"type": "string"}, media="text/plain")
    operation = openapi._operation("/metrics", call, "get")
    assert operation["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert operation["parameters"] == [] and operation["security"] == []
    assert operation["responses"]["503"] == {"$ref": "#/components/responses/legacy_503"}


def test_auth_schemes_name_the_ways_a_call_is_authenticated(document):
    schemes = document["components"]["securitySchemes"]
    assert {"md5Signature", "hmacSignature", "basicAuth", "clientToken"} <= set(schemes)
    assert document["paths"]["/push/all"]["post"]["security"] == [
        {"md5Signature": []}, {"hmacSignature": []}, {"basicAuth": []}]
    assert document["paths"]["/comet/poll"]["get"]["security"] == [{"clientToken": []}]
    assert document["paths"]["/service/random"]["get"]["security"] == []


def test_limits_come_from_the_code_that_checks_them(document):
    from hipush import limits
    from hipush.config import Limits
    params = {p["name"]: p["schema"] for p in document["paths"]["/manager/query_terminals"]["get"]["parameters"]}
    assert params["limit"]["maximum"] == limits.MAX_PAGE
    assert params["org"]["maxLength"] == limits.NAME_CHARS
    body = document["paths"]["/push/terminal"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["msg"]["maxLength"] == Limits().content_bytes
    assert "{0,%d}" % (Limits().terminal_ids - 1) in body["properties"]["terminal_ids"]["pattern"]


def test_every_405_names_the_described_methods_in_allow(server, document):
    """RFC 9110: a 405 carries Allow, the methods the resource takes (what schemathesis' unsupported_method
    and allow_header_conformance checks ask); here every path with every method it does not describe."""
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
    # credentials go out as HTTP Basic; a made-up sign or token would only ever be refused
    schema.config.generation.update(with_security_parameters=False)
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


def test_docs_page_tries_calls_against_this_server(browser, server, app_):
    """/docs in Debian's chromium: Swagger UI, loaded from this server alone (no CDN). "Try it out" calls
    the real /service/random and shows its answer; with HTTP Basic given to Authorize, a REST call too."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    elsewhere = []
    context.route(lambda url: not url.startswith(server.base),
                  lambda route: (elsewhere.append(route.request.url), route.abort()))
    try:
        page = context.new_page()
        page.goto(server.base + "/docs")
        answer = try_it_out(page, "#operations-clients-get_service_random")
        assert '"ok": true' in answer and '"port"' in answer, answer
        page.locator(".auth-wrapper .authorize").click()
        basic = page.locator(".auth-container", has_text="basicAuth")
        basic.locator("input[type=text]").fill(app_["app_key"])
        basic.locator("input[type=password]").fill(app_["app_secret"])
        basic.locator("button.authorize").click()
        page.locator(".modal-ux .close-modal").click()
        answer = try_it_out(page, "#operations-REST_API-get_manager_query_tags")
        assert '"status": 1' in answer and '"total_num": 0' in answer, answer
    finally:
        context.close()
    assert not elsewhere, elsewhere


def try_it_out(page, operation_id: str) -> str:
    """Opens an operation, presses "Try it out" and "Execute" (its prefilled values as they are), and
    returns the body of a 200 answer."""
    operation = page.locator(operation_id)
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    operation.locator(".execute").click()
    answer = operation.locator(".live-responses-table .response")
    answer.locator(".response-col_status", has_text="200").wait_for()
    return answer.locator(".response-col_description pre", has_text='"').first.inner_text()
