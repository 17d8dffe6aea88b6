"""The JavaScript kit (clients/js, npm package hipush-js): its unit tests, its packed tarball installed into a
scratch npm project (require, import, and the types checked by tsc), and /sdk/hipush.js as the package's file.

Needs node and npm, and the kit's pinned dev dependencies (typescript): `make js` installs them, `make test` runs it.
"""
import json
import re
import shutil
import subprocess
import tarfile

import pytest
import requests

from support import ROOT

KIT = ROOT / "clients" / "js"
TSC = KIT / "node_modules" / ".bin" / "tsc"
# A TypeScript app's ES module and CommonJS module, each using every part of the API, and a module with two
# mistakes (lines 3 and 4) that tsc must find. Only the ES2020 library (no DOM: it takes tsc seconds to read).
TYPES_CHECK = {
    "app.mts": """
import HiPush from "hipush-js";
import { HiPush as Named } from "hipush-js";
declare function log(...values: unknown[]): void;
const push: HiPush = new HiPush({server: "https://push.example.com", appKey: "k", transport: "auto", pollTimeout: 30,
  minDelay: 1000, maxDelay: 30000, notify: true, notificationTitle: "App", discover: false, deviceId: "d"});
push.on("message", (m: HiPush.Message) => log(m.id, m.msg_id, m.job_id, typeof m.content === "string" ? m.content.length : m.content.title, m.ts))
  .on("notification", (m, n: HiPush.Notification) => log(n.title, n.body, n.url, n.image, n.data, m.msg_type))
  .on("connected", (info) => log(info.clientId, info.node))
  .on("disconnected", (info) => log(info.reason))
  .on("error", (e: HiPush.Error) => log(e.type, e.status, e.code, e.reason, e.retryAfter, e.attempt))
  .connect();
push.on("message", (m) => push.clicked(m, (error) => log(error && error.reason)));
push.clicked(42);
const state: HiPush.State = push.state;
log(state, push.stats.received, push.stats.missed, push.clientId, push.token, push.node, Named.version);
log(push.disconnect() === push, push.options.pollTimeout);
push.requestNotificationPermission((permission) => log(permission === "granted"));
declare const Polyfill: HiPush.EventSourceConstructor;
const streaming = new HiPush({appKey: "k", transport: "sse", EventSource: Polyfill});
streaming.on("fallback", (f: HiPush.FallbackInfo) => log(f.from, f.to, f.reason));
log(streaming.transport === "sse", streaming.options.EventSource);
""",
    "app.cts": """
import HiPush = require("hipush-js");
const push = new HiPush({clientId: "c", token: "t", getToken: (id, done) => done(null, "t-" + id),
  transport: (url, params) => ({start: (done) => { Promise.resolve().then(() => done(200, {url, params})); },
                                abort: () => undefined})});
push.off("message").connect();
""",
    "wrong.mts": """
import HiPush from "hipush-js";
new HiPush({pollTimeout: "30"});
new HiPush().on("mesage", () => undefined);
""",
}
TSCONFIG = {"compilerOptions": {"module": "nodenext", "moduleResolution": "nodenext", "strict": True, "noEmit": True,
                                "target": "es2020", "lib": ["es2020"], "types": []},
            "files": list(TYPES_CHECK)}


def run(args, cwd, timeout=120) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def npm():
    found = shutil.which("npm")
    if not found or not shutil.which("node"):
        pytest.fail("node and npm are missing: `make js` installs them (Debian nodejs, npm)", pytrace=False)
    return found


@pytest.fixture(scope="module")
def tarball(npm, tmp_path_factory):
    """`npm pack` of the kit: (path, names of the files it holds)."""
    out = tmp_path_factory.mktemp("pack")
    packed = json.loads(run([npm, "pack", "--json", "--pack-destination", str(out)], KIT))[0]
    return out / packed["filename"], sorted(f["path"] for f in packed["files"])


def test_npm_test_passes(npm):
    output = run([npm, "test"], KIT)
    assert "# fail 0" in output and "# pass" in output, output


def test_packed_kit_installs_imports_and_type_checks(npm, tarball, tmp_path):
    path, files = tarball
    assert files == ["README.md", "hipush.js", "hipush.mjs", "index.d.mts", "index.d.ts", "package.json"]
    (tmp_path / "package.json").write_text(json.dumps({"name": "scratch", "version": "1.0.0", "private": True}))
    run([npm, "install", "--offline", "--no-audit", "--no-fund", str(path)], tmp_path)
    version = json.loads((KIT / "package.json").read_text())["version"]
    assert run(["node", "-e", "const H = require('hipush-js'); console.log(typeof H, H.version)"],
               tmp_path).split() == ["function", version]
    assert run(["node", "--input-type=module", "-e",
                "import H, {HiPush} from 'hipush-js'; console.log(typeof H, H === HiPush, H.version)"],
               tmp_path).split() == ["function", "true", version]

    if not TSC.exists():
        pytest.fail(f"{TSC} is missing: `make js` installs the kit's pinned dev dependencies", pytrace=False)
    for name, source in TYPES_CHECK.items():
        (tmp_path / name).write_text(source)
    (tmp_path / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    checked = subprocess.run([str(TSC), "-p", "."], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    errors = re.findall(r"^(\S+)\((\d+),\d+\): error", checked.stdout, flags=re.M)
    assert checked.returncode != 0 and sorted(errors) == [("wrong.mts", "3"), ("wrong.mts", "4")], checked.stdout


def test_served_sdk_is_the_packages_umd_file(server, tarball):
    served = requests.get(server.base + "/sdk/hipush.js", timeout=10)
    assert served.status_code == 200
    with tarfile.open(tarball[0]) as packed:
        in_package = packed.extractfile("package/hipush.js").read()
    assert served.content == in_package == (KIT / "hipush.js").read_bytes()
