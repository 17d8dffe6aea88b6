"""The administration commands of app.py, as an operator runs them."""
import json
import subprocess
import sys

from support import ROOT, wait_for


def run(server, *args):
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, env=server.env, capture_output=True,
                          text=True, timeout=60)


def test_create_list_rotate_and_configure_an_app(server, api):
    app = server.create_app("shop")
    assert set(app) >= {"app_key", "app_secret", "name"} and app["name"] == "shop" and app["jsonp"] is True
    listed = [json.loads(line) for line in server.cli("list-apps").splitlines()]
    assert app["app_key"] in {a["app_key"] for a in listed}

    rotated = json.loads(server.cli("rotate-secret", app["app_key"]))
    assert rotated["app_secret"] != app["app_secret"]
    fresh = {**app, "app_secret": rotated["app_secret"]}
    assert api.new_job(fresh) > 0
    wait_for(lambda: api.call("/job/genId", {"name": "n", "type": "t"}, app).status_code == 401,
             message="the old secret refused (workers cache an app for 5 s)")

    settings = json.loads(server.cli("app-set", app["app_key"], "--token-policy", "signed",
                                     "--allowed-origins", "https://a.example, https://b.example",
                                     "--publish-rate", "50", "--jsonp", "off"))
    assert (settings["token_policy"], settings["allowed_origins"], settings["publish_rate"], settings["jsonp"]) == \
        ("signed", "https://a.example,https://b.example", 50, False)
    assert {a["app_key"]: a["jsonp"] for a in map(json.loads, server.cli("list-apps").splitlines())}[app["app_key"]] \
        is False
    client_id = api.ok("/user/genId", {"device_id": "d", "app_key": app["app_key"]})["client_id"]
    wait_for(lambda: api.call("/user/token", {"client_id": client_id}).status_code == 401,
             message="the signed token policy applies")


def test_bad_commands_fail_clearly_and_change_nothing(server):
    unknown = run(server, "rotate-secret", "no-such-app")
    assert unknown.returncode == 1 and "no such app" in unknown.stderr
    bad_rate = run(server, "app-set", server.create_app()["app_key"], "--publish-rate", "fast")
    assert bad_rate.returncode == 1 and "publish_rate" in bad_rate.stderr
    bad_policy = run(server, "app-set", "k", "--sign-policy", "sha1")
    assert bad_policy.returncode == 2 and "invalid choice" in bad_policy.stderr
    bad_jsonp = run(server, "app-set", "k", "--jsonp", "maybe")
    assert bad_jsonp.returncode == 2 and "invalid choice" in bad_jsonp.stderr
    too_long = run(server, "create-app", "x" * 65)
    assert too_long.returncode == 1 and "name" in too_long.stderr
