package io.hipush;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** One HTTP exchange through HttpURLConnection, and how answers and failures look (not a public API). */
final class Http {
    /** What came back: status, body text, Retry-After seconds (0: none). */
    static final class Answer {
        final int status;
        final String body;
        final int retryAfter;

        Answer(int status, String body, int retryAfter) {
            this.status = status;
            this.body = body;
            this.retryAfter = retryAfter;
        }
    }

    /** Told the connection before it is used, so that another thread can abort it (disconnect()). */
    interface Watcher {
        void opened(HttpURLConnection connection);
    }

    private Http() {
    }

    /**
     * GET (form = null: {@code url} carries the query) or POST of a form body. Throws HiPushException with
     * code 0 when no answer came; an answer of any status is returned.
     */
    static Answer exchange(String url, String form, String authorization, int connectMs, int readMs,
                           Watcher watcher) throws HiPushException {
        HttpURLConnection connection = null;
        try {
            connection = open(url, "application/json", form, authorization, connectMs, readMs, watcher);
            return answerOf(connection, connection.getResponseCode());
        } catch (IOException | RuntimeException e) {  // RuntimeException: e.g. a malformed server address
            throw noAnswer(url, e);
        } finally {
            if (connection != null) {
                connection.disconnect();
            }
        }
    }

    /**
     * GET of a text/event-stream: the connection once it answered 200, for the caller to read and to disconnect;
     * any other answer is thrown as the failure it carries, no answer as a HiPushException with code 0.
     */
    static HttpURLConnection openStream(String url, int connectMs, int readMs, Watcher watcher) throws HiPushException {
        HttpURLConnection connection = null;
        boolean opened = false;
        try {
            connection = open(url, "text/event-stream", null, null, connectMs, readMs, watcher);
            int status = connection.getResponseCode();
            if (status != 200) {
                Answer answer = answerOf(connection, status);
                throw errorOf(answer, parse(answer.body));
            }
            opened = true;
            return connection;
        } catch (IOException | RuntimeException e) {
            throw noAnswer(url, e);
        } finally {
            if (connection != null && !opened) {
                connection.disconnect();
            }
        }
    }

