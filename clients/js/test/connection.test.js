// The SDK's connection logic against a fake server: state machine, ack, dedupe, token refresh, backoff.
"use strict";
var test = require("node:test");
var assert = require("node:assert/strict");
var kit = require("./fake-server.js");

var message = kit.message;

test("connects: registers, fetches a token, polls at once, then long-polls", function (t) {
  var c = kit.connected(t, {pollTimeout: 25});
  var states = [c.push.state];
  c.push.connect();
  states.push(c.push.state);
  assert.deepEqual(c.server.next("/user/genId").params.device_id, "d1");
  c.server.next("/user/genId").ok({client_id: "c1"});
  assert.equal(c.server.next("/user/token").params.client_id, "c1");
  c.server.next("/user/token").ok({token: "t1"});
  var first = c.server.next("/comet/poll");
  assert.deepEqual([first.params.client_id, first.params.token, first.params.timeout], ["c1", "t1", 0]);
  first.ok({messages: []});
  states.push(c.push.state);
  assert.deepEqual(states, ["disconnected", "connecting", "connected"]);
  assert.deepEqual(c.events, [["connected", {clientId: "c1", node: kit.SERVER}]]);
  assert.equal(c.server.next("/comet/poll").params.timeout, 25);
  c.push.disconnect();
  assert.equal(c.push.state, "disconnected");
  assert.deepEqual(c.server.pending(), []);  // the parked poll was aborted
  assert.deepEqual(c.events[1], ["disconnected", {reason: "disconnect() called"}]);
});

test("connect() without appKey, or clientId and token, throws", function () {
  assert.throws(function () { new kit.HiPush({server: kit.SERVER}).connect(); }, /give appKey/);
});

test("acknowledges with the next poll once the handlers returned, until the server confirms", function (t) {
  var c = kit.started(t);
  var handled = [];
  c.push.on("message", function (m) { handled.push(m.id); });
  c.server.next("/comet/poll").ok({messages: [message(5), message(6)]});
  assert.deepEqual(handled, [5, 6]);
  var acking = c.server.next("/comet/poll");
  assert.equal(acking.params.ack, 6);
  acking.ok({messages: []});
  t.mock.timers.tick(c.push.options.maxDelay);  // a poll answered empty at once waits a little before the next
  assert.equal(c.server.next("/comet/poll").params.ack, undefined);  // confirmed: not sent again
  c.push.disconnect();
});

test("an ack whose poll failed is sent again", function (t) {
  var c = kit.started(t, {minDelay: 100});
  c.server.next("/comet/poll").ok({messages: [message(9)]});
  c.server.next("/comet/poll").error(503, 1031);
  t.mock.timers.tick(100);
  assert.equal(c.server.next("/comet/poll").params.ack, 9);
  c.push.disconnect();
});

test("a message that comes again is dropped, counted and acknowledged again", function (t) {
  var c = kit.started(t);
  c.server.next("/comet/poll").ok({messages: [message(1), message(2)]});
  c.server.next("/comet/poll").ok({messages: [message(2), message(3)]});
  var received = c.events.filter(function (e) { return e[0] === "message"; }).map(function (e) { return e[1].id; });
  assert.deepEqual(received, [1, 2, 3]);
  assert.equal(c.push.stats.received, 3);
  assert.equal(c.push.stats.duplicates, 1);
  assert.equal(c.server.next("/comet/poll").params.ack, 3);
});

test("a notification is parsed; a throwing handler is an error event and the message still counts", function (t) {
  var c = kit.started(t, {notificationTitle: "App"});
  var notes = [];
  c.push.on("notification", function (m, n) { notes.push(n); throw new Error("boom"); });
  c.server.next("/comet/poll").ok({messages: [message(4, '{"title": "Sale", "body": "50%", "url": "https://x/"}', 1),
    message(5, "plain", 1)]});
  assert.deepEqual(notes.map(function (n) { return [n.title, n.body, n.url]; }),
    [["Sale", "50%", "https://x/"], ["App", "plain", null]]);
  var errors = c.events.filter(function (e) { return e[0] === "error"; });
  assert.deepEqual(errors.map(function (e) { return [e[1].type, e[1].reason]; }), [["handler", "boom"], ["handler", "boom"]]);
  assert.equal(c.server.next("/comet/poll").params.ack, 5);
});

