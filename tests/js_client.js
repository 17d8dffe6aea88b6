// A HiPush of the JS kit (clients/js/hipush.js) in Node, for tests/test_conformance_js.py: it connects with the
// options given as JSON in argv[2] (Node has no XMLHttpRequest: the SDK uses fetch) and prints one JSON line per
// event and per request sent. Lines on stdin: "click ID" reports a click, "quit" ends it.
// Option dropFirstAck: the first poll carrying an ack goes without it, as if that acknowledgement were lost.
"use strict";
var readline = require("node:readline");
var HiPush = require("../clients/js/hipush.js");

var options = JSON.parse(process.argv[2]);
var start = Date.now();

function report(event, fields) {
  process.stdout.write(JSON.stringify(Object.assign({event: event, t: (Date.now() - start) / 1000}, fields)) + "\n");
}

var realFetch = globalThis.fetch, ackDropped = false;
globalThis.fetch = function (url, init) {
  var parsed = new URL(url);
  if (options.dropFirstAck && !ackDropped && parsed.pathname === "/comet/poll" && parsed.searchParams.has("ack")) {
    ackDropped = true;
    parsed.searchParams.delete("ack");
  }
  report("request", {path: parsed.pathname, ack: parsed.searchParams.get("ack")});
  return realFetch(parsed.toString(), init);
};

var push = new HiPush(options);
push.on("connected", function (info) { report("connected", {clientId: info.clientId, token: push.token}); });
push.on("disconnected", function (info) { report("disconnected", {reason: info.reason}); });
push.on("error", function (e) { report("error", {type: e.type, status: e.status, code: e.code, reason: e.reason}); });
push.on("message", function (m) { report("message", {message: m}); });
push.on("notification", function (m, n) {
  report("notification", {message: m, notification: {title: n.title, body: n.body, url: n.url, image: n.image,
    data: n.data}});
});
push.connect();

readline.createInterface({input: process.stdin}).on("line", function (line) {
  var words = line.split(" ");
  if (words[0] === "click") {
    push.clicked(Number(words[1]), function (error) { report("clicked", {id: Number(words[1]), error: error && error.reason}); });
  } else if (words[0] === "quit") {
    report("stats", {stats: push.stats, token: push.token});
    push.disconnect();
    process.exit(0);
  }
});
