"""The browser SDK (/sdk/hipush.js) and the demo page (/demo) in Debian's chromium, driven by Playwright.

Everything runs against real gunicorn servers. Chromium is /usr/bin/chromium from Debian (`make test`
installs it); Playwright never downloads a browser of its own (the `browser` fixture is in conftest.py).
"""
import hashlib
import json
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests

from support import ROOT, Api, Server, free_port, wait_for

SCREENSHOT = ROOT / "docs" / "demo.png"
WAIT_MS = 20_000  # default deadline of a page condition


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    for page in ctx.pages:  # pytest shows this only for a failed test
        try:
            print(page.url, page.evaluate(
                "window.demo && demo.push ? [demo.push.state, demo.push.node, demo.push.stats] : null"))
            print(page.evaluate("document.getElementById('log') && document.getElementById('log').textContent"))
        except Exception as exc:
            print(f"page {page.url}: {exc}")
    ctx.close()


def open_demo(context, base: str, app: dict, device_id: str, **query):
    """Opens /demo for the app (it connects at once) and waits until the SDK is connected."""
    page = context.new_page()
    page.goto(f"{base}/demo?" + urlencode({"appKey": app["app_key"], "deviceId": device_id, **query}))
    page.wait_for_selector("#state.connected")
    return page


def client_of(page) -> dict:
    return {"client_id": page.evaluate("demo.push.clientId")}


def wait_listed(page, content, timeout=WAIT_MS):
    page.wait_for_function("c => demo.messages.some(m => m.content === c)", arg=content, timeout=timeout)


def listed(page) -> list:
    """(delivery id, kind, text) of every message on the page, oldest first."""
    return page.eval_on_selector_all(
        "#messages li[data-id]",
        "items => items.reverse().map(li => [Number(li.dataset.id), li.dataset.kind, li.childNodes[1].textContent])")


def stats(page) -> dict:
    return page.evaluate("Object.assign({state: demo.push.state}, demo.push.stats)")


def wait_arrived(api, app, job, count):
    wait_for(lambda: api.stats(app, job)["arrived"] == count, message=f"{count} acknowledged messages of job {job}")


def test_sdk_and_demo_are_served(server):
    sdk = requests.get(server.base + "/sdk/hipush.js", timeout=10)
    assert sdk.status_code == 200
    assert sdk.headers["Content-Type"].startswith("application/javascript")
    assert sdk.headers["X-Content-Type-Options"] == "nosniff"
    assert "function HiPush(" in sdk.text
    code = re.sub(r"/\*.*?\*/", "", sdk.text, flags=re.S)
    code = re.sub(r"(^|\s)//.*", "", code)  # comments, not the // of a URL in a string
    for es6 in (r"\blet\s", r"\bconst\s", "=>", r"\bclass\s", "`", r"\.\.\.", r"\basync\s+function"):
        assert not re.search(es6, code), f"hipush.js uses {es6}: ES5 only, for old X5 WebViews"
    demo = requests.get(server.base + "/demo", timeout=10)
    assert demo.status_code == 200 and demo.headers["Content-Type"].startswith("text/html")
    assert '<script src="/sdk/hipush.js"></script>' in demo.text


def test_demo_connects_and_lists_published_messages(context, server, api, app_):
    page = open_demo(context, server.base, app_, "browser-1")
    assert page.text_content("#state") == "connected"
    client = client_of(page)
    assert page.text_content("#client-id") == client["client_id"]
    job = api.new_job(app_)
    api.send(app_, job, client, "hello browser")
    api.send(app_, job, client, "<b>not html</b> & more")
    wait_listed(page, "<b>not html</b> & more")
    assert [(kind, text) for _, kind, text in listed(page)] == [
        ("message", "hello browser"), ("message", "<b>not html</b> & more")]
    assert page.locator("#messages b").count() == 0  # shown as text
    page.wait_for_function("document.getElementById('stat-received').textContent === '2'")
    wait_arrived(api, app_, job, 2)  # the SDK acknowledged both

    # a revoked token: the next poll is answered 401, the SDK fetches a new token and goes on
    old_token = page.evaluate("demo.push.token")
    api.ok("/user/revoke", {"client_id": client["client_id"]}, app_)
    api.send(app_, job, client, "after revoke 1")  # answers the poll parked before the revocation
    api.send(app_, job, client, "after revoke 2")
    wait_listed(page, "after revoke 2", timeout=30_000)
    assert page.evaluate("demo.push.token") != old_token
    assert [text for _, _, text in listed(page)][2:] == ["after revoke 1", "after revoke 2"]
    wait_arrived(api, app_, job, 4)


