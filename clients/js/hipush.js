/*!
 * hipush browser SDK — receives pushes from a hipush server over an SSE stream or HTTP long-poll.
 *
 * One file, no dependencies, ES5 (runs in old X5/WebViews). The npm package hipush-js (clients/js in the hipush
 * repository) ships it as UMD (this file: <script>, require()) and as an ES module (hipush.mjs, made from this
 * file by build-esm.js); hipush serves this file at /sdk/hipush.js. Types: index.d.ts.
 *
 *   var push = new HiPush({server: "https://push.example.com", appKey: "APP_KEY"});
 *   push.on("message", function (m) { console.log(m.id, m.content); });            // msg_type 0
 *   push.on("notification", function (m, n) { console.log(n.title, n.body); });    // msg_type 1
 *   push.on("connected", function () {}); push.on("disconnected", function () {});
 *   push.on("fallback", function (f) { console.log(f.from, "->", f.to, f.reason); });
 *   push.on("error", function (e) { console.log(e.type, e.status, e.reason); });
 *   push.connect();                          // push.disconnect() stops it
 *   push.clicked(message);                   // the user opened it (a shown notification reports its own clicks)
 *
 * Options:
 *   server          base URL of a hipush web node (default: this page's origin)
 *   appKey          the app's key: the SDK registers the device (/user/genId) and fetches tokens itself
 *   deviceId        this device's id (default: generated once and kept in localStorage)
 *   clientId, token signed-token mode: ids handed out by the app's backend (no appKey needed);
 *                   getToken(clientId, callback(error, token)) may fetch a fresh token on 401
 *   transport       "auto": the SSE stream where EventSource exists, else the long poll over XMLHttpRequest
 *                   with CORS, JSONP where that is missing, fetch() where there is no XMLHttpRequest (Node 18+,
 *                   workers); a stream that does not open while a poll works (an old proxy) falls back to the
 *                   poll for this connection ("fallback" event, push.transport). "sse" (the stream only),
 *                   "xhr", "jsonp", "fetch" (long poll), or a function(url, params) returning
 *                   {start(done), abort()} for a platform without XHR (e.g. a mini program's own request
 *                   API); start calls done(status, body, retryAfter) once, later (never from inside start),
 *                   body being the answer's parsed JSON
 *   EventSource     the EventSource constructor to use (default the global one; e.g. a polyfill)
 *   discover        ask /service/hash which comet node to poll (default true); false polls `server`
 *   pollTimeout     seconds a poll may park on the server (default 30, at most 60)
 *   minDelay, maxDelay   reconnect backoff in ms (default 1000 and 30000, jittered; never sooner than
 *                   an answer's Retry-After, e.g. the 503 of a stopping node)
 *   notify          show notifications with the browser Notification API when permitted (default true)
 *   notificationTitle    title of a notification whose content has none (default document.title)
 *
 * Delivery is at least once: every message is acknowledged after the handlers returned (with the next
 * poll; over SSE by POST /comet/ack, batched: within a second, at once every 100 messages, and when the
 * stream ends, on disconnect() and on page unload), and a message that comes again (same `id`) is dropped.
 * push.transport is what receives: "sse" or "poll".
 * push.state is "disconnected", "connecting", "connected" or "reconnecting" (until a poll answers 200 or a
 * stream opens; it stays "connected" while an ended stream is replaced);
 * push.stats counts received, duplicates, reconnects, failures and missed messages.
 */
