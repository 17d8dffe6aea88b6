"""The Python kit as its users get it: built into a wheel and sdist, and `pip install <checkout>/clients/python`
into a fresh venv outside the checkout (no server, Flask or Redis), whose `hipush subscribe` receives what its
`hipush publish` sends, acknowledges, reconnects, and runs an --exec command per message."""
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import pytest

from hipush_client import Admin
from support import ROOT, Server, free_port, wait_for

KIT = ROOT / "clients" / "python"


@pytest.fixture(scope="session")
def kit_venv():
    """A fresh venv in a scratch directory with the kit pip-installed from the checkout; built once a run."""
    scratch = Path(tempfile.mkdtemp(prefix="hp-kit-", dir="/tmp"))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(scratch / "venv")], check=True, timeout=120)
        subprocess.run([str(scratch / "venv/bin/pip"), "install", "-q", str(KIT)], cwd=scratch, check=True,
                       timeout=300)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def hipush(scratch, *args, env=None, **kwargs):
    """Runs the venv's `hipush` command in the scratch directory (the checkout is not on its path)."""
    return subprocess.run([str(scratch / "venv/bin/hipush"), *args], cwd=scratch, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, **kwargs)


class Subscriber:
    """`hipush subscribe` as a subprocess; its stdout lines are read as they come."""

    def __init__(self, scratch, server, app, *args, env=None):
        self.process = subprocess.Popen(
            [str(scratch / "venv/bin/hipush"), "subscribe", *args], cwd=scratch, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "HIPUSH_SERVER": server.base, "HIPUSH_APP_KEY": app["app_key"], **(env or {})})
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _read(stream, put):
        for line in stream:
            put(line.rstrip("\n"))

    def next_message(self, timeout=20.0) -> dict:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s; stderr: {self.stderr[-5:]}") from None

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(30)


def client_id_of(api, app, device_id) -> str:
    return api.ok("/user/genId", {"device_id": device_id, "app_key": app["app_key"]})["client_id"]