def test_auto_receives_over_sse_acks_in_batches_and_refreshes_a_revoked_token(context, server, api, app_):
    """transport "auto" in Chromium: an EventSource on /comet/stream, no polls; 150 messages acknowledged by a
    few batched POST /comet/ack (the server's in-flight drains); a revoked token's stream ends, the SDK probes,
    fetches a new token and streams again; closing the page acknowledges what it processed last (a beacon)."""
    seen = []
    page = context.new_page()
    page.on("request", lambda r: seen.append((r.resource_type, urlsplit(r.url).path)))
    page.goto(f"{server.base}/demo?" + urlencode({"appKey": app_["app_key"], "deviceId": "browser-sse"}))
    page.wait_for_selector("#state.connected")
    assert page.evaluate("demo.push.transport") == "sse"
    client = client_of(page)
    job = api.new_job(app_)
    for n in range(150):
        api.send(app_, job, client, f"sse {n}")
    wait_listed(page, "sse 149")
    wait_arrived(api, app_, job, 150)
    acks = [path for _, path in seen if path == "/comet/ack"]
    assert 1 <= len(acks) <= 15, acks
    assert ("eventsource", "/comet/stream") in seen and "/comet/poll" not in [path for _, path in seen]

    old_token = page.evaluate("demo.push.token")
    api.ok("/user/revoke", {"client_id": client["client_id"]}, app_)
    api.send(app_, job, client, "after revoke")
    wait_listed(page, "after revoke", timeout=30_000)
    assert page.evaluate("demo.push.token") != old_token and page.evaluate("demo.push.transport") == "sse"
    assert [text for _, _, text in listed(page)][150:] == ["after revoke"]
    page.close()  # before its batch's second is up: the page's last ack goes as a beacon
    wait_arrived(api, app_, job, 151)


def test_cross_origin_page_uses_cors(context, server, api, app_):
    """A page of another origin (localhost vs 127.0.0.1) polls with CORS XHR. Error answers carry no CORS
    headers, so the SDK cannot see the 401 of a revoked token either: it fetches a new one after failures."""
    seen = []
    page = context.new_page()
    page.on("request", lambda r: seen.append((r.resource_type, r.url)))
    page.goto(f"http://localhost:{server.port}/demo?" + urlencode(
        {"server": server.base, "appKey": app_["app_key"], "deviceId": "browser-cors", "transport": "xhr"}))
    page.wait_for_selector("#state.connected")
    client = client_of(page)
    job = api.new_job(app_)
    api.send(app_, job, client, "across origins")
    wait_listed(page, "across origins")
    polls = [(kind, url) for kind, url in seen if "/comet/poll" in url]
    assert polls and all(kind == "xhr" and url.startswith(server.base) for kind, url in polls), polls

    api.ok("/user/revoke", {"client_id": client["client_id"]}, app_)
    api.send(app_, job, client, "cors after revoke")
    api.send(app_, job, client, "cors after a new token")
    wait_listed(page, "cors after a new token", timeout=45_000)
    assert [text for _, _, text in listed(page)] == ["across origins", "cors after revoke", "cors after a new token"]
    wait_arrived(api, app_, job, 3)


