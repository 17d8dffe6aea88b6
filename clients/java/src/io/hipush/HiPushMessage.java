package io.hipush;

import java.util.Collections;
import java.util.Map;

/**
 * One message a poll handed out (SPEC §5). {@link #id()} is the delivery id (what is acknowledged and
 * deduplicated), {@link #msgId()} the message's id (what /push/* answered). {@link #content()} is the text,
 * or for a notification pushed as a JSON object, that object's JSON; {@link #title()}, {@link #body()} and
 * {@link #url()} read a notification's fields (a plain-text notification has only a body).
 */
public final class HiPushMessage {
    private final long id;
    private final long msgId;
    private final long jobId;
    private final int msgType;
    private final String content;
    private final long ts;
    private final Map<String, Object> fields;

    @SuppressWarnings("unchecked")
    HiPushMessage(Map<String, Object> json) {
        this.id = number(json.get("id"));
        this.msgId = number(json.get("msg_id"));
        this.jobId = number(json.get("job_id"));
        this.msgType = (int) number(json.get("msg_type"));
        this.ts = number(json.get("ts"));
        Object raw = json.get("content");
        Map<String, Object> parsed = null;
        if (raw instanceof Map) {
            parsed = (Map<String, Object>) raw;
            this.content = Json.write(raw);
        } else {
            this.content = raw == null ? "" : raw.toString();
            if (msgType == 1 && this.content.trim().startsWith("{")) {  // a notification's JSON sent as text
                try {
                    Object value = Json.parse(this.content);
                    parsed = value instanceof Map ? (Map<String, Object>) value : null;
                } catch (IllegalArgumentException notJson) {
                    parsed = null;
                }
            }
        }
        this.fields = parsed == null ? Collections.<String, Object>emptyMap() : Collections.unmodifiableMap(parsed);
    }

    /** The delivery id: acknowledged, and dropped when it comes again. */
    public long id() {
        return id;
    }

    /** The message's id, as /push/* answered it (0 when the server did not say). */
    public long msgId() {
        return msgId;
    }

    /** The job the message counts for (0: none). */
    public long jobId() {
        return jobId;
    }

    /** 0 message, 1 notification. */
    public int msgType() {
        return msgType;
    }

    public boolean isNotification() {
        return msgType == 1;
    }

    /** The text, or a notification's JSON. */
    public String content() {
        return content;
    }

    /** When the server queued it, unix milliseconds (0: unknown). */
    public long ts() {
        return ts;
    }

    /** A notification's title; null when it has none. */
    public String title() {
        return text("title");
    }

    /** A notification's body; the whole content for a plain-text one. */
    public String body() {
        return fields.isEmpty() ? content : text("body");
    }

    /** The URL a notification opens; null when it has none. */
    public String url() {
        return text("url");
    }

    /** Every field of a notification pushed as a JSON object (title, body, image, sound, url, extras, ...). */
    public Map<String, Object> fields() {
        return fields;
    }

    private String text(String name) {
        Object value = fields.get(name);
        return value == null ? null : value.toString();
    }

    private static long number(Object value) {
        return value instanceof Number ? ((Number) value).longValue() : 0;
    }

    @Override
    public String toString() {
        return "HiPushMessage{id=" + id + ", msgId=" + msgId + ", jobId=" + jobId + ", msgType=" + msgType
                + ", content=" + content + "}";
    }
}