def test_the_wheel_is_pure_python_and_needs_only_requests(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(tmp_path), str(KIT)], check=True,
                   capture_output=True, timeout=300)
    wheel, = tmp_path.glob("hipush_client-*-py3-none-any.whl")
    assert len(list(tmp_path.glob("hipush_client-*.tar.gz"))) == 1
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
    assert [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")] \
        == ["requests>=2.25"]
    assert "hipush = hipush_client.cli:main" in entry_points


def test_the_kit_installs_without_the_server(kit_venv):
    installed = subprocess.run([str(kit_venv / "venv/bin/pip"), "list", "--format=json"], capture_output=True,
                               text=True, check=True, timeout=60).stdout
    names = {p["name"].lower() for p in json.loads(installed)}
    assert "hipush-client" in names and "requests" in names
    assert not names & {"flask", "redis", "gevent", "gunicorn", "sqlalchemy"}
    imports = subprocess.run([str(kit_venv / "venv/bin/python"), "-c", "import hipush_client, hipush"],
                             cwd=kit_venv, capture_output=True, text=True, timeout=60)
    assert "No module named 'hipush'" in imports.stderr  # the kit, not the server
    assert hipush(kit_venv, "--help").returncode == 0


@pytest.mark.parametrize("transport", ["poll", "sse"])
def test_subscribe_prints_what_publish_sends_and_acknowledges_it(server, api, app_, kit_venv, transport):
    client_id = client_id_of(api, app_, "kit-phone")
    subscriber = Subscriber(kit_venv, server, app_, "--device-id", "kit-phone", "--poll-timeout", "2",
                            "--transport", transport)
    try:
        credentials = ["--server", server.base, "--app-key", app_["app_key"], "--app-secret", app_["app_secret"]]
        sent = [hipush(kit_venv, "publish", *credentials, "--client", client_id, "hello from the kit"),
                hipush(kit_venv, "publish", *credentials, "--client", client_id, "--title", "Goal", "2:1")]
        assert [r.returncode for r in sent] == [0, 0], [r.stderr for r in sent]
        msg_ids = [json.loads(r.stdout)["msg_id"] for r in sent]

        got = sorted((subscriber.next_message(), subscriber.next_message()), key=lambda m: m["msg_id"])
        assert [(m["msg_id"], m["msg_type"], m["content"]) for m in got] == [
            (msg_ids[0], 0, "hello from the kit"), (msg_ids[1], 1, {"title": "Goal", "body": "2:1"})]
        assert all(isinstance(m["id"], int) and isinstance(m["ts"], int) for m in got)

        with Admin(server.base, app_["app_key"], app_["app_secret"]) as admin:
            wait_for(lambda: admin.query_terminal(client_id).unacked_num == 0 and
                     admin.query_terminal(client_id).queued_num == 0, message="both messages acknowledged")
        assert any(f"as {client_id}" in line for line in subscriber.stderr)
    finally:
        assert subscriber.stop() == 0


def test_subscribe_reconnects_by_itself(backend_env, api, kit_venv, store):
    """The node stops and starts again on the same port: the subscriber carries on, nothing lost or doubled."""
    own = Server(backend_env, workers=1, port=free_port()).start()
    app = store.create_app("kit")
    subscriber = Subscriber(kit_venv, own, app, "--device-id", "kit-gateway", "--poll-timeout", "2",
                            "--no-discover")  # this node, not another one of the run's (they share the Redis)
    try:
        client_id = client_id_of(api, app, "kit-gateway")
        env = {"HIPUSH_SERVER": own.base, "HIPUSH_APP_KEY": app["app_key"], "HIPUSH_APP_SECRET": app["app_secret"]}
        assert hipush(kit_venv, "publish", "--client", client_id, "before", env=env).returncode == 0
        assert subscriber.next_message()["content"] == "before"
        own.stop()
        wait_for(lambda: any("reconnecting" in line for line in subscriber.stderr), message="the stop noticed")
        own.start()
        assert hipush(kit_venv, "publish", "--client", client_id, "after", env=env).returncode == 0
        assert subscriber.next_message(timeout=40)["content"] == "after"
        assert subscriber.lines.empty()
    finally:
        assert subscriber.stop() == 0
        own.stop()


def test_exec_runs_a_command_per_message(server, api, app_, kit_venv, tmp_path):
    client_id = client_id_of(api, app_, "kit-hook")
    command = ('cat > "$OUT/$HIPUSH_ID.stdin"; printf %s "$HIPUSH_MESSAGE" > "$OUT/$HIPUSH_ID.env"; '
               'printf %s "$HIPUSH_MSG_TYPE $HIPUSH_CONTENT" > "$OUT/$HIPUSH_ID.content"')
    subscriber = Subscriber(kit_venv, server, app_, "--device-id", "kit-hook", "--poll-timeout", "2",
                            "--exec", command, env={"OUT": str(tmp_path)})
    try:
        with Admin(server.base, app_["app_key"], app_["app_secret"]) as admin:
            admin.push_terminal(client_id, "first")
            admin.push_terminal(client_id, {"title": "T", "body": "second"})
            wait_for(lambda: len(list(tmp_path.glob("*.content"))) == 2, timeout=30, message="two commands run")
            wait_for(lambda: admin.query_terminal(client_id).unacked_num == 0, message="both acknowledged")
        contents = sorted(p.read_text() for p in tmp_path.glob("*.content"))
        assert contents == ["0 first", '1 {"body":"second","title":"T"}']
        for stdin in tmp_path.glob("*.stdin"):
            message = json.loads(stdin.read_text())
            assert message == json.loads(stdin.with_suffix(".env").read_text())
            assert stdin.stem == str(message["id"])
        assert subscriber.lines.empty()  # the command's, not printed
    finally:
        assert subscriber.stop() == 0


def test_subscribe_with_an_unknown_app_key_fails_at_once(server, kit_venv):
    refused = hipush(kit_venv, "subscribe", "--server", server.base, "--app-key", "no-such-app", "--device-id", "d")
    assert refused.returncode == 1 and "error" in refused.stderr and refused.stdout == ""


def test_subscribe_to_an_app_with_signed_tokens_needs_the_secret(server, api, app_, kit_venv):
    server.cli("app-set", app_["app_key"], "--token-policy", "signed")
    client_id = client_id_of(api, app_, "kit-signed")
    wait_for(lambda: api.call("/user/token", {"client_id": client_id}).status_code == 401,
             message="the signed token policy applies (workers cache an app for 5 s)")
    unsigned = hipush(kit_venv, "subscribe", "--server", server.base, "--app-key", app_["app_key"],
                      "--device-id", "kit-signed")
    assert unsigned.returncode == 1 and "1028" in unsigned.stderr

    subscriber = Subscriber(kit_venv, server, app_, "--device-id", "kit-signed", "--poll-timeout", "2",
                            env={"HIPUSH_APP_SECRET": app_["app_secret"]})
    try:
        with Admin(server.base, app_["app_key"], app_["app_secret"]) as admin:
            admin.push_terminal(client_id, "signed hello")
        assert subscriber.next_message()["content"] == "signed hello"
    finally:
        assert subscriber.stop() == 0
