// Writes hipush.mjs, the ES module of the package, from hipush.js (the one source, UMD): the UMD head
// `(function (root, factory) {...})(ROOT, function (root) {` becomes `var HiPush = (function (root) {`, and the
// last line `});` calls it with ROOT and exports HiPush. `npm test` and `npm pack` run it.
"use strict";
var fs = require("fs");
var path = require("path");

var HEAD = /^\(function \(root, factory\) \{\n[\s\S]*?\n\}\)\((.+), function \(root\) \{\n/m;
var TAIL = "\n});\n";

function esm(source) {
  var head = HEAD.exec(source);
  if (!head || source.slice(-TAIL.length) !== TAIL) throw new Error("hipush.js: the UMD head or tail has changed");
  var body = source.slice(head.index + head[0].length, source.length - TAIL.length);
  return source.slice(0, head.index) +
    "// The ES module build, made from hipush.js by build-esm.js: edit hipush.js, not this file.\n" +
    "var HiPush = (function (root) {\n" + body + "\n})(" + head[1] + ");\n\n" +
    "export default HiPush;\nexport { HiPush };\n";
}

if (require.main === module) {
  var source = fs.readFileSync(path.join(__dirname, "hipush.js"), "utf8");
  fs.writeFileSync(path.join(__dirname, "hipush.mjs"), esm(source));
}

module.exports = esm;
