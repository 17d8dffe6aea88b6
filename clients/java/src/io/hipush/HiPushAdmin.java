package io.hipush;

import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The calls of an app backend: the legacy signed API (SPEC §3) and the REST API (SPEC §4).
 *
 * <pre>
 * HiPushAdmin admin = new HiPushAdmin("https://push.example.com", APP_KEY, APP_SECRET);
 * long msgId = admin.pushTerminal(Arrays.asList(clientId), "hello");
 * </pre>
 *
 * <p>Signing ({@link SignMethod}): HMAC-SHA256 by default (adds sign_method, timestamp and a fresh nonce to
 * every call; the signature covers the path too), MD5 (the seed's), or BASIC (REST calls authenticate with
 * HTTP Basic app_key:app_secret; legacy calls, which take only signatures, are signed with HMAC-SHA256).
 * Every call is a POST with a form body. A failure throws {@link HiPushException}; nothing is retried.
 * Results that are JSON objects come as {@code Map<String, Object>} (see {@link Json} for the value types).
 * Thread-safe.
 */
public class HiPushAdmin {
    /** How calls authenticate. */
    public enum SignMethod { HMAC_SHA256, MD5, BASIC }

    private static final SecureRandom RANDOM = new SecureRandom();
    private static final int SUBSCRIBE_BATCH = 100;  // client_ids per /topic/subscribe call

    private final String server;
    private final String appKey;
    private final String appSecret;
    private final SignMethod signMethod;
    private volatile int connectTimeoutMs = 5000;
    private volatile int readTimeoutMs = 30000;

    public HiPushAdmin(String server, String appKey, String appSecret) {
        this(server, appKey, appSecret, SignMethod.HMAC_SHA256);
    }

    public HiPushAdmin(String server, String appKey, String appSecret, SignMethod signMethod) {
        if (server == null || appKey == null || appKey.isEmpty() || appSecret == null || appSecret.isEmpty()) {
            throw new IllegalArgumentException("server, appKey and appSecret are required");
        }
        this.server = Http.baseUrl(server);
        this.appKey = appKey;
        this.appSecret = appSecret;
        this.signMethod = signMethod;
    }

    /** Milliseconds to connect and to read each answer (default 5000 and 30000). */
    public HiPushAdmin timeouts(int connectMs, int readMs) {
        this.connectTimeoutMs = connectMs;
        this.readTimeoutMs = readMs;
        return this;
    }

    // ------------------------------------------------ signing and transport

    /**
     * The (name, value) pairs of a call of {@code path} with app_key and the signature added (MD5, or
     * HMAC-SHA256 with a fresh timestamp and nonce for the other methods). Null values are left out.
     */
    public List<String[]> sign(String path, List<String[]> params) {
        List<String[]> pairs = withoutNulls(params);
        boolean hasKey = false;
        for (String[] pair : pairs) {
            hasKey |= "app_key".equals(pair[0]) || "appkey".equals(pair[0]);
        }
        if (!hasKey) {
            pairs.add(0, new String[] {"app_key", appKey});
        }
        if (signMethod == SignMethod.MD5) {
            pairs.add(new String[] {"sign", Signing.md5Sign(pairs, appSecret)});
            return pairs;
        }
        byte[] nonce = new byte[16];
        RANDOM.nextBytes(nonce);
        pairs.add(new String[] {"sign_method", "hmac-sha256"});
        pairs.add(new String[] {"timestamp", Long.toString(System.currentTimeMillis() / 1000)});
        pairs.add(new String[] {"nonce", Signing.hex(nonce)});
        pairs.add(new String[] {"sign", Signing.hmacSign(path, pairs, appSecret)});
        return pairs;
    }

    private Http.Answer post(String path, List<String[]> params, boolean rest) throws HiPushException {
        String authorization = null;
        List<String[]> pairs;
        if (rest && signMethod == SignMethod.BASIC) {
            pairs = withoutNulls(params);
            String credentials = appKey + ":" + appSecret;
            authorization = "Basic " + Signing.base64(credentials.getBytes(Signing.UTF8));
        } else {
            pairs = sign(path, params);
        }
        return Http.exchange(server + path, Signing.formEncode(pairs), authorization, connectTimeoutMs,
                readTimeoutMs, null);
    }

