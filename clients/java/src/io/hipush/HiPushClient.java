package io.hipush;

import java.io.IOException;
import java.net.HttpURLConnection;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Timer;
import java.util.TimerTask;

/**
 * Receives pushes over the comet long poll or the SSE stream (SPEC §5, docs/PROTOCOL.md), as the JavaScript SDK
 * does.
 *
 * <pre>
 * HiPushClient client = HiPushClient.builder("https://push.example.com", APP_KEY).deviceId("d1").build();
 * client.setListener(new HiPushListener() {
 *     public void onMessage(HiPushMessage m) { System.out.println(m.content()); }
 * });
 * client.connect();      // receives on a thread of its own; client.disconnect() stops it
 * </pre>
 *
 * <p>Connecting registers the device (/user/genId), fetches a token (/user/token), asks /service/hash which
 * comet node to use, then polls it (Transport.POLL, the default) or keeps a stream open from it (Transport.SSE:
 * GET /comet/stream, each message an event; far fewer requests). A message is acknowledged once the listener
 * returned: with the next poll, or over SSE by POST /comet/ack in batches (within a second, at once every 100
 * messages, before a new stream and on disconnect()). A message that comes again (same id) is dropped. A stream
 * that ends (the server's HIPUSH_STREAM_MAX_AGE, a stopping node) is opened again at once. A failure is retried
 * after a jittered exponential backoff (never sooner than a 503's or 429's Retry-After) against a freshly
 * discovered node; a 401 fetches a new token first. State: DISCONNECTED, CONNECTING, CONNECTED, RECONNECTING.
 */
public final class HiPushClient {
    /** DISCONNECTED until connect(); CONNECTING until the first poll answers (or stream opens); CONNECTED;
     *  RECONNECTING after a failure of a connected client, until a poll answers (or a stream opens) again. */
    public enum State { DISCONNECTED, CONNECTING, CONNECTED, RECONNECTING }

    /** How messages come: POLL, the long poll (GET /comet/poll); SSE, one stream kept open (GET /comet/stream). */
    public enum Transport { POLL, SSE }

    /** Signed-token apps: fetches a fresh token for the client (from the app's backend) after a 401. */
    public interface TokenFetcher {
        String fetchToken(String clientId) throws Exception;
    }

    private static final int REQUEST_MARGIN_MS = 15000;  // a poll's read timeout beyond its poll timeout
    // a stream silent for this long is dead: the server sends a heartbeat every 25 s (HIPUSH_STREAM_HEARTBEAT)
    private static final int STREAM_READ_TIMEOUT_MS = 60000;
    private static final int ACK_EVERY = 100;  // over SSE: messages processed that are acknowledged at once
    private static final long ACK_INTERVAL_MS = 1000;  // over SSE: the longest a processed message waits for its ack
    private static final Random RANDOM = new SecureRandom();

    private final String server;
    private final String appKey;
    private final String deviceId;
    private final Map<String, String> registration;
    private final TokenFetcher tokenFetcher;
    private final boolean discover;
    private final Transport transport;
    private final int pollTimeout;
    private final long minDelayMs;
    private final long maxDelayMs;
    private final int connectTimeoutMs;
    private final int recentIds;
    private final boolean daemon;

    private volatile HiPushListener listener = new HiPushListener() {
    };
    private volatile String clientId;
    private volatile String token;
    private volatile String node;  // base URL of the comet node being polled or streamed from
    private volatile State state = State.DISCONNECTED;
    private volatile int session;  // bumped by connect() and disconnect(): a stale loop sees a newer one
    private volatile HttpURLConnection request;  // the request under way, to abort it (not an open stream)
    private final Http.Watcher requestTracker = new Http.Watcher() {
        public void opened(HttpURLConnection connection) {
            request = connection;
        }
    };
    private volatile Thread pollThread;
    private final Object sleeper = new Object();

    // touched by the polling thread only
    private int failures;  // failures in a row
    private int earlyEmpty;  // long polls in a row answered empty long before their timeout
    private String badNode;  // the node whose poll failed last: discovery avoids it once
    private boolean wasConnected;

    // the acknowledgement, shared with disconnect() and (over SSE) the ack timer; guarded by seen
    private long lastAck;
    private boolean ackPending;
    private int unsentAcks;  // over SSE: messages processed since the last POST /comet/ack
    private boolean ackTimerArmed;
    private final LinkedHashMap<Long, Boolean> seen;
    private final Object ackSender = new Object();  // one POST /comet/ack at a time