def test_cross_origin_page_streams_and_acknowledges_with_cors(context, server, api, app_):
    """The same over SSE: the EventSource and the POST /comet/ack (a form body: no preflight) cross origins."""
    page = context.new_page()
    polls = []  # none: the stream opened
    page.on("request", lambda r: "/comet/poll" in r.url and polls.append(r.url))
    page.goto(f"http://localhost:{server.port}/demo?" + urlencode(
        {"server": server.base, "appKey": app_["app_key"], "deviceId": "browser-cors-sse"}))
    page.wait_for_selector("#state.connected")
    assert page.evaluate("demo.push.transport") == "sse"
    job = api.new_job(app_)
    with page.expect_request(lambda r: r.url == server.base + "/comet/ack") as ack:
        api.send(app_, job, client_of(page), "streamed across origins")
        wait_listed(page, "streamed across origins")
    assert (ack.value.resource_type, ack.value.method) == ("xhr", "POST")
    assert ack.value.response().status == 200
    wait_arrived(api, app_, job, 1)
    assert page.evaluate("demo.push.stats.failures") == 0 and polls == []


NOTIFICATION_SPY = """
(() => {
  const Real = window.Notification;
  window.__shown = [];
  window.__notifications = [];  // what the SDK made: a test may click one (onclick)
  function Spy(title, options) {
    window.__shown.push({title: title, options: options || {}});
    window.__notifications.push(this);
  }
  Object.defineProperty(Spy, "permission", {get: () => Real.permission});
  Spy.requestPermission = (cb) => Real.requestPermission(cb);
  window.Notification = Spy;
})();
"""


def test_notifications_use_the_notification_api_when_allowed(context, server, api, app_):
    context.grant_permissions(["notifications"], origin=server.base)
    context.add_init_script(NOTIFICATION_SPY)
    page = open_demo(context, server.base, app_, "browser-notify")
    assert page.evaluate("Notification.permission") == "granted"
    client = client_of(page)
    job = api.new_job(app_)
    api.send(app_, job, client, json.dumps({"title": "Sale", "body": "50% off", "url": "https://example.com/"}),
             msg_type=1)
    api.send(app_, job, client, "plain text notification", msg_type=1)
    api.send(app_, job, client, "a silent message", msg_type=0)
    wait_listed(page, "a silent message")
    shown = page.evaluate("window.__shown")
    assert [(n["title"], n["options"]["body"]) for n in shown] == [
        ("Sale", "50% off"), ("hipush demo", "plain text notification")]  # no title: the page's title
    assert [(kind, text) for _, kind, text in listed(page)] == [
        ("notification", "Sale: 50% off"), ("notification", "hipush demo: plain text notification"),
        ("message", "a silent message")]

    # permission withdrawn: the notification event still fires, nothing is shown
    context.clear_permissions()
    page.wait_for_function("Notification.permission !== 'granted'")
    api.send(app_, job, client, json.dumps({"title": "Hidden", "body": "not shown"}), msg_type=1)
    page.wait_for_function("demo.messages.length === 4")
    assert page.evaluate("window.__shown.length") == 2
    wait_arrived(api, app_, job, 4)


def test_clicks_on_a_shown_notification_and_a_listed_message_are_counted(context, server, api, app_):
    """A shown notification reports its click itself; the demo reports a click on a listed message with
    push.clicked(message). Each counts once in the job's `clicked`."""
    context.grant_permissions(["notifications"], origin=server.base)
    context.add_init_script(NOTIFICATION_SPY)
    page = open_demo(context, server.base, app_, "browser-clicks")
    client = client_of(page)
    job = api.new_job(app_)
    api.send(app_, job, client, json.dumps({"title": "Sale", "body": "click me"}), msg_type=1)
    api.send(app_, job, client, "a plain message")
    wait_listed(page, "a plain message")
    page.evaluate("window.__notifications[0].onclick()")
    wait_for(lambda: api.stats(app_, job)["clicked"] == 1, message="the notification's click counted")
    [message_id] = [delivery_id for delivery_id, kind, _ in listed(page) if kind == "message"]
    item = page.locator(f"#messages li[data-id='{message_id}']")
    item.click()
    page.wait_for_selector(f"#messages li.clicked[data-id='{message_id}']")
    item.click()  # again: still one
    page.wait_for_function("document.getElementById('log').textContent.split('reported').length === 3")
    assert api.stats(app_, job)["clicked"] == 2


