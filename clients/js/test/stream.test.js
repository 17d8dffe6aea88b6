// The SDK over the SSE stream against a fake server and a fake EventSource: batched acks (mock timers), dedupe
// across a reconnection, the probe poll after a stream that did not open (token, Retry-After, fallback).
"use strict";
var test = require("node:test");
var assert = require("node:assert/strict");
var kit = require("./fake-server.js");

var message = kit.message;

test("streams to the node with the client's token; messages, missed and state as over the poll", function (t) {
  var c = kit.streaming(t);
  var stream = c.sources.last();
  assert.equal(stream.path, "/comet/stream");
  assert.deepEqual([stream.params.client_id, stream.params.token], ["c1", "t1"]);
  assert.equal(c.push.transport, "sse");
  stream.send(message(1));
  stream.missed(3);
  assert.deepEqual(c.events.map(function (e) { return e[0]; }), ["connected", "message"]);
  assert.deepEqual([c.push.stats.received, c.push.stats.missed], [1, 3]);
  assert.deepEqual(c.server.pending(), []);  // no poll beside the stream
  c.push.disconnect();
  assert.ok(stream.closed);
});

test("acknowledges in batches: a second after the first unacknowledged message, at once at 100", function (t) {
  var c = kit.streaming(t);
  var stream = c.sources.last();
  stream.send(message(1));
  stream.send(message(2));
  t.mock.timers.tick(999);
  assert.deepEqual(c.server.pending(), []);
  t.mock.timers.tick(1);
  var ack = c.server.next("/comet/ack");
  assert.deepEqual([ack.method, ack.params.client_id, ack.params.token, ack.params.ack], ["POST", "c1", "t1", 2]);
  ack.ok("OK");
  for (var id = 3; id < 102; id++) stream.send(message(id));
  assert.deepEqual(c.server.pending(), []);  // 99 since the last ack
  stream.send(message(102));
  assert.equal(c.server.next("/comet/ack").params.ack, 102);  // the 100th: at once, no timer
  c.server.next("/comet/ack").ok("OK");
  t.mock.timers.tick(5000);
  assert.deepEqual(c.server.pending(), []);  // nothing left to acknowledge
  c.push.disconnect();
});

test("one ack at a time: what is processed meanwhile goes a second after its answer", function (t) {
  var c = kit.streaming(t);
  var stream = c.sources.last();
  stream.send(message(1));
  t.mock.timers.tick(1000);
  var first = c.server.next("/comet/ack");
  stream.send(message(2));
  t.mock.timers.tick(1000);
  assert.deepEqual(c.server.pending(), ["/comet/ack"]);  // still the first
  first.ok("OK");
  assert.deepEqual(c.server.pending(), []);
  t.mock.timers.tick(1000);
  assert.equal(c.server.next("/comet/ack").params.ack, 2);
  c.push.disconnect();
});

test("acknowledges after the handlers returned, and on disconnect()", function (t) {
  var c = kit.streaming(t);
  var pendingWhileHandled = null;
  c.push.on("message", function () { pendingWhileHandled = c.server.pending().length; });
  var stream = c.sources.last();
  for (var id = 1; id <= 100; id++) stream.send(message(id));
  assert.equal(pendingWhileHandled, 0);  // the 100th message's handler ran before its ack went
  c.server.next("/comet/ack").ok("OK");
  stream.send(message(101));
  c.push.disconnect();
  var last = c.server.next("/comet/ack");
  assert.equal(last.params.ack, 101);
  last.ok("OK");  // not aborted by the disconnection
});

test("a stream that ended at once is opened again after a backoff", function (t) {
  var c = kit.streaming(t, {minDelay: 100});
  c.sources.last().error();  // a proxy that closes it after the headers
  assert.equal(c.sources.streams.length, 1);
  t.mock.timers.tick(100);
  assert.equal(c.sources.streams.length, 2);
  c.push.disconnect();
});

