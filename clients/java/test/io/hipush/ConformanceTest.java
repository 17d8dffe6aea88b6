package io.hipush;

import static io.hipush.LiveServer.admin;
import static io.hipush.LiveServer.connect;
import static io.hipush.LiveServer.waitFor;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URL;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.hipush.LiveServer.Inbox;

/**
 * The client conformance scenarios of tests/conformance.py (one method each, named in camelCase), over the long
 * poll; SseConformanceTest runs them over the SSE stream.
 */
class ConformanceTest {
    @BeforeAll
    static void live() {
        LiveServer.require();
    }

    HiPushClient.Transport transport() {
        return HiPushClient.Transport.POLL;
    }

    /** LiveServer.client() over this class's transport (a device of its own per transport). */
    HiPushClient.Builder client(String server, String deviceId) {
        return LiveServer.client(server, deviceId + "-" + transport().name().toLowerCase()).transport(transport());
    }

    @Test
    void connectAndReceive() throws Exception {
        HiPushClient client = client(LiveServer.SERVER, "java-conf-receive").build();
        assertEquals(HiPushClient.State.DISCONNECTED, client.state());
        assertEquals(transport(), client.transport());
        Inbox inbox = connect(client);
        assertEquals(HiPushClient.State.CONNECTED, client.state());
        long msgId = admin(LiveServer.SERVER).pushTerminal(Collections.singletonList(client.clientId()), "hello");
        HiPushMessage got = inbox.take(1).get(0);
        assertEquals(Arrays.asList(msgId, 0, "hello"), Arrays.<Object>asList(got.msgId(), got.msgType(), got.content()));
        client.disconnect();
        assertEquals(HiPushClient.State.DISCONNECTED, client.state());
    }

    @Test
    void ackRemovesTheMessageFromTheServer() throws Exception {
        HiPushClient client = client(LiveServer.SERVER, "java-conf-ack").build();
        Inbox inbox = connect(client);
        final HiPushAdmin admin = admin(LiveServer.SERVER);
        final String clientId = client.clientId();
        admin.pushTerminal(Collections.singletonList(clientId), "once");
        assertEquals(Collections.singletonList("once"), inbox.contents(1));
        client.disconnect();  // sends the last acknowledgement
        waitFor("acknowledged", () -> ((Number) admin.queryTerminal(clientId).get("unacked_num")).intValue() == 0);
        assertEquals(0, ((Number) admin.queryTerminal(clientId).get("queued_num")).intValue());
        String token = (String) LiveServer.call("/user/token", "client_id", clientId).get("token");
        assertEquals(Collections.emptyList(),
                LiveServer.call("/comet/poll", "client_id", clientId, "token", token, "timeout", "0").get("messages"));
    }

    @Test
    void aMessageDeliveredAgainAfterALostAckIsShownOnce() throws Exception {
        AckDroppingProxy proxy = new AckDroppingProxy(LiveServer.SERVER);
        try {
            HiPushClient client = client(proxy.base, "java-conf-dedupe").discover(false).build();
            Inbox inbox = connect(client);
            HiPushAdmin admin = admin(LiveServer.SERVER);
            admin.pushTerminal(Collections.singletonList(client.clientId()), "first");
            assertEquals(Collections.singletonList("first"), inbox.contents(1));
            waitFor("a delivery again", () -> client.duplicates() >= 1);
            admin.pushTerminal(Collections.singletonList(client.clientId()), "second");
            assertEquals(Collections.singletonList("second"), inbox.contents(1));
            List<Long> delivered = new ArrayList<Long>();
            for (List<Long> answer : proxy.answers) {
                delivered.addAll(answer);
            }
            assertTrue(proxy.droppedAck != null && delivered.size() > new HashSet<Long>(delivered).size(),
                    "\"first\" came twice: " + proxy.answers);
            assertEquals(2, client.received());
            client.disconnect();
        } finally {
            proxy.stop();
        }
    }

    @Test
    void aRevokedTokenIsReplacedAndReceivingGoesOn() throws Exception {
        HiPushClient client = client(LiveServer.SERVER, "java-conf-revoke").build();
        Inbox inbox = connect(client);
        HiPushAdmin admin = admin(LiveServer.SERVER);
        List<String> to = Collections.singletonList(client.clientId());
        admin.pushTerminal(to, "before");
        assertEquals(Collections.singletonList("before"), inbox.contents(1));
        admin.revoke(client.clientId());
        admin.pushTerminal(to, "after");
        waitFor("a poll answered 401", () -> {
            for (HiPushException error : inbox.errors) {
                if (error.httpStatus() == 401 && error.code() == HiPushException.AUTH_FAILED) {
                    return true;
                }
            }
            return false;
        });
        admin.pushTerminal(to, "later");
        List<String> got = new ArrayList<String>(inbox.contents(2));
        assertEquals(Arrays.asList("after", "later"), got);
        client.disconnect();
    }

