package io.hipush;

/**
 * What a {@link HiPushClient} tells its app. Every method runs on the client's receiving thread (but onError of
 * a batched SSE acknowledgement, which runs on its timer's thread) and does nothing by default: implement the
 * ones you need. A message is acknowledged after onMessage /
 * onNotification returns (also when it throws: the exception goes to onError and the message counts as
 * processed), so do the work, or hand it over durably, before returning.
 */
public interface HiPushListener {
    /** A message of msg_type 0 (handed to the app silently). */
    default void onMessage(HiPushMessage message) {
    }

    /** A message of msg_type 1 (to show to the user): title(), body(), url(). */
    default void onNotification(HiPushMessage message) {
    }

    /** A poll succeeded (or a stream opened) after connect() or after a failure. */
    default void onConnected() {
    }

    /** Connected before, and now a poll or stream failed or disconnect() was called. */
    default void onDisconnected(String reason) {
    }

    /** A call failed (the client backs off and tries again), or a listener method threw. */
    default void onError(HiPushException error) {
    }
}
