// A HiPush of the JS kit (clients/js/hipush.js) in Node, for tests/test_conformance_js.py: it connects with the
// options given as JSON in argv[2] (Node has no XMLHttpRequest: the SDK uses fetch) and prints one JSON line per
// event and per request sent. Lines on stdin: "click ID" reports a click, "quit" ends it.
// Option dropFirstAck: the first poll carrying an ack goes without it, as if that acknowledgement were lost; over
// SSE the first POST /comet/ack is lost with the stream (cut), and so are acks until a new stream is asked for.
// Option transport "sse": Node 20 has no EventSource, so this harness (only) brings a small one made of fetch
// streaming (FetchEventSource below).
"use strict";
var readline = require("node:readline");
var HiPush = require("../clients/js/hipush.js");

var options = JSON.parse(process.argv[2]);
var start = Date.now();

function report(event, fields) {
  process.stdout.write(JSON.stringify(Object.assign({event: event, t: (Date.now() - start) / 1000}, fields)) + "\n");
}

var realFetch = globalThis.fetch, ackDropped = false, droppingAcks = false, openStream = null;
globalThis.fetch = function (url, init) {
  var parsed = new URL(url);
  var params = init && init.method === "POST" ? new URLSearchParams(init.body) : parsed.searchParams;
  if (options.dropFirstAck && !ackDropped && parsed.pathname === "/comet/poll" && parsed.searchParams.has("ack")) {
    ackDropped = true;
    parsed.searchParams.delete("ack");
  }
  report("request", {path: parsed.pathname, ack: params.get("ack")});
  if (parsed.pathname === "/comet/stream") droppingAcks = false;
  if (options.dropFirstAck && parsed.pathname === "/comet/ack" && (!ackDropped || droppingAcks)) {
    ackDropped = droppingAcks = true;
    if (openStream) openStream.cut();
    return Promise.reject(new TypeError("the acknowledgement was lost"));
  }
  return realFetch(parsed.toString(), init);
};

/** Enough of EventSource for the SDK: onopen, onmessage, addEventListener, onerror, close(); no reconnection. */
function FetchEventSource(url) {
  var self = this, listeners = {}, controller = new AbortController(), closed = false;
  function fire(handler, event) {
    if (!closed && handler) handler.call(self, event);
  }
  this.addEventListener = function (name, fn) { listeners[name] = fn; };
  this.close = function () {
    closed = true;
    controller.abort();
  };
  this.cut = function () {  // the connection breaks
    controller.abort();
    fire(self.onerror, {});
  };
  openStream = this;
  globalThis.fetch(url, {signal: controller.signal, headers: {Accept: "text/event-stream"}}).then(async function (response) {
    if (response.status !== 200) {
      response.body.cancel();
      return fire(self.onerror, {});
    }
    fire(self.onopen, {});
    var decoder = new TextDecoder(), buffer = "";
    for await (var chunk of response.body) {
      buffer += decoder.decode(chunk, {stream: true}).replace(/\r\n?/g, "\n");
      var end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        var block = buffer.slice(0, end), name = "message", data = [], id = "";
        buffer = buffer.slice(end + 2);
        block.split("\n").forEach(function (line) {
          var colon = line.indexOf(":"), field = colon < 0 ? line : line.slice(0, colon);
          var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") name = value;
          else if (field === "data") data.push(value);
          else if (field === "id") id = value;
        });
        if (data.length) fire(name === "message" ? self.onmessage : listeners[name], {data: data.join("\n"), lastEventId: id});
      }
    }
    fire(self.onerror, {});  // the server ended it
  }).catch(function () { fire(self.onerror, {}); });
}
if (options.transport === "sse") options.EventSource = FetchEventSource;

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