    @Test
    void backoffWhileTheServerIsDownAndResumeAfter() throws Exception {
        HiPushClient client = client(LiveServer.OWN_SERVER, "java-conf-backoff").discover(false).build();
        Inbox inbox = connect(client);
        try {
            HiPushAdmin admin = admin(LiveServer.OWN_SERVER);
            admin.pushTerminal(Collections.singletonList(client.clientId()), "before");
            assertEquals(Collections.singletonList("before"), inbox.contents(1));
            LiveServer.control("stop");
            int down = inbox.errorTimes.size();
            waitFor("six failures while down", () -> inbox.errorTimes.size() >= down + 6);
            assertEquals(HiPushClient.State.RECONNECTING, client.state());
            assertTrue(inbox.disconnects.size() >= 1, "onDisconnected was called");
            for (int n = 1; n < 6; n++) {
                // jittered exponential backoff: the n-th wait is at least half of min(cap, base * 2^(n-1))
                double gapMs = (inbox.errorTimes.get(down + n) - inbox.errorTimes.get(down + n - 1)) / 1e6;
                double floorMs = Math.min(500, 50 * Math.pow(2, n - 1)) / 2;
                assertTrue(gapMs >= floorMs, "wait " + n + " was " + gapMs + " ms, less than " + floorMs);
            }
            LiveServer.control("start");
            admin.pushTerminal(Collections.singletonList(client.clientId()), "after");
            assertEquals(Collections.singletonList("after"), inbox.contents(1));
            assertEquals(HiPushClient.State.CONNECTED, client.state());
            assertTrue(client.reconnects() >= 1);
        } finally {
            client.disconnect();
        }
    }

    @Test
    void aNotificationCarriesItsFields() throws Exception {
        HiPushClient client = client(LiveServer.SERVER, "java-conf-notify").build();
        Inbox inbox = connect(client);
        Map<String, Object> fields = new LinkedHashMap<String, Object>();
        fields.put("title", "Goal");
        fields.put("body", "2:1");
        fields.put("url", "https://example.com/m/1");
        fields.put("image", "https://example.com/i.png");
        fields.put("extras", Collections.singletonMap("match", 1L));
        admin(LiveServer.SERVER).pushTerminal(Collections.singletonList(client.clientId()), fields, null);
        HiPushMessage got = inbox.take(1).get(0);
        assertEquals(1, got.msgType());
        assertTrue(got.isNotification());
        assertEquals(Arrays.asList("Goal", "2:1", "https://example.com/m/1"), Arrays.asList(got.title(), got.body(), got.url()));
        assertEquals(fields, got.fields());
        assertEquals(fields, Json.parse(got.content()));
        client.disconnect();
    }

    /**
     * Forwards requests to a server; drops the first acknowledgement, as if it were lost with its connection, so
     * that the server delivers those messages again: the ack of the first poll carrying one (the poll goes
     * without it), or the first POST /comet/ack (answered OK unsent; the stream is cut, so that the next one
     * hands out again what is in flight). Records the delivery ids of every poll answer and stream event.
     */
    static final class AckDroppingProxy {
        final String base;
        final List<List<Long>> answers = new CopyOnWriteArrayList<List<Long>>();
        volatile String droppedAck;
        private final HttpServer http;
        private final String target;
        private volatile Socket stream;  // the upstream connection of the stream under way

        AckDroppingProxy(String target) throws IOException {
            this.target = target;
            http = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
            http.setExecutor(Executors.newCachedThreadPool());  // long polls park side by side
            http.createContext("/", this::forward);
            http.start();
            base = "http://127.0.0.1:" + http.getAddress().getPort();
        }

        void stop() {
            http.stop(0);
        }

        private synchronized String dropFirstAck(String query) {
            if (droppedAck != null || query == null) {
                return query;
            }
            List<String> kept = new ArrayList<String>();
            for (String part : query.split("&")) {
                if (part.startsWith("ack=")) {
                    droppedAck = part.substring(4);
                } else {
                    kept.add(part);
                }
            }
            return String.join("&", kept);
        }

