// The package's two builds: the UMD file (require) and the ES module build-esm.js makes from it.
"use strict";
var test = require("node:test");
var assert = require("node:assert/strict");
var fs = require("node:fs");
var path = require("node:path");
var esm = require("../build-esm.js");

test("require() gives HiPush without making a global", function () {
  var HiPush = require("../hipush.js");
  assert.equal(typeof HiPush, "function");
  assert.equal(HiPush.version, require("../package.json").version);
  assert.equal(globalThis.HiPush, undefined);
});

test("the ES module is the same SDK, as default and named export", async function () {
  var built = esm(fs.readFileSync(path.join(__dirname, "..", "hipush.js"), "utf8"));
  assert.equal(fs.readFileSync(path.join(__dirname, "..", "hipush.mjs"), "utf8"), built);  // pretest made it
  var module = await import("../hipush.mjs");
  assert.equal(module.default, module.HiPush);
  assert.equal(module.default.version, require("../hipush.js").version);
  assert.deepEqual(Object.getOwnPropertyNames(module.default.prototype), Object.getOwnPropertyNames(require("../hipush.js").prototype));
});

test("build-esm refuses a source whose UMD wrapper changed", function () {
  assert.throws(function () { esm("(function (root) {\n})(this);\n"); }, /UMD head or tail/);
});