def test_sdk_survives_a_server_restart(context, backend_env, redis_client, app_):
    port = free_port()
    first = Server(backend_env, workers=2, port=port).start()
    second = None
    try:
        api = Api(first.base)
        # a device whose node (rendezvous hashing over the live nodes) is this server, not another test's
        for n in range(200):
            client_id = api.ok("/user/genId", {"device_id": f"restart-{n}", "app_key": app_["app_key"]})["client_id"]
            if api.ok("/service/hash", {"client_id": client_id})["port"] == port:
                break
        else:
            raise AssertionError("no device id of 200 hashes to the restarted server")
        page = open_demo(context, first.base, app_, f"restart-{n}")
        assert page.evaluate("demo.push.node") == first.base
        job = api.new_job(app_)
        api.send(app_, job, client_of(page), "before restart")
        wait_listed(page, "before restart")

        first.stop()
        page.wait_for_function("demo.push.state !== 'connected'", timeout=30_000)
        second = Server(backend_env, workers=2, port=port).start()
        Api(second.base).send(app_, job, client_of(page), "after restart")
        wait_listed(page, "after restart", timeout=60_000)  # backoff is capped at 30 s
        after = stats(page)
        assert after["state"] == "connected" and after["reconnects"] >= 1, after
        assert page.evaluate("demo.push.node") == second.base
        assert [text for _, _, text in listed(page)] == ["before restart", "after restart"]
        wait_arrived(Api(second.base), app_, job, 2)
    finally:
        first.stop()
        if second:
            second.stop()


WATCHED_SDK = """([server, appKey]) => {
  const push = new HiPush({server: server, appKey: appKey, deviceId: "browser-stopping", discover: false,
                           minDelay: 100, maxDelay: 400, transport: "xhr"});
  window.watched = {push: push, requests: [], states: [], messages: []};
  const send = push._send, setState = push._setState;
  push._send = function (base, path, params, timeoutMs, callback) {  // notes each request and its answer
    const request = {path: path, sent: performance.now()};
    watched.requests.push(request);
    return send.call(this, base, path, params, timeoutMs, function (error, result) {
      Object.assign(request, {answered: performance.now(), status: error ? error.status : 200,
                              code: error && error.code});
      callback(error, result);
    });
  };
  push._setState = function (state) {
    watched.states.push(state);
    setState.call(this, state);
  };
  push.on("message", m => watched.messages.push(m.content));
  push.connect();
}"""


def test_sdk_waits_as_a_stopping_node_asks_and_reconnects_on_a_poll_answered(context, backend_env, redis_client,
                                                                             app_):
    """A stopping node answers the SDK's next poll 503 / 1031 with Retry-After: 1 (not 200 at once). The SDK,
    here with a short backoff of its own (0.1-0.4 s), waits at least that second, stays `reconnecting` while
    the node is down, and is `connected` again only once a poll of the restarted node answers."""
    node = Server(backend_env, workers=2, port=free_port()).start()
    try:
        page = context.new_page()
        page.goto(node.base + "/demo")  # no app key given: the demo does not connect by itself
        page.evaluate(WATCHED_SDK, [node.base, app_["app_key"]])
        page.wait_for_function("watched.push.state === 'connected'")
        node.stop()
        requests_seen = page.evaluate("watched.requests")
        refused = [n for n, r in enumerate(requests_seen) if r.get("status") == 503]
        assert refused, requests_seen
        for n in refused:
            assert requests_seen[n]["path"] == "/comet/poll" and requests_seen[n]["code"] == 1031
            page.wait_for_function("n => watched.requests.length > n + 1", arg=n)
            waited = page.evaluate("n => watched.requests[n + 1].sent - watched.requests[n].answered", n)
            assert waited >= 1000, (waited, requests_seen)
        assert page.evaluate("watched.push.state") == "reconnecting"

        node.start()  # the same port
        api = Api(node.base)
        api.send(app_, api.new_job(app_), {"client_id": page.evaluate("watched.push.clientId")}, "after the stop")
        page.wait_for_function("watched.messages.length === 1", timeout=30_000)
        assert page.evaluate("watched.states") == ["connecting", "connected", "reconnecting", "connected"]
        assert page.evaluate("watched.messages") == ["after the stop"]
    finally:
        node.stop()