    private Object legacy(String path, String... nameValues) throws HiPushException {
        return Http.legacyResult(post(path, Http.pairs(nameValues), false));
    }

    private Map<String, Object> rest(String path, String... nameValues) throws HiPushException {
        return Http.restResult(post(path, Http.pairs(nameValues), true));
    }

    // ------------------------------------------------ legacy API (SPEC §3)

    /** /job/genId: a new job (groups messages for statistics); returns its job_id. */
    public long genJob(String name, String type) throws HiPushException {
        return number(Http.asMap(legacy("/job/genId", "name", name, "type", type)).get("job_id"));
    }

    /** /publish/private: one message (msgType 0) to one client, queued for it while offline. */
    public void publishPrivate(long jobId, String clientId, String content) throws HiPushException {
        publishPrivate(jobId, clientId, content, 0, false, null);
    }

    /** /publish/private. online: only if the client is online now; idempotencyKey may be null. */
    public void publishPrivate(long jobId, String clientId, String content, int msgType, boolean online,
                               String idempotencyKey) throws HiPushException {
        legacy("/publish/private", "job_id", Long.toString(jobId), "client_id", clientId, "msg_type",
                Integer.toString(msgType), "content", content, "online", Boolean.toString(online),
                "idempotency_key", idempotencyKey);
    }

    /** /message/save: a message to publish with publishMulti; returns its message_id. */
    public long saveMessage(long jobId, String content, int msgType) throws HiPushException {
        return number(Http.asMap(legacy("/message/save", "job_id", Long.toString(jobId), "msg_type",
                Integer.toString(msgType), "content", content)).get("message_id"));
    }

    /** /publish/multi: a saved message to every subscriber of topic ("*": every client of the app). */
    public void publishMulti(String topic, long msgId, boolean online) throws HiPushException {
        legacy("/publish/multi", "topic", topic, "msg_id", Long.toString(msgId), "online", Boolean.toString(online));
    }

    /** /topic/subscribe, in calls of 100 clients. */
    public void subscribe(String topic, List<String> clientIds) throws HiPushException {
        subscription("/topic/subscribe", topic, clientIds);
    }

    /** /topic/unsubscribe, in calls of 100 clients. */
    public void unsubscribe(String topic, List<String> clientIds) throws HiPushException {
        subscription("/topic/unsubscribe", topic, clientIds);
    }

    private void subscription(String path, String topic, List<String> clientIds) throws HiPushException {
        if (clientIds.isEmpty()) {
            throw new IllegalArgumentException("clientIds must not be empty");
        }
        for (int start = 0; start < clientIds.size(); start += SUBSCRIBE_BATCH) {
            List<String[]> params = new ArrayList<String[]>();
            params.add(new String[] {"topic", topic});
            for (String clientId : clientIds.subList(start, Math.min(clientIds.size(), start + SUBSCRIBE_BATCH))) {
                params.add(new String[] {"client_id", clientId});
            }
            Http.legacyResult(post(path, params, false));
        }
    }

    /** /job/stats: job_id, name, type, sent, arrived, expired, failed, ... */
    public Map<String, Object> jobStats(long jobId) throws HiPushException {
        return Http.asMap(legacy("/job/stats", "job_id", Long.toString(jobId)));
    }

    /** /user/revoke: every token of the client stops working. */
    public void revoke(String clientId) throws HiPushException {
        legacy("/user/revoke", "client_id", clientId);
    }

    /** /user/token, signed: a client's token, for apps with the signed token policy (hand it to the client). */
    public String clientToken(String clientId) throws HiPushException {
        return (String) Http.asMap(legacy("/user/token", "client_id", clientId)).get("token");
    }

    // ------------------------------------------------ REST API (SPEC §4)

    /** /push/terminal: a text message to the given client ids; returns msg_id. */
    public long pushTerminal(List<String> terminalIds, String msg) throws HiPushException {
        return pushTerminal(terminalIds, msg, null);
    }

    /**
     * /push/terminal. msg: text, or a Map (title, body, image, sound, url, extras) for a notification
     * (sent as its JSON, msg_type 1 unless the options say otherwise). options may be null.
     */
    public long pushTerminal(List<String> terminalIds, Object msg, PushOptions options) throws HiPushException {
        return push("/push/terminal", msg, options, "terminal_ids", commaList(terminalIds, "terminalIds"));
    }