        @SuppressWarnings("unchecked")
        private void forward(HttpExchange exchange) throws IOException {
            String path = exchange.getRequestURI().getRawPath();
            String query = exchange.getRequestURI().getRawQuery();
            if (path.equals("/comet/stream")) {
                forwardStream(exchange, path + "?" + query);
                return;
            }
            byte[] form = readAll(exchange.getRequestBody());
            String formText = new String(form, "UTF-8");
            boolean poll = path.equals("/comet/poll");
            if (poll) {
                query = dropFirstAck(query);
            } else if (path.equals("/comet/ack") && !dropFirstAck(formText).equals(formText)) {
                Socket cut = stream;
                if (cut != null) {
                    cut.close();
                }
                reply(exchange, 200, "{\"ok\":true,\"result\":\"OK\"}".getBytes("UTF-8"));
                return;
            }
            HttpURLConnection upstream = (HttpURLConnection) new URL(target + path + (query == null ? "" : "?" + query))
                    .openConnection();
            upstream.setReadTimeout(90000);
            if (exchange.getRequestMethod().equals("POST")) {
                upstream.setDoOutput(true);
                upstream.setRequestProperty("Content-Type", "application/x-www-form-urlencoded");
                upstream.getOutputStream().write(form);
            }
            int status = upstream.getResponseCode();
            ByteArrayOutputStream body = new ByteArrayOutputStream();
            body.write(readAll(status >= 400 ? upstream.getErrorStream() : upstream.getInputStream()));
            if (poll && status == 200) {
                Map<String, Object> result = (Map<String, Object>) ((Map<String, Object>) Json.parse(
                        new String(body.toByteArray(), "UTF-8"))).get("result");
                List<Long> ids = new ArrayList<Long>();
                for (Object message : (List<Object>) result.get("messages")) {
                    ids.add((Long) ((Map<String, Object>) message).get("id"));
                }
                answers.add(ids);
            }
            reply(exchange, status, body.toByteArray());
        }

        /** A stream through a socket of its own (HTTP/1.0: the body as it comes), which an ack can cut. */
        private void forwardStream(HttpExchange exchange, String pathAndQuery) throws IOException {
            URL url = new URL(target);
            try (Socket upstream = new Socket(url.getHost(), url.getPort())) {
                stream = upstream;
                upstream.getOutputStream().write(("GET " + pathAndQuery + " HTTP/1.0\r\nHost: " + url.getHost()
                        + "\r\nAccept: text/event-stream\r\n\r\n").getBytes("UTF-8"));
                InputStream in = upstream.getInputStream();
                StringBuilder head = new StringBuilder();
                while (!head.toString().endsWith("\r\n\r\n")) {
                    int c = in.read();
                    if (c < 0) {
                        throw new IOException("no answer head");
                    }
                    head.append((char) c);
                }
                exchange.getResponseHeaders().set("Content-Type", "text/event-stream");
                exchange.sendResponseHeaders(Integer.parseInt(head.toString().split(" ")[1]), 0);
                OutputStream out = exchange.getResponseBody();
                StringBuilder line = new StringBuilder();
                byte[] buffer = new byte[8192];
                for (int n; (n = in.read(buffer)) > 0; ) {
                    for (char c : new String(buffer, 0, n, "UTF-8").toCharArray()) {  // only "id:" lines count
                        if (c != '\n') {
                            line.append(c);
                        } else if (line.toString().startsWith("id: ")) {
                            answers.add(Collections.singletonList(Long.valueOf(line.substring(4))));
                            line.setLength(0);
                        } else {
                            line.setLength(0);
                        }
                    }
                    out.write(buffer, 0, n);
                    out.flush();
                }
                out.close();
            }
        }

        private static byte[] readAll(InputStream in) throws IOException {
            ByteArrayOutputStream body = new ByteArrayOutputStream();
            byte[] buffer = new byte[8192];
            for (int n; in != null && (n = in.read(buffer)) > 0; ) {
                body.write(buffer, 0, n);
            }
            return body.toByteArray();
        }

        private static void reply(HttpExchange exchange, int status, byte[] body) throws IOException {
            exchange.getResponseHeaders().set("Content-Type", "application/json");
            exchange.sendResponseHeaders(status, body.length);
            OutputStream out = exchange.getResponseBody();
            out.write(body);
            out.close();
        }
    }
}