def test_redelivered_message_is_listed_once(context, server, api, app_):
    """The poll that acknowledges the first message loses its ack on the way (a proxy, say): the server
    hands the message out again, and the SDK drops it by id."""
    page = open_demo(context, server.base, app_, "browser-dup", transport="xhr")
    client = client_of(page)
    stripped = []

    def drop_first_ack(route):
        parts = urlsplit(route.request.url)
        params = parse_qsl(parts.query, keep_blank_values=True)
        if not stripped and any(k == "ack" for k, _ in params):
            stripped.append(dict(params)["ack"])
            route.continue_(url=urlunsplit(parts._replace(query=urlencode([p for p in params if p[0] != "ack"]))))
        else:
            route.continue_()

    page.route(re.compile(r"/comet/poll\?"), drop_first_ack)
    job = api.new_job(app_)
    api.send(app_, job, client, "only once")
    page.wait_for_function("demo.push.stats.duplicates === 1")
    [(first_id, _, _)] = listed(page)
    assert stripped == [str(first_id)]
    api.send(app_, job, client, "and the next one")
    wait_listed(page, "and the next one")
    assert [text for _, _, text in listed(page)] == ["only once", "and the next one"]
    assert stats(page)["received"] == 2 and stats(page)["duplicates"] == 1
    page.wait_for_function("document.getElementById('stat-duplicates').textContent === '1'")  # redrawn 5x a second
    wait_arrived(api, app_, job, 2)


def test_jsonp_transport_end_to_end(context, server, api, app_):
    requests_seen = []
    page = context.new_page()
    page.on("request", lambda r: requests_seen.append((r.resource_type, r.url)))
    page.goto(f"{server.base}/demo?" + urlencode({"appKey": app_["app_key"], "deviceId": "browser-jsonp",
                                                  "transport": "jsonp"}))
    page.wait_for_selector("#state.connected")
    client = client_of(page)
    job = api.new_job(app_)
    api.send(app_, job, client, "over jsonp")
    api.send(app_, job, client, json.dumps({"title": "T", "body": "B"}), msg_type=1)
    page.wait_for_function("demo.messages.length === 2")
    assert [(kind, text) for _, kind, text in listed(page)] == [("message", "over jsonp"), ("notification", "T: B")]
    wait_arrived(api, app_, job, 2)

    api_calls = [(kind, url) for kind, url in requests_seen if re.search(r"/(user|service|comet)/", url)]
    assert {urlsplit(url).path for _, url in api_calls} >= {"/user/genId", "/user/token", "/comet/poll"}
    assert all(kind == "script" and re.search(r"[?&]callback=__hipush\.c\d+", url) for kind, url in api_calls), \
        [(kind, url) for kind, url in api_calls if kind != "script"]

    # JSONP cannot see a 401: after failures in a row the SDK fetches a new token
    api.ok("/user/revoke", {"client_id": client["client_id"]}, app_)
    api.send(app_, job, client, "jsonp after revoke")  # taken by the poll parked before the revocation
    api.send(app_, job, client, "jsonp after a new token")
    wait_listed(page, "jsonp after a new token", timeout=45_000)
    assert [text for _, _, text in listed(page)][2:] == ["jsonp after revoke", "jsonp after a new token"]
    assert stats(page)["failures"] >= 3
    wait_arrived(api, app_, job, 4)


