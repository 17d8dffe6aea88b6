"""The Java kit (clients/java): `make java` builds its jar and its JUnit 5 tests; here they run once, in one JVM,
against a real hipush (the session's server, and a server of their own that the backoff scenario stops and
starts through a small control endpoint); each conformance scenario of tests/conformance.py is reported as a
test of its own, over the long poll (ConformanceTest) and over the SSE stream (SseConformanceTest). And the
issue's "done when": a three-line program compiled against the jar receives a push sent by HiPushAdmin."""
import subprocess
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conformance import SCENARIOS, camel_case
from hipush.openapi import CALLS
from support import ROOT, Api, Server, free_port

JAVA_DIR = ROOT / "clients" / "java"
JAR = JAVA_DIR / "build" / "hipush-client.jar"
TEST_CLASSES = JAVA_DIR / "build" / "test-classes"
JUNIT_CONSOLE = "/usr/share/java/junit-platform-console-standalone.jar"


@pytest.fixture(scope="module")
def java_built():
    """`make java` (a no-op when `make test` built it already)."""
    made = subprocess.run(["make", "-s", "java"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr


def control_endpoint(server: Server) -> ThreadingHTTPServer:
    """GET /stop and /start stop and start `server`, answering once done (the JUnit backoff scenario)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            {"/stop": server.stop, "/start": server.start}[self.path]()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    endpoint = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    return endpoint


@pytest.fixture(scope="module")
def junit_results(java_built, server, backend_env, store, tmp_path_factory):
    """{(class, method): failure text or None} of one JUnit run of every Java test."""
    app = store.create_app("java")
    own = Server(backend_env, workers=1).start()
    endpoint = control_endpoint(own)
    reports = tmp_path_factory.mktemp("junit")
    try:
        run = subprocess.run(
            ["java", f"-Dhipush.server={server.base}", f"-Dhipush.appKey={app['app_key']}",
             f"-Dhipush.appSecret={app['app_secret']}", f"-Dhipush.ownServer={own.base}",
             f"-Dhipush.control=http://127.0.0.1:{endpoint.server_address[1]}",
             "-jar", JUNIT_CONSOLE, "--disable-banner", "--details=none", "--reports-dir", str(reports),
             "--class-path", f"{TEST_CLASSES}:{JAR}", "--scan-class-path"],
            capture_output=True, text=True, timeout=300)
    finally:
        endpoint.shutdown()
        own.stop()
    results = {}
    for case in ET.parse(reports / "TEST-junit-jupiter.xml").getroot().iter("testcase"):
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped") is not None
        results[(case.get("classname").rsplit(".", 1)[-1], case.get("name"))] = (
            "skipped" if skipped else None if problem is None else short_trace(problem.text or problem.get("message")))
    assert results, run.stdout + run.stderr
    return results


def short_trace(text: str) -> str:
    """A Java failure without the test framework's frames."""
    return "\n".join(line for line in text.splitlines() if "org.junit" not in line and "java.base/" not in line)


CONFORMANCE_CLASSES = {"poll": "ConformanceTest", "sse": "SseConformanceTest"}  # by HiPushClient.Transport


@pytest.mark.parametrize("transport", list(CONFORMANCE_CLASSES))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_java_conformance(junit_results, scenario, transport):
    name = (CONFORMANCE_CLASSES[transport], f"{camel_case(scenario)}()")
    assert name in junit_results, f"no JUnit test {name[0]}.{name[1]} for the scenario {scenario!r}"
    assert junit_results[name] is None, junit_results[name]


def test_java_admin_client_rules_signing_and_json(junit_results):
    others = {name: outcome for name, outcome in junit_results.items()
              if name[0] not in CONFORMANCE_CLASSES.values()}
    assert {cls for cls, _ in others} == {"AdminTest", "ClientBehaviourTest", "SigningTest"}
    assert {name: outcome for name, outcome in others.items() if outcome is not None} == {}


@pytest.mark.parametrize("cls", list(CONFORMANCE_CLASSES.values()))
def test_every_java_conformance_test_is_a_scenario(junit_results, cls):
    methods = {method for name, method in junit_results if name == cls}
    assert methods == {f"{camel_case(s)}()" for s in SCENARIOS}


def test_hipush_admin_has_every_backend_call():
    source = (JAVA_DIR / "src" / "io" / "hipush" / "HiPushAdmin.java").read_text()
    backend = [path for path, call in CALLS.items() if call.auth in ("signature", "optional signature", "app")]
    assert [path for path in backend if f'"{path}"' not in source] == []


THREE_LINES = """import io.hipush.*;
public class Receive {
  public static void main(String[] args) {
    HiPushClient client = HiPushClient.builder(args[0], args[1]).deviceId("d1").build();
    client.setListener(new HiPushListener() { public void onMessage(HiPushMessage m) { System.out.println(m.content()); System.exit(0); } });
    client.connect();
  }
}
"""

SEND = """import io.hipush.*;
public class Send {
  public static void main(String[] args) throws Exception {
    System.out.println(new HiPushAdmin(args[0], args[1], args[2]).pushTerminal(java.util.Arrays.asList(args[3]), args[4]));
  }
}
"""


def test_a_three_line_program_receives_a_push_sent_by_hipush_admin(java_built, server, store, tmp_path):
    app = store.create_app("java-three-lines")
    (tmp_path / "Receive.java").write_text(THREE_LINES)
    (tmp_path / "Send.java").write_text(SEND)
    compiled = subprocess.run(["javac", "--release", "8", "-cp", str(JAR), "Receive.java", "Send.java"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    classpath = f"{JAR}:{tmp_path}"
    receiver = subprocess.Popen(["java", "-cp", classpath, "Receive", server.base, app["app_key"]], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client_id = Api(server.base).ok("/user/genId", {"device_id": "d1", "app_key": app["app_key"]})["client_id"]
        sent = subprocess.run(["java", "-cp", classpath, "Send", server.base, app["app_key"], app["app_secret"],
                               client_id, "hello from Java"], capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0 and sent.stdout.strip().isdigit(), sent.stderr
        out, err = receiver.communicate(timeout=60)
        assert (receiver.returncode, out) == (0, "hello from Java\n"), err
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
