package io.hipush;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Assumptions;

/**
 * The real hipush that tests/test_java_kit.py started, named by system properties: hipush.server (the
 * session's server), hipush.appKey, hipush.appSecret; hipush.ownServer and hipush.control (a server of the
 * tests' own, stopped and started by GET control + "/stop" and "/start").
 */
final class LiveServer {
    static final String SERVER = System.getProperty("hipush.server");
    static final String APP_KEY = System.getProperty("hipush.appKey");
    static final String APP_SECRET = System.getProperty("hipush.appSecret");
    static final String OWN_SERVER = System.getProperty("hipush.ownServer");
    static final String CONTROL = System.getProperty("hipush.control");
    static final long WAIT_MS = 20000;

    private LiveServer() {
    }

    static void require() {
        Assumptions.assumeTrue(SERVER != null, "run by tests/test_java_kit.py (-Dhipush.server=...)");
    }

    static HiPushAdmin admin(String server) {
        return new HiPushAdmin(server, APP_KEY, APP_SECRET);
    }

    /** A client with short polls and a quick backoff (50 ms to 500 ms), so that tests end quickly. */
    static HiPushClient.Builder client(String server, String deviceId) {
        return HiPushClient.builder(server, APP_KEY).deviceId(deviceId).pollTimeout(2).backoff(50, 500).daemon(true);
    }

    /** Connects the client with an Inbox as its listener and waits until it is connected. */
    static Inbox connect(HiPushClient client) throws InterruptedException {
        Inbox inbox = new Inbox();
        client.setListener(inbox);
        client.connect();
        assertTrue(inbox.connected.await(WAIT_MS, TimeUnit.MILLISECONDS), "connected");
        return inbox;
    }

    /** R of a client call (unsigned GET) of the session's server. */
    static java.util.Map<String, Object> call(String path, String... nameValues) throws HiPushException {
        return Http.asMap(Http.legacyResult(Http.exchange(
                SERVER + path + "?" + Signing.formEncode(Http.pairs(nameValues)), null, null, 5000, 30000, null)));
    }

    /** A new client of the app, registered without polling; returns its id. */
    static String register(String deviceId) throws HiPushException {
        return (String) call("/user/genId", "device_id", deviceId, "app_key", APP_KEY).get("client_id");
    }

    /** GET control + "/stop" or "/start": the own server stops or starts (answers once done). */
    static void control(String action) throws Exception {
        java.net.HttpURLConnection connection =
                (java.net.HttpURLConnection) new java.net.URL(CONTROL + "/" + action).openConnection();
        connection.setReadTimeout(90000);
        assertTrue(connection.getResponseCode() == 200, "control " + action);
        connection.disconnect();
    }

    static void waitFor(String what, Check check) throws Exception {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (!check.ok()) {
            if (System.currentTimeMillis() > deadline) {
                fail("timed out waiting for " + what);
            }
            Thread.sleep(50);
        }
    }

    interface Check {
        boolean ok() throws Exception;
    }

    /** A listener that keeps what it is told. */
    static class Inbox implements HiPushListener {
        final BlockingQueue<HiPushMessage> messages = new LinkedBlockingQueue<HiPushMessage>();
        final List<HiPushException> errors = new CopyOnWriteArrayList<HiPushException>();
        final List<Long> errorTimes = new CopyOnWriteArrayList<Long>();
        final List<String> disconnects = new CopyOnWriteArrayList<String>();
        final CountDownLatch connected = new CountDownLatch(1);
        volatile int connects;

        @Override
        public void onMessage(HiPushMessage message) {
            messages.add(message);
        }

        @Override
        public void onNotification(HiPushMessage message) {
            messages.add(message);
        }

        @Override
        public void onConnected() {
            connects++;
            connected.countDown();
        }

        @Override
        public void onDisconnected(String reason) {
            disconnects.add(reason);
        }

        @Override
        public void onError(HiPushException error) {
            errorTimes.add(System.nanoTime());
            errors.add(error);
        }

        /** The next n messages (fails after WAIT_MS). */
        List<HiPushMessage> take(int n) throws InterruptedException {
            List<HiPushMessage> got = new ArrayList<HiPushMessage>();
            long deadline = System.currentTimeMillis() + WAIT_MS;
            while (got.size() < n) {
                HiPushMessage message = messages.poll(Math.max(1, deadline - System.currentTimeMillis()),
                        TimeUnit.MILLISECONDS);
                if (message == null) {
                    fail("received " + got.size() + " of " + n + " messages; errors: " + errors);
                }
                got.add(message);
            }
            return got;
        }

        List<String> contents(int n) throws InterruptedException {
            List<String> out = new ArrayList<String>();
            for (HiPushMessage message : take(n)) {
                out.add(message.content());
            }
            return out;
        }
    }
}