    private volatile long received;
    private volatile long duplicates;
    private volatile long reconnects;
    private volatile long failureCount;
    private volatile long missed;

    private HiPushClient(Builder b) {
        this.server = Http.baseUrl(b.server);
        this.appKey = b.appKey;
        this.deviceId = b.deviceId != null ? b.deviceId : "java-" + Signing.hex(randomBytes(16));
        this.registration = b.registration;
        this.tokenFetcher = b.tokenFetcher;
        this.clientId = b.clientId;
        this.token = b.token;
        this.discover = b.discover;
        this.transport = b.transport;
        this.pollTimeout = b.pollTimeout;
        this.minDelayMs = b.minDelayMs;
        this.maxDelayMs = b.maxDelayMs;
        this.connectTimeoutMs = b.connectTimeoutMs;
        this.recentIds = b.recentIds;
        this.daemon = b.daemon;
        this.seen = new LinkedHashMap<Long, Boolean>(16, 0.75f, false) {
            private static final long serialVersionUID = 1L;

            @Override
            protected boolean removeEldestEntry(Map.Entry<Long, Boolean> eldest) {
                return size() > HiPushClient.this.recentIds;
            }
        };
    }

    /** A client that registers itself: /user/genId with its device id and the app's key. */
    public static Builder builder(String server, String appKey) {
        return new Builder(server, appKey);
    }

    /** A client with ids from the app's backend: set clientId() and token() (and tokenFetcher()). */
    public static Builder builder(String server) {
        return new Builder(server, null);
    }

    public void setListener(HiPushListener listener) {
        this.listener = listener == null ? new HiPushListener() {
        } : listener;
    }

    /** This client's id: null until registered (given to the builder, or fetched after connect()). */
    public String clientId() {
        return clientId;
    }

    public State state() {
        return state;
    }

    /** Messages handed to the listener. */
    public long received() {
        return received;
    }

    /** Messages dropped because they came again. */
    public long duplicates() {
        return duplicates;
    }

    /** Polls that succeeded after a failure of a connected client. */
    public long reconnects() {
        return reconnects;
    }

    /** Failed calls (each followed by a backoff). */
    public long failures() {
        return failureCount;
    }

    /** Messages the server dropped from this client's overflowing queue. */
    public long missed() {
        return missed;
    }

    public Transport transport() {
        return transport;
    }

    /** Starts receiving on a thread of its own (does nothing unless DISCONNECTED). */
    public synchronized void connect() {
        if (state != State.DISCONNECTED) {
            return;
        }
        if (appKey == null && !(clientId != null && (token != null || tokenFetcher != null))) {
            throw new IllegalStateException("give an appKey, or a clientId and a token");
        }
        final int mine = ++session;
        failures = 0;
        earlyEmpty = 0;
        wasConnected = false;
        state = State.CONNECTING;
        Thread thread = new Thread(new Runnable() {
            @Override
            public void run() {
                loop(mine);
            }
        }, transport == Transport.SSE ? "hipush-stream" : "hipush-poll");
        thread.setDaemon(daemon);
        pollThread = thread;
        thread.start();
    }

