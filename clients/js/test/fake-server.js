// A hipush server played by the test, through the SDK's custom transport option: every request waits until the
// test answers it, so a test walks the SDK through its protocol step by step, in one process, without a browser.
"use strict";
var assert = require("node:assert/strict");
var HiPush = require("../hipush.js");

var SERVER = "http://push.test";

function fakeServer() {
  var pending = [];
  var all = [];
  function transport(url, params, method) {
    var request = {
      path: new URL(url).pathname, params: params,
      method: method, aborted: false, answered: false, done: null,
      start: function (done) {
        request.done = done;
        pending.push(request);
        all.push(request);
      },
      abort: function () {
        if (request.answered) return;
        request.aborted = true;
        pending.splice(pending.indexOf(request), 1);
      },
      /** Answers 200 with {"ok": true, "result": result}. */
      ok: function (result) {
        request.reply(200, {ok: true, result: result});
      },
      /** Answers an error in SPEC's format. */
      error: function (status, code, retryAfter) {
        request.reply(status, {error: code, reason: "error " + code}, retryAfter);
      },
      reply: function (status, body, retryAfter) {
        assert.ok(!request.answered && !request.aborted, "answered twice, or after an abort: " + request.path);
        request.answered = true;
        pending.splice(pending.indexOf(request), 1);
        request.done(status, body, retryAfter);
      }
    };
    return request;
  }
  return {
    transport: transport,
    all: all,
    /** The oldest request not answered yet, which must be for `path`. */
    next: function (path) {
      assert.ok(pending.length, "no request waits; expected " + path);
      assert.equal(pending[0].path, path);
      return pending[0];
    },
    pending: function () {
      return pending.map(function (r) { return r.path; });
    }
  };
}

/** A HiPush on a fake server, in appKey mode without node discovery unless `options` say otherwise. The test's
 *  timers are mocked (t.mock.timers.tick moves them): a backoff takes no time, and no request timeout is left
 *  running when the test ends. */
function connected(t, options) {
  t.mock.timers.enable({apis: ["setTimeout", "Date"]});
  var server = fakeServer();
  var push = new HiPush(Object.assign({server: SERVER, appKey: "key", deviceId: "d1", discover: false,
    notify: false, transport: server.transport}, options));
  var events = [];
  ["message", "notification", "connected", "disconnected", "error"].forEach(function (name) {
    push.on(name, function (first) { events.push([name, first]); });
  });
  return {push: push, server: server, events: events};
}

/** An EventSource played by the test (the SDK's EventSource option): `streams` holds every one made, newest
 *  last; open(), send(id, message), missed(n) and error() fire its events as a browser would. */
function fakeEventSources() {
  var streams = [];
  function FakeEventSource(url) {
    var stream = this, listeners = {};
    var parsed = new URL(url);
    this.url = url;
    this.path = parsed.pathname;
    this.params = Object.fromEntries(parsed.searchParams);
    this.closed = false;
    this.addEventListener = function (name, fn) { listeners[name] = fn; };
    this.close = function () { stream.closed = true; };
    this.open = function () { stream.onopen({}); };
    this.send = function (message) { stream.onmessage({data: JSON.stringify(message), lastEventId: String(message.id)}); };
    this.missed = function (n) { listeners.missed({data: JSON.stringify({missed: n})}); };
    this.error = function () { stream.onerror({}); };
    streams.push(this);
  }
  return {EventSource: FakeEventSource, streams: streams,
    last: function () { return streams[streams.length - 1]; }};
}

/** A HiPush with transport "sse" on a fake server and fake EventSources: registered, with a token, its first
 *  stream open. Its other requests go to the fake server (a test seam: the request maker is replaced). */
function streaming(t, options) {
  var sources = fakeEventSources();
  var kit = connected(t, Object.assign({transport: "sse", EventSource: sources.EventSource}, options));
  kit.push._requestMaker = function () { return kit.server.transport; };
  kit.sources = sources;
  kit.push.connect();
  kit.server.next("/user/genId").ok({client_id: "c1"});
  kit.server.next("/user/token").ok({client_id: "c1", token: "t1", expires_in: 604800});
  if (kit.push.options.discover) kit.server.next("/service/hash").ok({ip: "10.0.0.1", port: 8080});
  sources.last().open();
  assert.equal(kit.push.state, "connected");
  return kit;
}

/** Walks a new HiPush through registration, token and the first poll: it is connected. */
function started(t, options) {
  var kit = connected(t, options);
  kit.push.connect();
  kit.server.next("/user/genId").ok({client_id: "c1"});
  kit.server.next("/user/token").ok({client_id: "c1", token: "t1", expires_in: 604800});
  kit.server.next("/comet/poll").ok({messages: []});
  assert.equal(kit.push.state, "connected");
  return kit;
}

function message(id, content, msgType) {
  return {id: id, msg_id: id + 100, job_id: 7, msg_type: msgType || 0, content: content || "m" + id, ts: 0};
}

module.exports = {HiPush: HiPush, SERVER: SERVER, fakeServer: fakeServer, connected: connected, started: started,
  streaming: streaming, message: message};