test("a 401 fetches a new token (appKey mode) and polls with it", function (t) {
  t.mock.method(Math, "random", function () { return 0; });
  var c = kit.started(t, {minDelay: 200});
  c.server.next("/comet/poll").error(401, 1028);
  assert.equal(c.push.state, "reconnecting");
  assert.deepEqual(c.events.slice(1).map(function (e) { return [e[0], e[1].type || e[1].reason]; }),
    [["disconnected", "error 1028"], ["error", "poll"]]);
  t.mock.timers.tick(100);  // the first backoff: between 100 and 200 ms, here 100
  c.server.next("/user/token").ok({token: "t2"});
  var poll = c.server.next("/comet/poll");
  assert.equal(poll.params.token, "t2");
  poll.ok({messages: []});
  assert.equal(c.push.state, "connected");
  assert.equal(c.push.stats.reconnects, 1);
  c.push.disconnect();
});

test("signed-token mode asks getToken for a new token after a 401", function (t) {
  var asked = [];
  var c = kit.connected(t, {appKey: null, clientId: "c9", token: "old", minDelay: 10,
    getToken: function (clientId, callback) { asked.push(clientId); callback(null, "fresh"); }});
  c.push.connect();
  c.server.next("/comet/poll").error(401, 1028);
  t.mock.timers.tick(10);
  assert.deepEqual(asked, ["c9"]);
  assert.equal(c.server.next("/comet/poll").params.token, "fresh");
  c.push.disconnect();
});

test("failures back off exponentially with jitter, up to maxDelay, never sooner than Retry-After", function (t) {
  var push = new kit.HiPush({server: kit.SERVER, appKey: "k", minDelay: 1000, maxDelay: 8000});
  t.mock.method(Math, "random", function () { return 0; });
  assert.deepEqual([1, 2, 3, 4, 5, 30].map(function (n) { return push._delay(n); }), [500, 1000, 2000, 4000, 4000, 4000]);
  assert.equal(push._delay(1, 3), 3000);
  t.mock.method(Math, "random", function () { return 0.999999; });
  assert.deepEqual([1, 2, 4, 30].map(function (n) { return push._delay(n); }), [1000, 2000, 8000, 8000]);
  assert.equal(push._delay(1, 3), 4500);  // Retry-After jittered up to half again
});

test("while the server is down the SDK waits the backoff before each retry, then resumes", function (t) {
  t.mock.method(Math, "random", function () { return 0; });
  var c = kit.started(t, {minDelay: 1000, maxDelay: 4000});
  c.server.next("/comet/poll").error(0, undefined);
  // [wait before the retry, what it asks]: no answer three times in a row may be a 401 the browser hides
  // (JSONP, cross-origin), so the third failure fetches a new token
  var retries = [[500, "/comet/poll"], [1000, "/comet/poll"], [2000, "/user/token"], [2000, "/user/token"]];
  retries.forEach(function (retry, i) {
    t.mock.timers.tick(retry[0] - 1);
    assert.deepEqual(c.server.pending(), [], "retried before " + retry[0] + " ms");
    t.mock.timers.tick(1);
    var request = c.server.next(retry[1]);
    if (i < retries.length - 1) request.error(0, undefined);
    else request.ok({token: "t2"});
  });
  assert.equal(c.push.stats.failures, 4);
  c.server.next("/comet/poll").ok({messages: [kit.message(1)]});
  assert.equal(c.push.state, "connected");
  assert.equal(c.server.next("/comet/poll").params.ack, 1);
  c.push.disconnect();
});

test("a stopping node's 503 with Retry-After is waited out", function (t) {
  t.mock.method(Math, "random", function () { return 0; });
  var c = kit.started(t, {minDelay: 100});
  c.server.next("/comet/poll").error(503, 1031, 2);
  t.mock.timers.tick(1999);
  assert.deepEqual(c.server.pending(), []);
  t.mock.timers.tick(1);
  c.server.next("/comet/poll");
  c.push.disconnect();
});

test("node discovery: /service/hash names the node to poll", function (t) {
  var c = kit.connected(t, {discover: true});
  c.push.connect();
  c.server.next("/user/genId").ok({client_id: "c1"});
  c.server.next("/user/token").ok({token: "t1"});
  c.server.next("/service/hash").ok({ip: "push.test", port: 80});
  assert.equal(c.push.node, "http://push.test:80");
  c.push.disconnect();
});