    /**
     * Stops receiving: ends the poll parked on the server, or the open stream, by a poll with timeout 0 that
     * carries the acknowledgement (a newer poll of the client ends either at once; closing a stream's connection
     * would wait for the read under way), waits (up to 10 s) for a running listener call to return and sends the
     * acknowledgement of what it processed. Called from a listener, it returns at once and the receiving thread
     * does the rest.
     */
    public void disconnect() {
        boolean wasConnectedNow;
        Thread thread;
        synchronized (this) {
            if (state == State.DISCONNECTED) {
                return;
            }
            wasConnectedNow = state == State.CONNECTED;
            session++;
            state = State.DISCONNECTED;
            thread = pollThread;
            HttpURLConnection running = request;
            if (running != null) {
                running.disconnect();
            }
        }
        synchronized (sleeper) {
            sleeper.notifyAll();
        }
        if (wasConnectedNow) {
            emit(new Emitter() {
                public void call(HiPushListener l) {
                    l.onDisconnected("disconnect() called");
                }
            });
        }
        if (thread != null && thread != Thread.currentThread()) {
            finalPoll(true);  // a newer poll ends a parked poll or a stream at once: the thread need not wait for it
            try {
                thread.join(10000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** A poll with timeout 0 carrying the last acknowledgement (if any: else only when {@code always}). */
    private void finalPoll(boolean always) {
        Long ack = pendingAck();
        if ((ack == null && !always) || clientId == null || token == null) {
            return;
        }
        try {
            Http.legacyResult(Http.exchange((node != null ? node : server) + "/comet/poll?" + pollQuery(0, ack), null,
                    null, connectTimeoutMs, REQUEST_MARGIN_MS, null));
            if (ack != null) {
                confirmAck(ack);
            }
        } catch (HiPushException e) {
            emitError(e);  // the messages come again after the next connect(), and are shown again
        }
    }

    // ------------------------------------------------ the connection: register, token, node, poll or stream

    private void loop(int mine) {
        Timer ackTimer = transport == Transport.SSE ? new Timer("hipush-ack", true) : null;
        synchronized (seen) {
            ackTimerArmed = false;  // a timer of an earlier connection may have been cancelled armed
        }
        while (session == mine) {
            boolean polling = false;
            try {
                if (clientId == null) {
                    register();
                } else if (token == null) {
                    fetchToken();
                } else if (node == null) {
                    node = discoverNode();
                } else {
                    polling = true;
                    if (ackTimer != null) {
                        stream(mine, ackTimer);
                    } else {
                        poll(mine);
                    }
                }
            } catch (HiPushException e) {
                if (session == mine) {
                    fail(mine, e, polling);
                }
            } catch (RuntimeException e) {  // e.g. from an HttpURLConnection aborted by disconnect(): never die silently
                if (session == mine) {
                    fail(mine, new HiPushException("unexpected failure: " + e, e), polling);
                }
            }
        }
        // the acknowledgement of what the listener processed since
        if (ackTimer != null) {
            ackTimer.cancel();
            sendStreamAckReporting();
        } else {
            finalPoll(false);
        }
    }

    private void register() throws HiPushException {
        List<String[]> params = new ArrayList<String[]>();
        params.add(new String[] {"device_id", deviceId});
        params.add(new String[] {"app_key", appKey});
        for (Map.Entry<String, String> field : registration.entrySet()) {
            params.add(new String[] {field.getKey(), field.getValue()});
        }
        clientId = (String) Http.asMap(get(server, "/user/genId", params)).get("client_id");
    }

    private void fetchToken() throws HiPushException {
        if (tokenFetcher != null) {
            try {
                token = tokenFetcher.fetchToken(clientId);
            } catch (Exception e) {
                throw new HiPushException("the token fetcher failed: " + e, e);
            }
            if (token == null) {
                throw new HiPushException(0, "the token fetcher gave no token", 0, 0);
            }
            return;
        }
        if (appKey == null) {
            throw new HiPushException(HiPushException.AUTH_FAILED, "the token was refused and there is no way to fetch a new one", 401, 0);
        }
        token = (String) Http.asMap(get(server, "/user/token", Http.pairs("client_id", clientId))).get("token");
    }

    /** /service/hash, else /service/random, else the configured server itself. */
    private String discoverNode() {
        if (!discover) {
            return server;
        }
        try {
            String found = nodeUrl(get(server, "/service/hash", Http.pairs("client_id", clientId)));
            // the node whose poll just failed is skipped once, unless it is the server that just answered
            if (found != null && (!found.equals(badNode) || found.equals(server))) {
                return found;
            }
        } catch (HiPushException e) {
            if (e.httpStatus() == 0) {
                return server;  // unreachable: poll it, fail, back off
            }
        }
        try {
            String other = nodeUrl(get(server, "/service/random", new ArrayList<String[]>()));
            return other != null && !other.equals(badNode) ? other : server;
        } catch (HiPushException e) {
            return server;
        }
    }

    private String nodeUrl(Object answer) {
        if (!(answer instanceof Map)) {
            return null;
        }
        Object ip = ((Map<?, ?>) answer).get("ip");
        Object port = ((Map<?, ?>) answer).get("port");
        if (!(ip instanceof String) || !(port instanceof Number) || "0.0.0.0".equals(ip) || "::".equals(ip)) {
            return null;
        }
        String host = ((String) ip).contains(":") ? "[" + ip + "]" : (String) ip;
        String scheme = server.startsWith("https:") ? "https://" : "http://";
        String found = scheme + host + ":" + ((Number) port).intValue();
        int pathStart = server.indexOf('/', server.indexOf("://") + 3);
        String origin = pathStart < 0 ? server : server.substring(0, pathStart);
        return found.equals(origin) ? server : found;  // the server itself: keep its path prefix
    }

    private void poll(int mine) throws HiPushException {
        // the first poll of a (re)connection answers at once: it proves the connection and hands out what waits
        int timeout = state == State.CONNECTED ? pollTimeout : 0;
        Long ack = pendingAck();
        long started = System.currentTimeMillis();
        Object result = get(node, "/comet/poll?" + pollQuery(timeout, ack), timeout * 1000 + REQUEST_MARGIN_MS);
        if (session != mine) {
            return;
        }
        if (ack != null) {
            confirmAck(ack);
        }
        reached(mine);
        Map<String, Object> answer = Http.asMap(result);
        if (answer.get("missed") instanceof Number) {
            missed += ((Number) answer.get("missed")).longValue();
        }
        List<?> messages = answer.get("messages") instanceof List ? (List<?>) answer.get("messages") : new ArrayList<Object>();
        for (Object message : messages) {
            if (session != mine) {
                return;
            }
            if (message instanceof Map) {
                dispatch(new HiPushMessage(Http.asMap(message)));
            }
        }
        // a long poll answered empty long before its timeout was replaced by a newer poll of the same
        // client, or its server is stopping
        endedEarly(mine,
                messages.isEmpty() && timeout > 0 && System.currentTimeMillis() - started < timeout * 500L);
    }

    /** One stream: opened (after the acknowledgement of what was processed: a new stream hands out again what is
     *  not acknowledged), read until it ends or is cut. */
    private void stream(int mine, Timer ackTimer) throws HiPushException {
        try {
            sendStreamAck();
        } catch (HiPushException e) {
            // not told: the stream's own answer says what is wrong, if anything, and what stays unacknowledged
            // comes again and is dropped as seen
        }
        String url = node + "/comet/stream?" + Signing.formEncode(Http.pairs("client_id", clientId, "token", token));
        HttpURLConnection connection = Http.openStream(url, connectTimeoutMs, STREAM_READ_TIMEOUT_MS, requestTracker);
        try {
            synchronized (this) {  // disconnect() now ends the stream by a poll, not by closing it
                request = null;
                if (session != mine) {
                    return;
                }
            }
            long opened = System.currentTimeMillis();
            reached(mine);
            EventStream events = new EventStream(connection.getInputStream());
            for (EventStream.Event event; session == mine && (event = events.next()) != null; ) {
                streamEvent(event, ackTimer);
            }
            // ended by the server (its max age, a newer poll or stream of the client, a stopping node): open the
            // next one at once, unless this one hardly lived (taking turns with another installation)
            endedEarly(mine, System.currentTimeMillis() - opened < minDelayMs);
        } catch (IOException e) {  // cut, or silent for longer than heartbeats allow
            throw Http.noAnswer(node + "/comet/stream", e);
        } finally {
            connection.disconnect();
        }
    }

    private void streamEvent(EventStream.Event event, Timer ackTimer) {
        Map<String, Object> data;
        try {
            data = Http.asMap(Json.parse(event.data));
        } catch (IllegalArgumentException | HiPushException e) {
            emitError(new HiPushException("an event that is no JSON object: " + event.data, e));
            return;
        }
        if (event.type.equals("missed") && data.get("missed") instanceof Number) {
            missed += ((Number) data.get("missed")).longValue();
        } else if (event.type.equals("message")) {
            dispatch(new HiPushMessage(data));
            streamProcessed(ackTimer);
        }
    }

    /** A poll answered or a stream opened: the node works. */
    private void reached(int mine) {
        failures = 0;
        badNode = null;
        if (state == State.CONNECTED) {
            return;
        }
        synchronized (this) {
            if (session != mine) {
                return;
            }
            if (wasConnected) {
                reconnects++;
            }
            wasConnected = true;
            state = State.CONNECTED;
        }
        emit(new Emitter() {
            public void call(HiPushListener l) {
                l.onConnected();
            }
        });
    }

    /** After a poll or stream that ended early: several in a row mean it is being replaced (another installation
     *  with the same device id) or its node is stopping: wait a little rather than take turns at full speed. */
    private void endedEarly(int mine, boolean early) {
        earlyEmpty = early ? earlyEmpty + 1 : 0;
        if (early) {
            sleep(mine, delay(earlyEmpty, 0));
        }
    }

    private void dispatch(final HiPushMessage message) {
        boolean fresh;
        synchronized (seen) {
            fresh = seen.put(message.id(), Boolean.TRUE) == null;
        }
        if (fresh) {
            received++;
            emit(new Emitter() {
                public void call(HiPushListener l) {
                    if (message.isNotification()) {
                        l.onNotification(message);
                    } else {
                        l.onMessage(message);
                    }
                }
            });
        } else {
            duplicates++;
        }
        synchronized (seen) {  // processed (the listener returned): acknowledged with the next poll, or over SSE
            lastAck = message.id();
            ackPending = true;
        }
    }

    private void fail(int mine, HiPushException error, boolean polling) {
        failures++;
        failureCount++;
        if (polling) {
            badNode = node;
            node = null;  // find the node again: it may have gone
        }
        if (error.httpStatus() == 401 && (appKey != null || tokenFetcher != null)) {
            token = null;
        }
        boolean lost = false;
        synchronized (this) {
            if (session == mine && state == State.CONNECTED) {
                state = State.RECONNECTING;
                lost = true;
            }
        }
        if (lost) {
            final String reason = error.reason();
            emit(new Emitter() {
                public void call(HiPushListener l) {
                    l.onDisconnected(reason);
                }
            });
        }
        if (session == mine) {
            emitError(error);
            sleep(mine, delay(failures, error.retryAfter()));
        }
    }

    /** Exponential backoff with jitter: between half and all of min(maxDelay, minDelay * 2^(n-1)); never sooner
     *  than retryAfter seconds, jittered up to half again so that the clients of a stopping node spread out. */
    private long delay(int n, int retryAfter) {
        double ceiling = Math.min(maxDelayMs, minDelayMs * Math.pow(2, Math.min(n, 20) - 1));
        long delay = Math.round(ceiling / 2 + RANDOM.nextDouble() * ceiling / 2);
        return retryAfter > 0 ? Math.max(delay, Math.round(retryAfter * 1000 * (1 + RANDOM.nextDouble() / 2))) : delay;
    }

    private void sleep(int mine, long ms) {
        long until = System.currentTimeMillis() + ms;
        synchronized (sleeper) {
            long left;
            while (session == mine && (left = until - System.currentTimeMillis()) > 0) {
                try {
                    sleeper.wait(left);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
    }

    // ------------------------------------------------ acknowledgements

    private Long pendingAck() {
        synchronized (seen) {
            return ackPending ? lastAck : null;
        }
    }

    private void confirmAck(long ack) {
        synchronized (seen) {
            if (ackPending && lastAck == ack) {
                ackPending = false;  // the server dropped everything up to it
            }
        }
    }

    /** Over SSE, a message processed: acknowledged at once after ACK_EVERY of them, else within ACK_INTERVAL_MS. */
    private void streamProcessed(Timer ackTimer) {
        boolean now;
        boolean arm;
        synchronized (seen) {
            now = ++unsentAcks >= ACK_EVERY;
            arm = !now && !ackTimerArmed;
            ackTimerArmed |= arm;
        }
        if (now) {
            sendStreamAckReporting();
        } else if (arm) {
            ackTimer.schedule(new TimerTask() {
                @Override
                public void run() {
                    synchronized (seen) {
                        ackTimerArmed = false;
                    }
                    sendStreamAckReporting();
                }
            }, ACK_INTERVAL_MS);
        }
    }

    /** POST /comet/ack of the last processed message, unless the server has it already. A failed one goes again
     *  with the next batch, or before the next stream. */
    private void sendStreamAck() throws HiPushException {
        synchronized (ackSender) {
            Long ack;
            synchronized (seen) {
                ack = ackPending ? lastAck : null;
                unsentAcks = 0;
            }
            if (ack == null || clientId == null || token == null) {
                return;
            }
            String form = Signing.formEncode(Http.pairs("client_id", clientId, "token", token,
                    "ack", Long.toString(ack)));
            Http.legacyResult(Http.exchange((node != null ? node : server) + "/comet/ack", form, null, connectTimeoutMs,
                    REQUEST_MARGIN_MS, null));
            confirmAck(ack);
        }
    }

    /** sendStreamAck() where its failure only needs telling (the messages come again, and are dropped as seen). */
    private void sendStreamAckReporting() {
        try {
            sendStreamAck();
        } catch (HiPushException e) {
            emitError(e);
        }
    }

    private String pollQuery(int timeout, Long ack) {
        List<String[]> params = Http.pairs("client_id", clientId, "token", token, "timeout", Integer.toString(timeout));
        if (ack != null) {
            params.add(new String[] {"ack", Long.toString(ack)});
        }
        return Signing.formEncode(params);
    }

    // ------------------------------------------------ calls and events

    private Object get(String base, String path, List<String[]> params) throws HiPushException {
        String query = params.isEmpty() ? "" : "?" + Signing.formEncode(params);
        return get(base, path + query, REQUEST_MARGIN_MS);
    }

    private Object get(String base, String pathAndQuery, int readTimeoutMs) throws HiPushException {
        return Http.legacyResult(Http.exchange(base + pathAndQuery, null, null, connectTimeoutMs, readTimeoutMs,
                requestTracker));
    }

    private interface Emitter {
        void call(HiPushListener listener);
    }

    /** A throwing listener must not stop delivery: the message still counts as processed. */
    private void emit(Emitter emitter) {
        try {
            emitter.call(listener);
        } catch (RuntimeException e) {
            emitError(new HiPushException("the listener failed: " + e, e));
        }
    }

    private void emitError(HiPushException error) {
        try {
            listener.onError(error);
        } catch (RuntimeException ignored) {
            // nothing left to tell
        }
    }

    private static byte[] randomBytes(int n) {
        byte[] bytes = new byte[n];
        RANDOM.nextBytes(bytes);
        return bytes;
    }

    /** Options of a HiPushClient; build() makes it. */
    public static final class Builder {
        private final String server;
        private final String appKey;
        private String deviceId;
        private final Map<String, String> registration = new LinkedHashMap<String, String>();
        private String clientId;
        private String token;
        private TokenFetcher tokenFetcher;
        private boolean discover = true;
        private Transport transport = Transport.POLL;
        private int pollTimeout = 30;
        private long minDelayMs = 1000;
        private long maxDelayMs = 30000;
        private int connectTimeoutMs = 5000;
        private int recentIds = 1000;
        private boolean daemon;

        private Builder(String server, String appKey) {
            if (server == null) {
                throw new IllegalArgumentException("server is required");
            }
            this.server = server;
            this.appKey = appKey;
        }

        /** This device's stable id (default: a random one per HiPushClient, i.e. a new client each run). */
        public Builder deviceId(String deviceId) {
            this.deviceId = deviceId;
            return this;
        }

        /** web (default), android, ios, ... sent to /user/genId. */
        public Builder terminalType(String terminalType) {
            registration.put("terminal_type", terminalType);
            return this;
        }

        /** The organisation sent to /user/genId (for /push/org). */
        public Builder org(String org) {
            registration.put("org", org);
            return this;
        }

        /** A client id handed out by the app's backend (no registration). */
        public Builder clientId(String clientId) {
            this.clientId = clientId;
            return this;
        }

        /** A token handed out by the app's backend. */
        public Builder token(String token) {
            this.token = token;
            return this;
        }

        /** Asked for a new token after a 401 (signed-token apps). */
        public Builder tokenFetcher(TokenFetcher tokenFetcher) {
            this.tokenFetcher = tokenFetcher;
            return this;
        }

        /** Ask /service/hash which comet node to poll (default true); false always polls the server given. */
        public Builder discover(boolean discover) {
            this.discover = discover;
            return this;
        }

        /** POLL (default) or SSE: one stream kept open from the node, acknowledged by POST /comet/ack. */
        public Builder transport(Transport transport) {
            if (transport == null) {
                throw new IllegalArgumentException("transport is required");
            }
            this.transport = transport;
            return this;
        }

        /** Seconds a poll may park on the server (default 30, at most 60). */
        public Builder pollTimeout(int seconds) {
            if (seconds < 0 || seconds > 60) {
                throw new IllegalArgumentException("pollTimeout must be 0-60 seconds");
            }
            this.pollTimeout = seconds;
            return this;
        }

        /** Reconnect backoff bounds in milliseconds (default 1000 and 30000, jittered). */
        public Builder backoff(long minDelayMs, long maxDelayMs) {
            if (minDelayMs <= 0 || maxDelayMs < minDelayMs) {
                throw new IllegalArgumentException("need 0 < minDelayMs <= maxDelayMs");
            }
            this.minDelayMs = minDelayMs;
            this.maxDelayMs = maxDelayMs;
            return this;
        }

        /** Milliseconds to connect (default 5000). */
        public Builder connectTimeout(int ms) {
            this.connectTimeoutMs = ms;
            return this;
        }

        /** How many delivery ids are remembered to drop redeliveries (default 1000). */
        public Builder recentIds(int count) {
            this.recentIds = Math.max(1, count);
            return this;
        }

        /** Whether the polling thread is a daemon (default false: it keeps the JVM running until disconnect()). */
        public Builder daemon(boolean daemon) {
            this.daemon = daemon;
            return this;
        }

        public HiPushClient build() {
            return new HiPushClient(this);
        }
    }
}
