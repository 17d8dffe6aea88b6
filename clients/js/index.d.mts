// Types of hipush-js as an ES module (hipush.mjs): the same HiPush as index.d.ts, as default and named export.
import HiPush = require("./index.js");

export default HiPush;
export { HiPush };
