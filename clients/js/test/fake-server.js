// A hipush server played by the test, through the SDK's custom transport option: every request waits until the
// test answers it, so a test walks the SDK through its protocol step by step, in one process, without a browser.
"use strict";
var assert = require("node:assert/strict");
var HiPush = require("../hipush.js");

var SERVER = "http://push.test";

function fakeServer() {
  var pending = [];
  var all = [];
  function transport(url, params) {
    var request = {
      path: url.slice(SERVER.length), params: params, aborted: false, answered: false, done: null,
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
  t.mock.timers.enable({apis: ["setTimeout"]});
  var server = fakeServer();
  var push = new HiPush(Object.assign({server: SERVER, appKey: "key", deviceId: "d1", discover: false,
    notify: false, transport: server.transport}, options));
  var events = [];
  ["message", "notification", "connected", "disconnected", "error"].forEach(function (name) {
    push.on(name, function (first) { events.push([name, first]); });
  });
  return {push: push, server: server, events: events};
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
  message: message};
