package io.hipush;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.hipush.LiveServer.Inbox;

/**
 * HiPushClient's protocol rules against scripted stub servers (docs/PROTOCOL.md): what it sends and when, for
 * answers a real server gives only in rare moments (a 503 with Retry-After, a repeated delivery), and how often
 * it acknowledges over SSE.
 */
class ClientBehaviourTest {
    private static final String CLIENT_ID = "0123456789abcdef0123456789abcdef";
    private final List<Stub> stubs = new ArrayList<Stub>();

    /** One request the stub saw. */
    static final class Seen {
        final String path;
        final Map<String, String> params;
        final long nanos = System.nanoTime();

        Seen(String path, Map<String, String> params) {
            this.path = path;
            this.params = params;
        }
    }

    /** Answers a request (the n-th to its path): {status, body, retryAfter seconds or null}; a fourth element
     *  HOLD keeps the answer open after its body, as a stream, until a poll comes (a newer poll ends a stream). */
    interface Script {
        Object[] answer(Seen request, int n);
    }

    private static final Object HOLD = new Object();

    /** An HTTP server that answers every request by a script and records it (query and form parameters). */
    final class Stub {
        final List<Seen> requests = new CopyOnWriteArrayList<Seen>();
        final String base;
        private final HttpServer http;
        private final Map<String, Integer> counts = new HashMap<String, Integer>();
        private volatile CountDownLatch pollCame = new CountDownLatch(1);

        Stub(final Script script) throws IOException {
            http = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
            http.setExecutor(Executors.newCachedThreadPool());
            http.createContext("/", (HttpExchange exchange) -> {
                Map<String, String> params = params(exchange.getRequestURI().getRawQuery());
                params.putAll(params(new String(readAll(exchange.getRequestBody()), "UTF-8")));
                Seen seen = new Seen(exchange.getRequestURI().getPath(), params);
                requests.add(seen);
                Object[] reply;
                synchronized (this) {
                    counts.put(seen.path, counts.containsKey(seen.path) ? counts.get(seen.path) + 1 : 1);
                    reply = script.answer(seen, counts.get(seen.path));
                }
                if (seen.path.equals("/comet/poll")) {
                    pollCame.countDown();
                    pollCame = new CountDownLatch(1);
                }
                byte[] body = ((String) reply[1]).getBytes("UTF-8");
                if (reply[2] != null) {
                    exchange.getResponseHeaders().set("Retry-After", reply[2].toString());
                }
                boolean hold = reply.length > 3 && reply[3] == HOLD;
                exchange.sendResponseHeaders((Integer) reply[0], hold ? 0 : body.length);
                OutputStream out = exchange.getResponseBody();
                out.write(body);
                if (hold) {
                    out.flush();
                    try {
                        pollCame.await();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
                out.close();
            });
            http.start();
            base = "http://127.0.0.1:" + http.getAddress().getPort();
            stubs.add(this);
        }

        List<Seen> polls() {
            return seen("/comet/poll");
        }

        List<Seen> seen(String path) {
            List<Seen> out = new ArrayList<Seen>();
            for (Seen seen : requests) {
                if (seen.path.equals(path)) {
                    out.add(seen);
                }
            }
            return out;
        }
    }

    @AfterEach
    void stopStubs() {
        for (Stub stub : stubs) {
            stub.pollCame.countDown();
            stub.http.stop(0);
        }
    }

    private static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buffer = new byte[8192];
        for (int n; (n = in.read(buffer)) > 0; ) {
            out.write(buffer, 0, n);
        }
        return out.toByteArray();
    }

    private static Map<String, String> params(String query) throws IOException {
        Map<String, String> out = new HashMap<String, String>();
        for (String part : query == null || query.isEmpty() ? new String[0] : query.split("&")) {
            int eq = part.indexOf('=');
            out.put(URLDecoder.decode(part.substring(0, eq), "UTF-8"), URLDecoder.decode(part.substring(eq + 1), "UTF-8"));
        }
        return out;
    }

    private static Object[] ok(String result) {
        return new Object[] {200, "{\"ok\":true,\"result\":" + result + "}", null};
    }

    private static String messages(String... contents) {
        StringBuilder out = new StringBuilder("{\"messages\":[");
        for (int i = 0; i < contents.length; i++) {
            out.append(i > 0 ? "," : "").append(message(contents[i]));
        }
        return out.append("]}").toString();
    }

    /** "ID:TEXT" as a message object. */
    private static String message(String idAndText) {
        String[] parts = idAndText.split(":");
        return "{\"id\":" + parts[0] + ",\"msg_id\":9,\"job_id\":null,\"msg_type\":0,\"content\":\"" + parts[1]
                + "\",\"ts\":1}";
    }