(function (root, factory) {
  // UMD: CommonJS (node, bundlers) gets module.exports, a <script> tag the global HiPush.
  // build-esm.js makes hipush.mjs, the ES module, by replacing these lines and the last one.
  if (typeof module === "object" && module.exports) module.exports = factory(root);
  else root.HiPush = factory(root);
})(typeof window !== "undefined" ? window : typeof globalThis !== "undefined" ? globalThis : this, function (root) {
  "use strict";

  var EVENTS = ["message", "notification", "connected", "disconnected", "error", "fallback"];
  var RECENT_IDS = 1000;        // how many message ids are remembered to drop redeliveries
  var FAILURES_BEFORE_NEW_TOKEN = 3;
  var REQUEST_MARGIN = 15000;   // ms a request may take beyond its poll timeout
  var ACK_EVERY = 100;          // over SSE: messages processed that are acknowledged at once
  var ACK_INTERVAL = 1000;      // over SSE: ms a processed message waits at most for its acknowledgement
  var STREAM_FAILURES_BEFORE_POLL = 2;  // "auto": streams in a row that did not open while a poll did
  var jsonpCount = 0;
  var noop = function () {};

  function HiPush(options) {
    options = options || {};
    this.options = {
      server: trimSlash(options.server || pageOrigin()),
      appKey: options.appKey || null,
      transport: options.transport || "auto",
      discover: options.discover !== false,
      pollTimeout: options.pollTimeout == null ? 30 : options.pollTimeout,
      minDelay: options.minDelay || 1000,
      maxDelay: options.maxDelay || 30000,
      notify: options.notify !== false,
      notificationTitle: options.notificationTitle || null,
      getToken: options.getToken || null,
      EventSource: options.EventSource || null
    };
    this.clientId = options.clientId || null;
    this.token = options.token || null;
    this.deviceId = options.deviceId || (this.options.appKey ? storedDeviceId(this.options.appKey) : null);
    this.node = null;             // base URL of the comet node being polled
    this.transport = null;        // "sse" or "poll" once connect() chose
    this.state = "disconnected";
    this.stats = {received: 0, duplicates: 0, reconnects: 0, failures: 0, missed: 0};
    this._handlers = {};
    this._session = 0;            // bumped by connect() and disconnect(): stale callbacks see a newer one
    this._request = null;         // the request under way (to abort it)
    this._timer = null;           // the scheduled next step
    this._failures = 0;           // failures in a row
    this._earlyEmpty = 0;         // long polls in a row answered empty long before their timeout
    this._badNode = null;         // the node whose poll failed last: discovery avoids it once
    this._ack = null;             // id of the last processed message
    this._ackPending = false;     // the server has not yet confirmed that ack
    this._seen = {};
    this._seenOrder = [];
    this._wasConnected = false;
    this._stream = null;          // the open EventSource
    this._streamOpenedAt = 0;     // when the last stream opened (0: it did not)
    this._streamFailures = 0;     // streams in a row that did not open though a poll answered
    this._ackTimer = null;        // sends the batched acknowledgement
    this._ackSending = false;     // a POST /comet/ack is under way
    this._unacked = 0;            // messages processed since the last POST /comet/ack
    this._onPageHide = null;
  }

  HiPush.version = "1.0.0";

  HiPush.prototype.on = function (event, fn) {
    if (indexOf(EVENTS, event) < 0) throw new Error("hipush: unknown event " + event);
    (this._handlers[event] = this._handlers[event] || []).push(fn);
    return this;
  };

  HiPush.prototype.off = function (event, fn) {
    var list = this._handlers[event] || [];
    for (var i = list.length - 1; i >= 0; i--) if (list[i] === fn || !fn) list.splice(i, 1);
    return this;
  };

  HiPush.prototype.connect = function () {
    if (this.state !== "disconnected") return this;
    if (!this.options.appKey && !(this.clientId && (this.token || this.options.getToken))) {
      throw new Error("hipush: give appKey, or clientId and token");
    }
    if (this.options.transport === "sse" && !this._eventSource()) {
      throw new Error("hipush: transport \"sse\" needs EventSource (give the EventSource option)");
    }
    this._session++;
    this._failures = 0;
    this._earlyEmpty = 0;
    this._wasConnected = false;
    this._streamFailures = 0;
    this.transport = this._eventSource() ? "sse" : "poll";
    if (this.transport === "sse") this._watchPageHide();
    this._setState("connecting");
    this._step(this._session);
    return this;
  };

  HiPush.prototype.disconnect = function () {
    if (this.state === "disconnected") return this;
    var wasConnected = this.state === "connected";
    this._session++;
    this._stop();
    this._flushAck(true);
    this._unwatchPageHide();
    this._setState("disconnected");
    if (wasConnected) this._emit("disconnected", {reason: "disconnect() called"});
    return this;
  };

  /** Asks the user to allow notifications; callback(permission). Call it from a click handler. */
  HiPush.prototype.requestNotificationPermission = function (callback) {
    var answered = false;
    function once(permission) {
      if (!answered && callback) callback(permission);
      answered = true;
    }
    if (typeof root.Notification === "undefined") return once("unsupported");
    var answer = root.Notification.requestPermission(once);  // old browsers call back, new ones return a Promise
    if (answer && typeof answer.then === "function") answer.then(once);
  };

  /** Reports that the user opened a message (/user/click; `message` or its id). The server counts it once per
   *  message and client, so reporting it again is harmless. callback(error or null) is optional; a failure is
   *  also an "error" event of type "click". A notification the SDK shows reports its clicks itself. */
  HiPush.prototype.clicked = function (message, callback) {
    var self = this, id = message !== null && typeof message === "object" ? message.id : message;
    function done(error) {
      if (error) {
        error.type = "click";
        self._emit("error", error);
      }
      if (callback) callback(error || null);
    }
    if (!this.clientId || !this.token) {
      setTimeout(function () { done({status: 0, reason: "no client id and token yet: connect first"}); }, 0);
      return this;
    }
    this._fetch(this.options.server, "/user/click", {client_id: this.clientId, token: this.token, id: id}, 0, done);
    return this;
  };

  // ---- the connection: register, token, find the node, poll --------------------------------

  HiPush.prototype._step = function (session) {
    var self = this;
    if (session !== this._session) return;
    if (!this.clientId) return this._call(this.options.server, "/user/genId",
      {device_id: this.deviceId, app_key: this.options.appKey}, "register", function (result) {
        self.clientId = result.client_id;
        self._step(session);
      });
    if (!this.token) return this._fetchToken(session);
    if (!this.node) return this._discover(session);
    if (this.transport === "sse") return this._openStream(session);
    this._poll(session);
  };

  HiPush.prototype._fetchToken = function (session) {
    var self = this;
    if (this.options.appKey) {
      return this._call(this.options.server, "/user/token", {client_id: this.clientId}, "token", function (result) {
        self.token = result.token;
        self._step(session);
      });
    }
    var answered = false;
    function got(error, token) {
      if (answered || session !== self._session) return;
      answered = true;
      if (error || !token) return self._fail(session, {type: "token", status: 0, reason: String(error || "no token")});
      self.token = token;
      self._step(session);
    }
    try {
      this.options.getToken(this.clientId, got);
    } catch (e) {
      got(e && e.message || e);
    }
  };

  /** /service/hash, else /service/random, else the configured server itself. */
  HiPush.prototype._discover = function (session) {
    var self = this, server = this.options.server;
    function use(node) {
      self.node = node;
      self._step(session);
    }
    if (!this.options.discover) return use(server);
    this._send(server, "/service/hash", {client_id: this.clientId}, 0, function (error, result) {
      if (session !== self._session) return;
      var node = !error && self._nodeUrl(result);
      // the node whose poll just failed is skipped once, unless it is the server that just answered
      if (node && (node !== self._badNode || node === server)) return use(node);
      if (error && error.status === 0) return use(server); // the server is unreachable: poll it, fail, back off
      self._send(server, "/service/random", {}, 0, function (error2, result2) {
        if (session !== self._session) return;
        var other = !error2 && self._nodeUrl(result2);
        use(other && other !== self._badNode ? other : server);
      });
    });
  };

  HiPush.prototype._nodeUrl = function (address) {
    if (!address || !address.port) return null;
    var ip = address.ip, server = this.options.server;
    if (!ip || ip === "0.0.0.0" || ip === "::") return null;
    if (ip.indexOf(":") >= 0) ip = "[" + ip + "]";
    var protocol = server.indexOf("https:") === 0 ? "https://" : "http://";
    var node = protocol + ip + ":" + address.port;
    return node === server.replace(/^(https?:\/\/[^\/]+).*$/, "$1") ? server : node;
  };

  HiPush.prototype._poll = function (session) {
    var self = this;
    // the first poll of a (re)connection answers at once: it proves the connection and hands out what waits;
    // so does the probe after a stream that did not open
    var timeout = this.state === "connected" && this.transport === "poll" ? this.options.pollTimeout : 0;
    var params = {client_id: this.clientId, token: this.token, timeout: timeout};
    var ack = this._ackPending ? this._ack : null;
    if (ack !== null) params.ack = ack;
    var started = now();
    this._send(this.node, "/comet/poll", params, timeout * 1000, function (error, result) {
      if (session !== self._session) return;
      if (error) return self._fail(session, error, true);
      if (ack !== null && ack === self._ack) self._ackPending = false;
      if (!self._reached(session)) return;
      if (result.missed) self.stats.missed += result.missed;
      var messages = result.messages || [];
      for (var i = 0; i < messages.length && session === self._session; i++) self._dispatch(messages[i]);
      if (session !== self._session) return;
      if (self.transport === "sse") return self._afterProbe(session);
      // a long poll answered empty long before its timeout was replaced by a newer poll of the same
      // client (another tab?) or its server is stopping: wait a little rather than take turns at full speed
      var early = !messages.length && timeout > 0 && now() - started < timeout * 500;
      self._earlyEmpty = early ? self._earlyEmpty + 1 : 0;
      self._schedule(session, early ? self._delay(self._earlyEmpty) : 0);
    });
  };

  /** A poll answered or a stream opened: the node works. False when a handler of "connected" ended the session. */
  HiPush.prototype._reached = function (session) {
    this._failures = 0;
    this._badNode = null;
    if (this.state !== "connected") {
      if (this._wasConnected) this.stats.reconnects++;
      this._wasConnected = true;
      this._setState("connected");
      this._emit("connected", {clientId: this.clientId, node: this.node});
    }
    return session === this._session;
  };

  // ---- the SSE stream ----------------------------------------------------------------------------
  // EventSource shows no HTTP status: a stream that fails to open is followed by a zero-timeout poll (the probe),
  // whose answer says why. A 401 fetches a new token, a 503 waits its Retry-After, no answer backs off and
  // finds the node again, all as for a poll; a 200 means the stream itself cannot pass ("auto" then polls).

  HiPush.prototype._eventSource = function () {
    var transport = this.options.transport;
    if (transport !== "auto" && transport !== "sse") return null;
    return this.options.EventSource || (typeof root.EventSource === "function" ? root.EventSource : null);
  };

  /** Opens the stream once what was processed is acknowledged: a new stream hands out again what is not. */
  HiPush.prototype._openStream = function (session) {
    var self = this;
    if (!this._ackPending || this._ackSending) return this._openStreamNow(session);
    this._flushAck(false, function () {
      if (session === self._session) self._openStreamNow(session);
    });
  };

  HiPush.prototype._openStreamNow = function (session) {
    var self = this, EventSourceClass = this._eventSource();
    var params = {client_id: this.clientId, token: this.token, _: now().toString(36) + (jsonpCount++)};
    var stream = this._stream = new EventSourceClass(this.node + "/comet/stream?" + query(params));
    var opened = false, openTimer = setTimeout(failed, REQUEST_MARGIN);
    this._streamOpenedAt = 0;
    function current() {
      return session === self._session && self._stream === stream;
    }
    function failed() {
      clearTimeout(openTimer);
      if (!current()) return;
      self._closeStream();
      if (opened) return self._afterStream(session);
      self._poll(session);  // the probe
    }
    stream.onopen = function () {
      if (!current()) return;
      clearTimeout(openTimer);
      opened = true;
      self._streamOpenedAt = now();
      self._streamFailures = 0;
      self._reached(session);
    };
    stream.onmessage = function (event) {
      if (!current()) return;
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      self._dispatch(message);
      if (session === self._session) self._processed();
    };
    stream.addEventListener("missed", function (event) {
      if (!current()) return;
      try { self.stats.missed += JSON.parse(event.data).missed || 0; } catch (ignored) { /* not JSON */ }
    });
    stream.onerror = failed;  // ended (max age, revocation, a stopping node), cut, or refused
  };

  /** A stream that ended (its max age, a revoked token, a stopping node, a cut): connect again at once; after a
   *  stream that lived less than minDelay, back off a little. */
  HiPush.prototype._afterStream = function (session) {
    this._earlyEmpty = now() - this._streamOpenedAt < this.options.minDelay ? this._earlyEmpty + 1 : 0;
    this._schedule(session, this._earlyEmpty ? this._delay(this._earlyEmpty) : 0);
  };

  /** The probe answered: the node and token are fine, the stream is not. "auto" polls after a few of these. */
  HiPush.prototype._afterProbe = function (session) {
    this._streamFailures++;
    if (this.options.transport === "auto" && this._streamFailures >= STREAM_FAILURES_BEFORE_POLL) {
      this.transport = "poll";
      this._unwatchPageHide();
      this._emit("fallback", {from: "sse", to: "poll", reason: "the event stream did not open, a poll did"});
      if (session === this._session) this._schedule(session, 0);
      return;
    }
    this._schedule(session, this._delay(this._streamFailures));
  };

  HiPush.prototype._closeStream = function () {
    if (!this._stream) return;
    this._stream.onopen = this._stream.onmessage = this._stream.onerror = null;
    this._stream.close();
    this._stream = null;
  };

  /** A message's handlers returned: acknowledge within ACK_INTERVAL, or at once after ACK_EVERY messages. */
  HiPush.prototype._processed = function () {
    this._unacked++;
    if (this._unacked >= ACK_EVERY) return this._flushAck(false);
    this._armAckTimer();
  };

  HiPush.prototype._armAckTimer = function () {
    var self = this;
    if (this._ackTimer) return;
    this._ackTimer = setTimeout(function () {
      self._ackTimer = null;
      self._flushAck(false);
    }, ACK_INTERVAL);
  };

  /** POST /comet/ack of the last processed message, unless confirmed already; then done(). While one is under
   *  way, the next waits for its answer. A failed one goes again with the next batch, or before the next stream.
   *  `leaving`: the page or the connection goes away (disconnect(), page unload): a beacon where the browser has
   *  sendBeacon, else a keepalive fetch or an XHR; nobody waits for the answer. */
  HiPush.prototype._flushAck = function (leaving, done) {
    var self = this, ack = this._ack, node = this.node || this.options.server;
    if (this._ackTimer) clearTimeout(this._ackTimer);
    this._ackTimer = null;
    if (this.transport !== "sse" || !this._ackPending || ack === null || !this.clientId || !this.token ||
        (this._ackSending && !leaving)) {
      return done && done();
    }
    this._unacked = 0;
    var params = {client_id: this.clientId, token: this.token, ack: ack};
    if (leaving && root.navigator && root.navigator.sendBeacon && typeof Blob !== "undefined" &&
        root.navigator.sendBeacon(node + "/comet/ack", new Blob([query(params)],
          {type: "application/x-www-form-urlencoded"}))) {
      return done && done();
    }
    this._ackSending = true;
    this._fetch(node, "/comet/ack", params, 0, function (error) {
      self._ackSending = false;
      if (!error && ack === self._ack) self._ackPending = false;
      if (error && !leaving) {
        error.type = "ack";
        self._emit("error", error);
      }
      if (!error && self._unacked >= ACK_EVERY) self._flushAck(false);  // more came meanwhile
      else if (!error && self._unacked && !leaving) self._armAckTimer();
      if (done) done();
    }, "POST");
  };

  HiPush.prototype._watchPageHide = function () {
    var self = this;
    if (this._onPageHide || !root.addEventListener) return;
    this._onPageHide = function () { self._flushAck(true); };
    root.addEventListener("pagehide", this._onPageHide, false);
  };

  HiPush.prototype._unwatchPageHide = function () {
    if (this._onPageHide && root.removeEventListener) root.removeEventListener("pagehide", this._onPageHide, false);
    this._onPageHide = null;
  };

  HiPush.prototype._dispatch = function (message) {
    var id = message.id;
    if (this._seen.hasOwnProperty(id)) {
      this.stats.duplicates++;
    } else {
      this._remember(id);
      this.stats.received++;
      if (message.msg_type === 1) {
        var notification = parseNotification(message.content, this.options.notificationTitle);
        this._emit("notification", message, notification);
        if (this.options.notify) this._show(message, notification);
      } else {
        this._emit("message", message);
      }
    }
    this._ack = id;
    this._ackPending = true;
  };

  HiPush.prototype._remember = function (id) {
    this._seen[id] = true;
    this._seenOrder.push(id);
    if (this._seenOrder.length > RECENT_IDS) delete this._seen[this._seenOrder.shift()];
  };

  HiPush.prototype._show = function (message, notification) {
    var N = root.Notification, self = this;
    if (typeof N === "undefined" || N.permission !== "granted") return;
    try {
      var shown = new N(notification.title, {
        body: notification.body, icon: notification.image || undefined,
        image: notification.image || undefined, tag: "hipush-" + message.id
      });
      shown.onclick = function () {
        self.clicked(message);
        if (!notification.url) return;
        try { root.focus(); } catch (ignored) { /* nothing to focus */ }
        root.open(notification.url, "_blank");
      };
    } catch (e) {  // e.g. Android Chrome allows notifications only from a service worker
      this._emit("error", {type: "notification", status: 0, reason: String(e && e.message || e)});
    }
  };

  /** A call of the web node that must succeed before the next step; a failure backs off. */
  HiPush.prototype._call = function (base, path, params, type, onResult) {
    var self = this, session = this._session;
    this._send(base, path, params, 0, function (error, result) {
      if (session !== self._session) return;
      if (error) {
        error.type = type;
        return self._fail(session, error);
      }
      onResult(result);
    });
  };

  HiPush.prototype._fail = function (session, error, polling) {
    var wasConnected = this.state === "connected";
    this._failures++;
    this.stats.failures++;
    error.type = error.type || (polling ? "poll" : "request");
    error.attempt = this._failures;
    if (polling) {
      this._badNode = this.node;
      this.node = null;  // find the node again: it may have gone
    }
    var canRefetch = !!(this.options.appKey || this.options.getToken);
    // JSONP (and a cross-origin answer without CORS headers) cannot show a 401: after a few
    // failures in a row the token is fetched again
    if (canRefetch && (error.status === 401 || (error.status === 0 && this._failures % FAILURES_BEFORE_NEW_TOKEN === 0))) {
      this.token = null;
    }
    if (wasConnected) {
      this._setState("reconnecting");
      this._emit("disconnected", {reason: error.reason});
    }
    if (session !== this._session) return;
    this._emit("error", error);
    if (session !== this._session) return;
    this._schedule(session, this._delay(this._failures, error.retryAfter));
  };

  /** Exponential backoff with jitter: between half and all of min(maxDelay, minDelay * 2^(n-1)); never sooner
   *  than `retryAfter` seconds (the server's Retry-After), jittered up to half again so that the clients of a
   *  stopping node do not all come back at once. */
  HiPush.prototype._delay = function (n, retryAfter) {
    var ceiling = Math.min(this.options.maxDelay, this.options.minDelay * Math.pow(2, Math.min(n, 20) - 1));
    var delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    return retryAfter ? Math.max(delay, Math.round(retryAfter * 1000 * (1 + Math.random() / 2))) : delay;
  };

  HiPush.prototype._schedule = function (session, delay) {
    var self = this;
    if (!delay) return this._step(session);  // from a request's callback: no deep recursion, no timer throttling
    this._timer = setTimeout(function () {
      self._timer = null;
      self._step(session);
    }, delay);
  };

  HiPush.prototype._stop = function () {
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    this._closeStream();
    if (this._request) this._request.abort();
    this._request = null;
  };

  HiPush.prototype._setState = function (state) {
    this.state = state;
  };

  HiPush.prototype._emit = function (event) {
    var args = Array.prototype.slice.call(arguments, 1), list = (this._handlers[event] || []).slice();
    if (event === "error" && !list.length && root.console && root.console.warn) {
      root.console.warn("hipush:", args[0] && args[0].type, args[0] && (args[0].reason || args[0].status));
    }
    for (var i = 0; i < list.length; i++) {
      try {
        list[i].apply(this, args);
      } catch (e) {  // a throwing handler must not stop delivery; the message still counts as processed
        if (event !== "error") this._emit("error", {type: "handler", status: 0, reason: String(e && e.message || e), error: e});
        else if (root.console) root.console.error(e);
      }
    }
  };

  // ---- transports ----------------------------------------------------------------------------

  /** A request of the connection: disconnect() aborts it. */
  HiPush.prototype._send = function (base, path, params, timeoutMs, callback) {
    var self = this;
    var handle = this._request = this._fetch(base, path, params, timeoutMs, function (error, result) {
      if (self._request === handle) self._request = null;
      callback(error, result);
    });
  };

  /** GET (or `method` POST: a form body) base + path; callback(error, result) once, unless aborted through the
   *  handle returned ({abort()}). error = {status: HTTP status or 0, code, reason, retryAfter}. */
  HiPush.prototype._fetch = function (base, path, params, timeoutMs, callback, method) {
    var self = this, done = false, timer, makeRequest = this._requestMaker(base);
    if (makeRequest === jsonp && !pageLoaded()) {  // a <script> added before `load` holds the page loading for a whole poll
      var later = null, cancelled = false;
      afterLoad(function () {
        if (!cancelled) later = self._fetch(base, path, params, timeoutMs, callback, method);
      });
      return {abort: function () { cancelled = true; if (later) later.abort(); }};
    }
    params._ = now().toString(36) + (jsonpCount++);  // no cached answers
    var request = makeRequest(base + path, params, method || "GET");
    function finish(error, result) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      callback(error, result);
    }
    timer = setTimeout(function () {
      request.abort();
      finish({status: 0, reason: "timed out"});
    }, timeoutMs + REQUEST_MARGIN);
    try {
      request.start(function (status, body, retryAfter) {
        if (status === 200 && body && body.ok === true) return finish(null, body.result);
        finish({status: status, code: body && body.error, retryAfter: retryAfter || 0, reason: (body && body.reason) ||
          (status ? "HTTP " + status : "network error (or an error answer the browser hides)")});
      });
    } catch (e) {  // e.g. a malformed server URL
      setTimeout(function () { finish({status: 0, reason: String(e && e.message || e)}); }, 0);
    }
    return {abort: function () { done = true; clearTimeout(timer); request.abort(); }};
  };

  /** What makes the requests to `base` (every one but the stream): the option's function, XHR; JSONP where XHR
   *  cannot reach another origin; fetch() where there is no XHR at all (Node 18+, workers). */
  HiPush.prototype._requestMaker = function (base) {
    var transport = this.options.transport;
    if (typeof transport === "function") return transport;
    if (transport === "jsonp" || transport === "xhr" || transport === "fetch") {
      return {jsonp: jsonp, xhr: xhr, fetch: fetchRequest}[transport];
    }
    if (typeof XMLHttpRequest === "undefined") return typeof root.fetch === "function" ? fetchRequest : jsonp;
    return sameOrigin(base) || corsCapable() ? xhr : jsonp;
  };

  function xhr(url, params, method) {
    var request = new XMLHttpRequest();
    return {
      start: function (done) {
        request.onreadystatechange = function () {
          if (request.readyState !== 4) return;
          var body = null;
          try { body = JSON.parse(request.responseText); } catch (ignored) { /* not JSON */ }
          done(request.status, body, retryAfterOf(request.status, request.getResponseHeader("Retry-After")));
        };
        if (method === "POST") {
          request.open("POST", url, true);
          request.setRequestHeader("Content-Type", "application/x-www-form-urlencoded");
          request.send(query(params));
        } else {
          request.open("GET", url + "?" + query(params), true);
          request.send(null);
        }
      },
      abort: function () {
        request.onreadystatechange = noop;
        try { request.abort(); } catch (ignored) { /* already done */ }
      }
    };
  }

  /** Seconds a 503 (a stopping node) or 429 asks to wait; hipush exposes the header to other origins. */
  function retryAfterOf(status, header) {
    if (status !== 503 && status !== 429) return 0;
    var seconds = parseInt(header, 10);
    return seconds > 0 ? seconds : 0;
  }

  function fetchRequest(url, params, method) {
    var controller = typeof AbortController !== "undefined" ? new AbortController() : null, aborted = false;
    var init = controller ? {signal: controller.signal} : {};
    if (method === "POST") {  // an acknowledgement: it may outlive the page (keepalive)
      init.method = "POST";
      init.keepalive = true;
      init.headers = {"Content-Type": "application/x-www-form-urlencoded"};
      init.body = query(params);
    } else {
      url += "?" + query(params);
    }
    return {
      start: function (done) {
        root.fetch(url, init).then(function (response) {
          return response.text().then(function (text) {
            var body = null;
            try { body = JSON.parse(text); } catch (ignored) { /* not JSON */ }
            if (!aborted) done(response.status, body, retryAfterOf(response.status, response.headers.get("Retry-After")));
          });
        }).then(null, function () {
          if (!aborted) done(0, null);
        });
      },
      abort: function () {
        aborted = true;
        if (controller) controller.abort();
      }
    };
  }

  /** A <script> whose answer calls __hipush.cN(body). An HTTP error status fires onerror: status 0. */
  function jsonp(url, params) {
    var registry = root.__hipush = root.__hipush || {};
    var name = "c" + (jsonpCount++), script = document.createElement("script"), finished = false;
    function cleanUp() {
      if (script.parentNode) script.parentNode.removeChild(script);
      script.onload = script.onerror = script.onreadystatechange = null;
      delete registry[name];
    }
    return {
      start: function (done) {
        registry[name] = function (body) {
          if (finished) return;
          finished = true;
          done(body && body.ok === true ? 200 : 0, body);
        };
        script.onload = script.onerror = script.onreadystatechange = function () {
          if (script.readyState && script.readyState !== "loaded" && script.readyState !== "complete") return;
          cleanUp();
          if (!finished) {
            finished = true;
            done(0, null);
          }
        };
        params.callback = "__hipush." + name;
        script.async = true;
        script.src = url + "?" + query(params);
        (document.head || document.getElementsByTagName("head")[0] || document.documentElement).appendChild(script);
      },
      abort: function () {
        finished = true;
        registry[name] = noop;  // a late answer still finds its callback; onload cleans up
        if (script.parentNode) script.parentNode.removeChild(script);
      }
    };
  }

  // ---- helpers ---------------------------------------------------------------------------------

  /** A notification's content: plain text, or a JSON object (or its text) with title/body/url/image. */
  function parseNotification(content, defaultTitle) {
    var data = content;
    if (typeof content === "string" && /^\s*\{/.test(content)) {
      try { data = JSON.parse(content); } catch (ignored) { data = content; }
    }
    var fallbackTitle = defaultTitle || (typeof document !== "undefined" && document.title) || "Notification";
    if (data === null || typeof data !== "object") {
      return {title: fallbackTitle, body: data == null ? "" : String(data), url: null, image: null, data: content};
    }
    return {
      title: String(data.title || fallbackTitle),
      body: data.body == null ? (data.title ? "" : String(data.text || data.msg || "")) : String(data.body),
      url: data.url || null,
      image: data.image || data.icon || null,
      data: data
    };
  }

  function storedDeviceId(appKey) {
    var key = "hipush.deviceId." + appKey, id = null;
    try { id = root.localStorage.getItem(key); } catch (ignored) { /* no storage: a new id per page */ }
    if (!id) {
      id = "web-" + randomHex(16);
      try { root.localStorage.setItem(key, id); } catch (ignored2) { /* kept in memory only */ }
    }
    return id;
  }

  function randomHex(bytes) {
    var out = "", values = null, crypto = root.crypto || root.msCrypto;
    if (crypto && crypto.getRandomValues) values = crypto.getRandomValues(new Uint8Array(bytes));
    for (var i = 0; i < bytes; i++) {
      var b = values ? values[i] : Math.floor(Math.random() * 256);
      out += (b < 16 ? "0" : "") + b.toString(16);
    }
    return out;
  }

  function query(params) {
    var parts = [];
    for (var name in params) {
      if (params.hasOwnProperty(name) && params[name] != null) {
        parts.push(encodeURIComponent(name) + "=" + encodeURIComponent(params[name]));
      }
    }
    return parts.join("&");
  }

  function pageLoaded() {
    return typeof document === "undefined" || document.readyState === "complete";
  }

  function afterLoad(fn) {
    if (root.addEventListener) root.addEventListener("load", fn, false);
    else root.attachEvent("onload", fn);
  }

  function corsCapable() {
    try { return "withCredentials" in new XMLHttpRequest(); } catch (e) { return false; }
  }

  function pageOrigin() {
    var l = root.location;
    return l ? l.protocol + "//" + l.host : "";
  }

  function sameOrigin(url) {
    var origin = pageOrigin();
    return !!origin && (url === origin || url.indexOf(origin + "/") === 0);
  }

  function trimSlash(url) {
    return String(url).replace(/\/+$/, "");
  }

  function indexOf(list, item) {
    for (var i = 0; i < list.length; i++) if (list[i] === item) return i;
    return -1;
  }

  function now() {
    return new Date().getTime();
  }

  return HiPush;
});