def test_token_mode_with_ids_from_the_backend(context, server, api, app_):
    """An app with the signed token policy: its backend hands the page a client id and tokens."""
    server.cli("app-set", app_["app_key"], "--token-policy", "signed")
    client_id = api.ok("/user/genId", {"device_id": "browser-signed", "app_key": app_["app_key"]})["client_id"]
    issued = []

    def backend_token(asked_for):  # the app backend's endpoint, called by the page's getToken
        assert asked_for == client_id
        issued.append(api.ok("/user/token", {"client_id": asked_for}, app_)["token"])
        return issued[-1]

    page = context.new_page()
    page.expose_function("backendToken", backend_token)
    page.goto(server.base + "/demo")  # no app key given: the demo does not connect by itself
    page.evaluate("""([server, clientId, token]) => {
      window.got = [];
      window.tokenPush = new HiPush({server: server, clientId: clientId, token: token, getToken: (id, cb) =>
        backendToken(id).then(t => cb(null, t), cb)});
      tokenPush.on("message", m => got.push(m.content));
      tokenPush.connect();
    }""", [server.base, client_id, backend_token(client_id)])
    page.wait_for_function("tokenPush.state === 'connected'")
    assert page.evaluate("tokenPush.deviceId") is None
    job = api.new_job(app_)
    api.send(app_, job, {"client_id": client_id}, "signed 1")
    page.wait_for_function("got.length === 1")
    api.ok("/user/revoke", {"client_id": client_id}, app_)
    api.send(app_, job, {"client_id": client_id}, "signed 2")
    api.send(app_, job, {"client_id": client_id}, "signed 3")
    page.wait_for_function("got.length === 3", timeout=30_000)
    # 2 and 3 may reach the poll parked before the revocation; the poll after it must refresh the token
    api.send(app_, job, {"client_id": client_id}, "signed 4")
    page.wait_for_function("got.length === 4", timeout=30_000)
    assert page.evaluate("got") == ["signed 1", "signed 2", "signed 3", "signed 4"]
    assert len(issued) == 2  # the first, and one after the revocation
    wait_arrived(api, app_, job, 4)


def test_demo_page_sends_and_screenshot(context, server, app_, tmp_path):
    page = open_demo(context, server.base, app_, "demo-device")
    page.set_viewport_size({"width": 1280, "height": 640})
    for text in ("", "abc", "app_key=k&content=héllo 你好&job_id=1secret", "x" * 200):
        assert page.evaluate("t => demo.md5(t)", text) == hashlib.md5(text.encode()).hexdigest()

    page.fill("#app-secret", app_["app_secret"])
    page.fill("#content", "Hello from the demo page: a=1&b=2 + more")
    page.click("#send-private")
    wait_listed(page, "Hello from the demo page: a=1&b=2 + more")
    page.select_option("#msg-type", "1")
    page.fill("#content", json.dumps({"title": "Flash sale", "body": "Everything 50% off until midnight",
                                      "url": "https://example.com/sale"}))
    page.click("#send-private")
    page.wait_for_function("demo.messages.length === 2")
    page.select_option("#msg-type", "0")
    page.fill("#topic", "news")
    page.click("#subscribe")
    page.wait_for_function("document.getElementById('log').textContent.includes('subscribed to news')")
    page.fill("#content", "Breaking: hipush now has a browser SDK")
    page.click("#send-topic")
    wait_listed(page, "Breaking: hipush now has a browser SDK")
    assert [(kind, text) for _, kind, text in listed(page)] == [
        ("message", "Hello from the demo page: a=1&b=2 + more"),
        ("notification", "Flash sale: Everything 50% off until midnight"),
        ("message", "Breaking: hipush now has a browser SDK")]
    page.wait_for_function("document.getElementById('stat-received').textContent === '3'")

    # docs/demo.png is written when missing (or with HIPUSH_UPDATE_SCREENSHOT=1), so runs leave git clean
    target = SCREENSHOT if not SCREENSHOT.exists() or os.environ.get("HIPUSH_UPDATE_SCREENSHOT") else \
        tmp_path / "demo.png"
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert Path(target).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