    private static HiPushClient.Builder polling(String base) {
        return HiPushClient.builder(base).clientId(CLIENT_ID).token("t1").discover(false).pollTimeout(1)
                .backoff(50, 500).daemon(true);
    }

    @Test
    void registersFetchesATokenAndPollsTheNodeThatServiceHashNames() throws Exception {
        Stub comet = new Stub((request, n) -> ok(messages()));
        final int cometPort = Integer.parseInt(comet.base.substring(comet.base.lastIndexOf(':') + 1));
        Stub web = new Stub((request, n) -> request.path.equals("/user/genId") ? ok("{\"client_id\":\"" + CLIENT_ID + "\"}")
                : request.path.equals("/user/token") ? ok("{\"client_id\":\"" + CLIENT_ID + "\",\"token\":\"tk\"}")
                : ok("{\"ip\":\"127.0.0.1\",\"port\":" + cometPort + "}"));
        HiPushClient client = HiPushClient.builder(web.base.replace("127.0.0.1", "localhost") + "/", "key")
                .deviceId("dev 1").pollTimeout(1).daemon(true).build();
        LiveServer.connect(client);
        assertEquals(CLIENT_ID, client.clientId());
        assertEquals(Arrays.asList("/user/genId", "/user/token", "/service/hash"),
                Arrays.asList(web.requests.get(0).path, web.requests.get(1).path, web.requests.get(2).path));
        assertEquals(Arrays.asList("dev 1", "key"), Arrays.asList(web.requests.get(0).params.get("device_id"),
                web.requests.get(0).params.get("app_key")));
        Seen first = comet.polls().get(0);
        assertEquals(Arrays.asList(CLIENT_ID, "tk", "0", null), Arrays.asList(first.params.get("client_id"),
                first.params.get("token"), first.params.get("timeout"), first.params.get("ack")));
        LiveServer.waitFor("a long poll", () -> comet.polls().size() >= 2);
        assertEquals("1", comet.polls().get(1).params.get("timeout"));
        client.disconnect();
    }

    @Test
    void dropsRepeatsAndAcknowledgesAfterTheListener() throws Exception {
        Stub stub = new Stub((request, n) -> n == 1 ? ok(messages("5:a")) : n == 2 ? ok(messages("5:a", "6:b"))
                : ok(messages()));
        HiPushClient client = polling(stub.base).build();
        Inbox inbox = LiveServer.connect(client);
        assertEquals(Arrays.asList("a", "b"), inbox.contents(2));
        LiveServer.waitFor("a third poll", () -> stub.polls().size() >= 3);
        assertEquals(Arrays.asList(null, "5", "6"), Arrays.asList(stub.polls().get(0).params.get("ack"),
                stub.polls().get(1).params.get("ack"), stub.polls().get(2).params.get("ack")));
        assertEquals(Arrays.asList(2L, 1L), Arrays.asList(client.received(), client.duplicates()));
        client.disconnect();
        assertTrue(stub.polls().get(stub.polls().size() - 1).params.get("ack") == null
                || "6".equals(stub.polls().get(stub.polls().size() - 1).params.get("ack")));
    }

    @Test
    void waitsAsLongAsA503AsksAndRefetchesTheTokenAfterA401() throws Exception {
        Stub stub = new Stub((request, n) -> n == 1 ? ok(messages())
                : n == 2 ? new Object[] {503, "{\"error\":1031,\"reason\":\"this node is stopping\"}", 1}
                : "t1".equals(request.params.get("token"))
                ? new Object[] {401, "{\"error\":1028,\"reason\":\"bad token\"}", null} : ok(messages()));
        final List<String> fetched = new CopyOnWriteArrayList<String>();
        HiPushClient client = polling(stub.base).tokenFetcher(clientId -> {
            fetched.add(clientId);
            return "t2";
        }).build();
        Inbox inbox = LiveServer.connect(client);
        LiveServer.waitFor("a poll with the new token", () -> {
            List<Seen> polls = stub.polls();
            return polls.size() >= 4 && "t2".equals(polls.get(3).params.get("token"));
        });
        List<Seen> polls = stub.polls();
        assertTrue((polls.get(2).nanos - polls.get(1).nanos) / 1e6 >= 1000, "waited the Retry-After second");
        assertEquals(Arrays.asList(503, 1031, 1), Arrays.asList(inbox.errors.get(0).httpStatus(),
                inbox.errors.get(0).code(), inbox.errors.get(0).retryAfter()));
        assertEquals(401, inbox.errors.get(1).httpStatus());
        assertEquals(Arrays.asList(CLIENT_ID), fetched);
        assertEquals(Arrays.asList("this node is stopping"), inbox.disconnects);
        LiveServer.waitFor("connected again", () -> client.state() == HiPushClient.State.CONNECTED);
        assertEquals(1, client.reconnects());
        client.disconnect();
        assertEquals(HiPushClient.State.DISCONNECTED, client.state());
    }

