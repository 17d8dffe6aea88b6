package io.hipush;

import static io.hipush.LiveServer.SERVER;
import static io.hipush.LiveServer.register;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Every HiPushAdmin call against the real server, once per sign method; failures as HiPushException. */
class AdminTest {
    @BeforeAll
    static void live() {
        LiveServer.require();
    }

    private static int number(Object value) {
        return ((Number) value).intValue();
    }

    @ParameterizedTest
    @EnumSource(HiPushAdmin.SignMethod.class)
    void legacyCalls(HiPushAdmin.SignMethod method) throws Exception {
        HiPushAdmin admin = new HiPushAdmin(SERVER, LiveServer.APP_KEY, LiveServer.APP_SECRET, method);
        String alice = register("java-admin-alice-" + method);
        String bob = register("java-admin-bob-" + method);
        long job = admin.genJob("welcome", "demo");
        admin.publishPrivate(job, alice, "hi alice");
        String topic = "java-news-" + method;
        admin.subscribe(topic, Arrays.asList(alice, bob));
        long saved = admin.saveMessage(job, "extra! extra!", 1);
        admin.publishMulti(topic, saved, false);
        admin.unsubscribe(topic, Collections.singletonList(bob));
        Map<String, Object> stats = admin.jobStats(job);
        assertEquals(Arrays.asList(job, "welcome", "demo", 3),
                Arrays.<Object>asList(((Number) stats.get("job_id")).longValue(), stats.get("name"), stats.get("type"),
                        number(stats.get("sent"))));
        String token = admin.clientToken(alice);
        assertFalse(token.isEmpty());
        admin.revoke(alice);
        HiPushException revoked = assertThrows(HiPushException.class,
                () -> LiveServer.call("/comet/poll", "client_id", alice, "token", token, "timeout", "0"));
        assertEquals(401, revoked.httpStatus());
    }

    @ParameterizedTest
    @EnumSource(HiPushAdmin.SignMethod.class)
    void restCalls(HiPushAdmin.SignMethod method) throws Exception {
        HiPushAdmin admin = new HiPushAdmin(SERVER, LiveServer.APP_KEY, LiveServer.APP_SECRET, method);
        String carol = register("java-admin-carol-" + method);
        String tag = "java-tag-" + method;
        admin.createTag(tag, "Java kit");
        admin.terminalAddTag(tag, Collections.singletonList(carol));
        assertEquals(1, admin.terminalNumWithTag(tag));
        long tagged = admin.pushTags(Collections.singletonList(tag), "to the tag", null);
        assertEquals(1, ((Number) admin.queryTagMsgs(tag, 0, 20, null, null).get("total_num")).intValue());
        Map<String, Object> first = new HashMap<String, Object>();
        first.put("terminal_ids", carol);
        first.put("msg_type", 0);
        first.put("msg", "batched 1");
        Map<String, Object> second = new HashMap<String, Object>(first);
        second.put("msg", "batched 2");
        List<Long> batched = admin.pushBatch(Arrays.asList(first, second));
        assertEquals(2, batched.size());
        assertTrue(batched.get(0) < batched.get(1));
        long direct = admin.pushTerminal(Collections.singletonList(carol), "direct");
        List<Map<String, Object>> status = admin.queryMsgStatus(direct);
        assertEquals(1, number(status.get(0).get("target_num")));
        assertTrue(tagged != direct);
        boolean listed = false;
        for (Object row : (List<?>) admin.queryTags(0, 100).get("data")) {
            listed |= tag.equals(((Map<?, ?>) row).get("tag"));
        }
        assertTrue(listed, "the tag is listed");

        long timer = admin.pushAll("later", new PushOptions().pushTime(System.currentTimeMillis() / 1000 + 3600)
                .expiresTime(7200).idempotencyKey("java-timer-" + method + "-" + System.nanoTime()));
        assertTrue(number(admin.queryTimers(0, 100).get("total_num")) >= 1);
        admin.cancelTimer(timer);
        assertEquals(4, number(admin.queryMsgStatus(timer).get(0).get("status")));  // cancelled

        Map<String, String> fields = new LinkedHashMap<String, String>();
        fields.put("org", "java-org-" + method);
        fields.put("lat", "31.23");
        fields.put("lng", "121.47");
        assertEquals("java-org-" + method, admin.updateTerminal(carol, fields).get("org"));
        assertEquals(carol, admin.queryTerminal(carol).get("terminal_id"));
        assertEquals(1, number(admin.queryTerminals(0, 20, tag, null, null).get("total_num")));
        assertTrue(admin.pushOrg(Collections.singletonList("java-org-" + method), null, "to the org", null) > 0);
        assertTrue(admin.pushGeo(31.23, 121.47, 1000, "nearby", null) > 0);

        admin.terminalDelTag(tag, Collections.singletonList(carol));
        assertEquals(0, admin.terminalNumWithTag(tag));
        admin.delTag(tag);
        admin.delTerminal(Collections.singletonList(carol));
        HiPushException gone = assertThrows(HiPushException.class, () -> admin.queryTerminal(carol));
        assertEquals(Arrays.asList(404, HiPushException.NOT_FOUND), Arrays.asList(gone.httpStatus(), gone.code()));
    }

    @Test
    void failuresCarryCodeReasonAndStatus() throws Exception {
        HiPushAdmin admin = LiveServer.admin(SERVER);
        HiPushException missing = assertThrows(HiPushException.class, () -> admin.jobStats(999999999L));
        assertEquals(Arrays.asList(404, 1026), Arrays.asList(missing.httpStatus(), missing.code()));
        assertNotNull(missing.reason());
        HiPushException bad = assertThrows(HiPushException.class,
                () -> admin.pushTerminal(Collections.singletonList("not-a-client-id"), "x"));
        assertEquals(Arrays.asList(403, 1024), Arrays.asList(bad.httpStatus(), bad.code()));
        for (HiPushAdmin.SignMethod method : HiPushAdmin.SignMethod.values()) {
            HiPushAdmin wrong = new HiPushAdmin(SERVER, LiveServer.APP_KEY, "wrong-secret", method);
            HiPushException denied = assertThrows(HiPushException.class, () -> wrong.queryTags(0, 1));
            assertEquals(Arrays.asList(401, 1028), Arrays.asList(denied.httpStatus(), denied.code()));
        }
        HiPushException unreachable = assertThrows(HiPushException.class,
                () -> new HiPushAdmin("http://127.0.0.1:1", "k", "s").genJob("n", "t"));
        assertEquals(Arrays.asList(0, 0), Arrays.asList(unreachable.httpStatus(), unreachable.code()));
    }
}
