package io.hipush;

/**
 * The optional parameters of a REST push (SPEC §4): {@code new PushOptions().pushTime("2030-01-01 08:00:00")
 * .expiresTime(3600).jobId(job)}. Unset values are left out (the server's defaults apply).
 */
public final class PushOptions {
    Integer msgType;
    String pushTime;
    Long expiresTime;
    Long jobId;
    Boolean online;
    String idempotencyKey;

    /** 0 message, 1 notification (default: 1 for a Map msg, else 0). */
    public PushOptions msgType(int msgType) {
        this.msgType = msgType;
        return this;
    }

    /** A timed push: "YYYY-MM-DD HH:MM:SS" (the server's time zone), ISO 8601 with an offset, or unix seconds. */
    public PushOptions pushTime(String pushTime) {
        this.pushTime = pushTime;
        return this;
    }

    /** A timed push at these unix seconds. */
    public PushOptions pushTime(long unixSeconds) {
        this.pushTime = Long.toString(unixSeconds);
        return this;
    }

    /** Seconds from the call until the message expires (default 86400). */
    public PushOptions expiresTime(long seconds) {
        this.expiresTime = seconds;
        return this;
    }

    /** The job the push counts for (from {@link HiPushAdmin#genJob}). */
    public PushOptions jobId(long jobId) {
        this.jobId = jobId;
        return this;
    }

    /** true: only clients online now get it. */
    public PushOptions online(boolean online) {
        this.online = online;
        return this;
    }

    /** 1-64 characters: a repeat within 24 hours answers as the first call did and sends nothing again. */
    public PushOptions idempotencyKey(String key) {
        this.idempotencyKey = key;
        return this;
    }
}
