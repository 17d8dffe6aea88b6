// push.clicked(message): one /user/click call with the delivery id, outside the connection's own request.
"use strict";
var test = require("node:test");
var assert = require("node:assert/strict");
var kit = require("./fake-server.js");

test("clicked() reports the delivery id with the client's token", function (t) {
  var c = kit.started(t);
  var answers = [];
  c.push.clicked(kit.message(42), function (error) { answers.push(error); });
  var click = c.server.next("/comet/poll") && c.server.all[c.server.all.length - 1];
  assert.equal(click.path, "/user/click");
  assert.deepEqual([click.params.client_id, click.params.token, click.params.id], ["c1", "t1", 42]);
  click.ok("OK");
  assert.deepEqual(answers, [null]);
  c.push.clicked(43);
  assert.equal(c.server.all[c.server.all.length - 1].params.id, 43);
  c.push.disconnect();  // aborts the parked poll, not the click
  assert.deepEqual(c.server.pending(), ["/user/click"]);
});

test("a refused click calls back with the error and is an error event of type click", function (t) {
  var c = kit.started(t);
  var answers = [];
  c.push.clicked(7, function (error) { answers.push(error && [error.type, error.status, error.code]); });
  c.server.all[c.server.all.length - 1].error(404, 1026);
  assert.deepEqual(answers, [["click", 404, 1026]]);
  assert.deepEqual(c.events.pop()[1].type, "click");
  c.push.disconnect();
});

test("clicked() before connecting fails: there is no token yet", function (t) {
  var c = kit.connected(t);
  var answers = [];
  c.push.clicked(1, function (error) { answers.push(error.reason); });
  t.mock.timers.tick(0);
  assert.equal(answers.length, 1);
  assert.deepEqual(c.server.pending(), []);
});