test("a stream that ends reconnects at once, acknowledging first; what it hands out again is dropped", function (t) {
  var c = kit.streaming(t, {minDelay: 10});
  var first = c.sources.last();
  first.send(message(1));
  first.send(message(2));
  t.mock.timers.tick(20);
  first.error();  // its max age: the server ended it
  assert.ok(first.closed);
  var ack = c.server.next("/comet/ack");
  assert.equal(ack.params.ack, 2);
  assert.equal(c.sources.streams.length, 1);  // the next stream waits for the ack
  ack.error(0);  // lost: the new stream hands both out again
  var second = c.sources.last();
  assert.notEqual(second, first);
  second.open();
  second.send(message(1));
  second.send(message(2));
  second.send(message(3));
  assert.deepEqual(c.events.filter(function (e) { return e[0] === "message"; }).map(function (e) { return e[1].id; }),
    [1, 2, 3]);
  assert.deepEqual([c.push.stats.duplicates, c.push.stats.reconnects, c.push.state], [2, 0, "connected"]);
  t.mock.timers.tick(1000);
  assert.equal(c.server.next("/comet/ack").params.ack, 3);
  c.push.disconnect();
});

test("a stream that did not open is followed by a zero-timeout poll: a 401 fetches a new token", function (t) {
  var c = kit.streaming(t, {minDelay: 100});
  t.mock.timers.tick(60000);
  c.sources.last().error();  // revoked: the stream ends
  c.sources.last().error();  // and the next one is refused (EventSource shows no status)
  var probe = c.server.next("/comet/poll");
  assert.deepEqual([probe.params.timeout, probe.params.token], [0, "t1"]);
  probe.error(401, 1028);
  assert.equal(c.push.state, "reconnecting");
  t.mock.timers.tick(100);
  c.server.next("/user/token").ok({token: "t2"});
  var stream = c.sources.last();
  assert.equal(stream.params.token, "t2");
  stream.open();
  assert.equal(c.push.state, "connected");
  assert.equal(c.push.transport, "sse");
  c.push.disconnect();
});

test("a stopping node's 503 waits its Retry-After and finds the node again", function (t) {
  var c = kit.streaming(t, {minDelay: 100, discover: true});
  var streams = c.sources.streams.length;
  t.mock.timers.tick(60000);
  c.sources.last().error();  // the node is stopping: its streams end
  assert.ok(c.sources.last().url.indexOf("http://10.0.0.1:8080/comet/stream?") === 0);
  c.sources.last().error();  // and a new one is refused
  c.server.next("/comet/poll").error(503, 1031, 2);
  t.mock.timers.tick(1999);
  assert.deepEqual(c.server.pending(), []);
  t.mock.timers.tick(1001);
  c.server.next("/service/hash").ok({ip: "10.0.0.3", port: 8080});
  assert.equal(c.sources.streams.length, streams + 2);
  assert.ok(c.sources.last().url.indexOf("http://10.0.0.3:8080/comet/stream?") === 0);
  c.push.disconnect();
});

test("auto falls back to the poll when streams do not open but polls answer", function (t) {
  var c = kit.streaming(t, {transport: "auto", minDelay: 100});
  var fallbacks = [];
  c.push.on("fallback", function (f) { fallbacks.push(f); });
  t.mock.timers.tick(60000);
  c.sources.last().error();
  c.sources.last().error();  // an old proxy: the stream does not open
  c.server.next("/comet/poll").ok({messages: [message(4)]});  // the probe hands out what waits
  t.mock.timers.tick(100);
  c.server.next("/comet/ack").ok("OK");  // acknowledged before the next stream
  c.sources.last().error();
  c.server.next("/comet/poll").ok({messages: []});
  assert.deepEqual(fallbacks, [{from: "sse", to: "poll", reason: "the event stream did not open, a poll did"}]);
  assert.equal(c.push.transport, "poll");
  var poll = c.server.next("/comet/poll");
  assert.equal(poll.params.timeout, 30);  // long polls from now on
  assert.equal(c.push.state, "connected");
  c.push.disconnect();
});

test("transport sse keeps to the stream; auto without EventSource polls", function (t) {
  var c = kit.streaming(t, {minDelay: 100});
  t.mock.timers.tick(60000);
  c.sources.last().error();
  for (var n = 0; n < 3; n++) {
    c.sources.last().error();
    c.server.next("/comet/poll").ok({messages: []});
    t.mock.timers.tick(1000);
  }
  assert.equal(c.push.transport, "sse");
  assert.equal(c.sources.streams.length, 5);
  c.push.disconnect();
  var polling = new kit.HiPush({server: kit.SERVER, clientId: "c1", token: "t1", transport: function () {
    return {start: function () {}, abort: function () {}};
  }});
  assert.equal(polling.connect().transport, "poll");
  polling.disconnect();
  assert.throws(function () { new kit.HiPush({server: kit.SERVER, clientId: "c", token: "t", transport: "sse"}).connect(); },
    /needs EventSource/);
});