    /** /push/all: to every client of the app; returns msg_id. */
    public long pushAll(Object msg, PushOptions options) throws HiPushException {
        return push("/push/all", msg, options);
    }

    /** /push/tags: to the clients of any of the tags, each once; returns msg_id. */
    public long pushTags(List<String> tags, Object msg, PushOptions options) throws HiPushException {
        return push("/push/tags", msg, options, "tags", commaList(tags, "tags"));
    }

    /** /push/org: to the clients of the orgs ("*": any) of the terminal types (null: any). */
    public long pushOrg(List<String> orgs, List<String> terminalTypes, Object msg, PushOptions options)
            throws HiPushException {
        return push("/push/org", msg, options, "orgs", commaList(orgs, "orgs"), "terminal_types",
                terminalTypes == null ? null : commaList(terminalTypes, "terminalTypes"));
    }

    /** /push/geo: to the clients last seen within radius metres of (lat, lng). */
    public long pushGeo(double lat, double lng, long radius, Object msg, PushOptions options) throws HiPushException {
        return push("/push/geo", msg, options, "lat", decimal(lat), "lng", decimal(lng), "radius",
                Long.toString(radius));
    }

    private long push(String path, Object msg, PushOptions options, String... target) throws HiPushException {
        PushOptions o = options == null ? new PushOptions() : options;
        boolean structured = msg instanceof Map;
        if (!structured && !(msg instanceof String)) {
            throw new IllegalArgumentException("msg must be a String or a Map");
        }
        int msgType = o.msgType != null ? o.msgType : structured ? 1 : 0;
        List<String[]> params = Http.pairs(target);
        params.addAll(Http.pairs("msg_type", Integer.toString(msgType), "msg", structured ? Json.write(msg) : (String) msg,
                "push_time", o.pushTime, "expires_time", text(o.expiresTime), "job_id", text(o.jobId),
                "online", text(o.online), "idempotency_key", o.idempotencyKey));
        return number(Http.restResult(post(path, params, true)).get("msg_id"));
    }

    /**
     * /push/batch: up to 1,000 pushes in one call, each a Map of /push/terminal's fields (terminal_ids as a
     * comma list, msg_type, msg, and optionally expires_time, job_id, online); returns their msg_ids in order.
     * An invalid entry refuses the whole batch (the exception's reason names its index) and sends nothing.
     */
    public List<Long> pushBatch(List<Map<String, Object>> messages) throws HiPushException {
        Object ids = Http.restResult(post("/push/batch", Http.pairs("messages", Json.write(messages)), true))
                .get("msg_ids");
        List<Long> msgIds = new ArrayList<Long>();
        for (Object id : (List<?>) ids) {
            msgIds.add(number(id));
        }
        return msgIds;
    }

    /** /manager/query_msg_status: one row per push of the message (msg_id, status, send_time, target_num, ...). */
    @SuppressWarnings("unchecked")
    public List<Map<String, Object>> queryMsgStatus(long msgId) throws HiPushException {
        Object data = rest("/manager/query_msg_status", "msg_id", Long.toString(msgId)).get("data");
        return data == null ? Collections.<Map<String, Object>>emptyList() : (List<Map<String, Object>>) data;
    }

    /** /manager/query_tag_msgs: the answer (total_num, data); rangeStart/rangeEnd like push_time, or null. */
    public Map<String, Object> queryTagMsgs(String tag, int start, int limit, String rangeStart, String rangeEnd)
            throws HiPushException {
        return rest("/manager/query_tag_msgs", "tag", tag, "start", Integer.toString(start), "limit",
                Integer.toString(limit), "range_start", rangeStart, "range_end", rangeEnd);
    }

    /** /manager/query_tags: the answer (total_num, data: [{id, tag, info, create_time}]). */
    public Map<String, Object> queryTags(int start, int limit) throws HiPushException {
        return rest("/manager/query_tags", "start", Integer.toString(start), "limit", Integer.toString(limit));
    }

    /** /manager/create_tag (sets the info of a tag that exists); info may be null. */
    public void createTag(String tag, String info) throws HiPushException {
        rest("/manager/create_tag", "tag", tag, "info", info);
    }