    @Test
    void overSseAcknowledgesInBatchesByPostAfterTheListener() throws Exception {
        StringBuilder events = new StringBuilder("retry: 1000\n\n: heartbeat\n\n");
        for (int id = 1; id <= 150; id++) {
            events.append("id: ").append(id).append("\ndata: ").append(message(id + ":m" + id)).append("\n\n");
        }
        events.append("event: missed\ndata: {\"missed\": 3}\n\n");
        String first = events.toString();
        Stub stub = new Stub((request, n) -> request.path.equals("/comet/stream")
                ? new Object[] {200, n == 1 ? first : ": heartbeat\n\n", null, HOLD}
                : request.path.equals("/comet/ack") ? ok("\"OK\"") : ok(messages()));
        HiPushClient client = polling(stub.base).transport(HiPushClient.Transport.SSE).build();
        final List<Long> ackedEarly = new CopyOnWriteArrayList<Long>();  // acknowledged before the listener returned
        Inbox inbox = new Inbox() {
            @Override
            public void onMessage(HiPushMessage message) {
                List<Seen> acks = stub.seen("/comet/ack");
                if (!acks.isEmpty() && Long.parseLong(acks.get(acks.size() - 1).params.get("ack")) >= message.id()) {
                    ackedEarly.add(message.id());
                }
                super.onMessage(message);
            }
        };
        client.setListener(inbox);
        client.connect();
        assertEquals(150, inbox.take(150).size());
        // the last batch goes within a second while the stream stays open
        LiveServer.waitFor("the acknowledgement of all 150", () -> {
            List<Seen> acks = stub.seen("/comet/ack");
            return !acks.isEmpty() && "150".equals(acks.get(acks.size() - 1).params.get("ack"));
        });
        assertEquals(1, stub.seen("/comet/stream").size());
        List<Seen> acks = stub.seen("/comet/ack");
        assertTrue(acks.size() >= 2 && acks.size() <= 15, acks.size() + " acknowledgements");
        long previous = 0;
        for (Seen ack : acks) {
            long id = Long.parseLong(ack.params.get("ack"));
            assertTrue(id > previous, "cumulative, rising: " + id + " after " + previous);
            previous = id;
            assertEquals(Arrays.asList(CLIENT_ID, "t1"),
                    Arrays.asList(ack.params.get("client_id"), ack.params.get("token")));
        }
        Seen stream = stub.seen("/comet/stream").get(0);
        assertEquals(Arrays.asList(CLIENT_ID, "t1"), Arrays.asList(stream.params.get("client_id"), stream.params.get("token")));
        assertEquals(Arrays.asList(150L, 0L, 3L),
                Arrays.asList(client.received(), client.duplicates(), client.missed()));
        assertEquals(new ArrayList<Long>(), ackedEarly);
        client.disconnect();  // its poll ends the stream
        assertEquals(HiPushClient.State.DISCONNECTED, client.state());
        assertEquals(1, stub.polls().size());
    }

    @Test
    void overSseARefusedStreamIsHandledAsARefusedPoll() throws Exception {
        Stub stub = new Stub((request, n) -> !request.path.equals("/comet/stream") ? ok(messages())
                : n == 1 ? new Object[] {503, "{\"error\":1031,\"reason\":\"this node is stopping\"}", 1}
                : "t1".equals(request.params.get("token"))
                ? new Object[] {401, "{\"error\":1028,\"reason\":\"bad token\"}", null}
                : new Object[] {200, "id: 7\ndata: " + message("7:hi") + "\n\n", null, HOLD});
        HiPushClient client = polling(stub.base).transport(HiPushClient.Transport.SSE).tokenFetcher(clientId -> "t2")
                .build();
        Inbox inbox = LiveServer.connect(client);
        assertEquals(Arrays.asList("hi"), inbox.contents(1));
        List<Seen> streams = stub.seen("/comet/stream");
        assertEquals(Arrays.asList("t1", "t1", "t2"), Arrays.asList(streams.get(0).params.get("token"),
                streams.get(1).params.get("token"), streams.get(2).params.get("token")));
        assertTrue((streams.get(1).nanos - streams.get(0).nanos) / 1e6 >= 1000, "waited the Retry-After second");
        assertEquals(Arrays.asList(503, 401),
                Arrays.asList(inbox.errors.get(0).httpStatus(), inbox.errors.get(1).httpStatus()));
        assertEquals(0, client.reconnects());  // never connected before
        client.disconnect();
        List<String> acks = new ArrayList<String>();  // the poll that ended the stream, or the POST after, has it
        for (Seen seen : stub.requests) {
            acks.add(seen.params.get("ack"));
        }
        assertTrue(acks.contains("7"), "acknowledged: " + acks);
    }
}