    /** The failure of a request that got no (complete) answer: code 0, the cause attached. */
    static HiPushException noAnswer(String url, Exception e) {
        String what = e instanceof IOException
                ? e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage()) : e.toString();
        return new HiPushException("no answer from " + where(url) + " (" + what + ")", e);
    }

    /** The request sent (its form body too), up to the answer. */
    private static HttpURLConnection open(String url, String accept, String form, String authorization, int connectMs,
                                          int readMs, Watcher watcher) throws IOException {
        HttpURLConnection connection = (HttpURLConnection) new URL(url).openConnection();
        connection.setConnectTimeout(connectMs);
        connection.setReadTimeout(readMs);
        connection.setUseCaches(false);
        connection.setInstanceFollowRedirects(false);
        connection.setRequestProperty("Accept", accept);
        if (authorization != null) {
            connection.setRequestProperty("Authorization", authorization);
        }
        if (watcher != null) {
            watcher.opened(connection);
        }
        if (form != null) {
            byte[] body = form.getBytes(Signing.UTF8);
            connection.setRequestMethod("POST");
            connection.setDoOutput(true);
            connection.setFixedLengthStreamingMode(body.length);
            connection.setRequestProperty("Content-Type", "application/x-www-form-urlencoded; charset=utf-8");
            OutputStream out = connection.getOutputStream();
            try {
                out.write(body);
            } finally {
                out.close();
            }
        }
        return connection;
    }

    private static Answer answerOf(HttpURLConnection connection, int status) throws IOException {
        InputStream in = status >= 400 ? connection.getErrorStream() : connection.getInputStream();
        return new Answer(status, read(in), retryAfterOf(connection.getHeaderField("Retry-After")));
    }

    /** R of a legacy answer {"ok": true, "result": R}, else the failure. */
    static Object legacyResult(Answer answer) throws HiPushException {
        Object body = parse(answer.body);
        if (answer.status == 200 && body instanceof Map && Boolean.TRUE.equals(((Map<?, ?>) body).get("ok"))) {
            return ((Map<?, ?>) body).get("result");
        }
        throw errorOf(answer, body);
    }

    /** The body of a REST answer {"status": 1, ...}, else the failure. */
    @SuppressWarnings("unchecked")
    static Map<String, Object> restResult(Answer answer) throws HiPushException {
        Object body = parse(answer.body);
        if (answer.status == 200 && body instanceof Map && Long.valueOf(1).equals(((Map<?, ?>) body).get("status"))) {
            return (Map<String, Object>) body;
        }
        throw errorOf(answer, body);
    }

    /** The failure of an answer, in either envelope (or none: a proxy's error page). */
    static HiPushException errorOf(Answer answer, Object body) {
        Object code = null;
        Object reason = null;
        if (body instanceof Map) {
            Map<?, ?> map = (Map<?, ?>) body;
            if (map.containsKey("error_code")) {  // REST: {"status": 0, "error_code": CODE, "error": "reason"}
                code = map.get("error_code");
                reason = map.get("error");
            } else if (map.get("error") instanceof Long) {  // legacy: {"error": CODE, "reason": "..."}
                code = map.get("error");
                reason = map.get("reason");
            }
        }
        int number = code instanceof Number ? ((Number) code).intValue() : HiPushException.codeOfStatus(answer.status);
        String text = reason instanceof String && !((String) reason).isEmpty() ? (String) reason : null;
        if (text == null) {
            String raw = answer.body == null ? "" : answer.body.trim();
            text = raw.isEmpty() ? "HTTP " + answer.status : raw.substring(0, Math.min(200, raw.length()));
        }
        return new HiPushException(number, text, answer.status, answer.retryAfter);
    }

    /** (name, value) pairs from name, value, name, value, ... */
    static List<String[]> pairs(String... nameValues) {
        List<String[]> pairs = new ArrayList<String[]>();
        for (int i = 0; i < nameValues.length; i += 2) {
            pairs.add(new String[] {nameValues[i], nameValues[i + 1]});
        }
        return pairs;
    }

    /** A JSON object of an answer, else the failure of an answer the server would not give. */
    @SuppressWarnings("unchecked")
    static Map<String, Object> asMap(Object value) throws HiPushException {
        if (value instanceof Map) {
            return (Map<String, Object>) value;
        }
        throw new HiPushException(HiPushException.INTERNAL, "unexpected answer: " + value, 200, 0);
    }

    /** "http://host" from whatever the user gave ("host:8080", "http://host/", ...). */
    static String baseUrl(String server) {
        String base = server.trim();
        while (base.endsWith("/")) {
            base = base.substring(0, base.length() - 1);
        }
        return base.contains("://") ? base : "http://" + base;
    }

    private static Object parse(String text) {
        try {
            return text == null || text.isEmpty() ? null : Json.parse(text);
        } catch (IllegalArgumentException notJson) {
            return null;
        }
    }

    private static String read(InputStream in) throws IOException {
        if (in == null) {
            return "";
        }
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buffer = new byte[8192];
            int n;
            while ((n = in.read(buffer)) > 0) {
                out.write(buffer, 0, n);
            }
            return new String(out.toByteArray(), Signing.UTF8);
        } finally {
            in.close();
        }
    }

    private static int retryAfterOf(String value) {
        try {
            return value == null ? 0 : Math.max(0, Integer.parseInt(value.trim()));
        } catch (NumberFormatException e) {
            return 0;  // an HTTP date: not sent by hipush
        }
    }

    /** Scheme, host and path of a URL: never the query (tokens, signatures). */
    private static String where(String url) {
        int query = url.indexOf('?');
        return query < 0 ? url : url.substring(0, query);
    }
}