    /** /manager/del_tag. */
    public void delTag(String tag) throws HiPushException {
        rest("/manager/del_tag", "tag", tag);
    }

    /** /manager/terminal_add_tag: subscribes the clients to the tag. */
    public void terminalAddTag(String tag, List<String> terminalIds) throws HiPushException {
        rest("/manager/terminal_add_tag", "tag", tag, "terminal_ids", commaList(terminalIds, "terminalIds"));
    }

    /** /manager/terminal_del_tag: unsubscribes the clients from the tag. */
    public void terminalDelTag(String tag, List<String> terminalIds) throws HiPushException {
        rest("/manager/terminal_del_tag", "tag", tag, "terminal_ids", commaList(terminalIds, "terminalIds"));
    }

    /** /manager/terminal_num_with_tag: how many clients the tag has. */
    public long terminalNumWithTag(String tag) throws HiPushException {
        return number(rest("/manager/terminal_num_with_tag", "tag", tag).get("num"));
    }

    /** /manager/query_timers: the answer (total_num, data) of timed pushes neither fired nor cancelled. */
    public Map<String, Object> queryTimers(int start, int limit) throws HiPushException {
        return rest("/manager/query_timers", "start", Integer.toString(start), "limit", Integer.toString(limit));
    }

    /** /manager/cancel_timer: the timed push of the message never fires. */
    public void cancelTimer(long msgId) throws HiPushException {
        rest("/manager/cancel_timer", "msg_id", Long.toString(msgId));
    }

    /** /manager/query_terminal: one terminal (client) and its live state. */
    public Map<String, Object> queryTerminal(String terminalId) throws HiPushException {
        return Http.asMap(rest("/manager/query_terminal", "terminal_id", terminalId).get("data"));
    }

    /** /manager/query_terminals: the answer (total_num, data); tag, org, terminalType may be null. */
    public Map<String, Object> queryTerminals(int start, int limit, String tag, String org, String terminalType)
            throws HiPushException {
        return rest("/manager/query_terminals", "start", Integer.toString(start), "limit", Integer.toString(limit),
                "tag", tag, "org", org, "terminal_type", terminalType);
    }

    /**
     * /manager/update_terminal: sets the given fields (terminal_type, address, org, lat, lng; "" clears org,
     * address, or with both lat and lng the location); returns the terminal as it is now.
     */
    public Map<String, Object> updateTerminal(String terminalId, Map<String, String> fields) throws HiPushException {
        List<String[]> params = Http.pairs("terminal_id", terminalId);
        for (Map.Entry<String, String> field : fields.entrySet()) {
            params.add(new String[] {field.getKey(), field.getValue()});
        }
        return Http.asMap(Http.restResult(post("/manager/update_terminal", params, true)).get("data"));
    }

    /** /manager/del_terminal: deletes the terminals with their tags, tokens and waiting messages. */
    public void delTerminal(List<String> terminalIds) throws HiPushException {
        rest("/manager/del_terminal", "terminal_ids", commaList(terminalIds, "terminalIds"));
    }

    // ------------------------------------------------ helpers

    private static List<String[]> withoutNulls(List<String[]> params) {
        List<String[]> pairs = new ArrayList<String[]>();
        for (String[] pair : params) {
            if (pair[1] != null) {
                pairs.add(pair);
            }
        }
        return pairs;
    }

    private static String commaList(List<String> values, String what) {
        if (values == null || values.isEmpty()) {
            throw new IllegalArgumentException(what + " must not be empty");
        }
        StringBuilder out = new StringBuilder();
        for (String value : values) {
            out.append(out.length() > 0 ? "," : "").append(value);
        }
        return out.toString();
    }

    /** A coordinate as plain decimal text (Double.toString would write 1.0E-5). */
    private static String decimal(double value) {
        return java.math.BigDecimal.valueOf(value).toPlainString();
    }

    private static String text(Object value) {
        return value == null ? null : value.toString();
    }

    private static long number(Object value) throws HiPushException {
        if (value instanceof Number) {
            return ((Number) value).longValue();
        }
        try {
            return Long.parseLong(String.valueOf(value));
        } catch (NumberFormatException e) {
            throw new HiPushException(HiPushException.INTERNAL, "unexpected answer: " + value, 200, 0);
        }
    }
}
