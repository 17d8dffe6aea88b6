package io.hipush;

/**
 * What a {@link HiPushClient} tells its app. Every method runs on the client's polling thread and does
 * nothing by default: override the ones you need. A message is acknowledged after onMessage /
 * onNotification returns (also when it throws: the exception goes to onError and the message counts as
 * processed), so do the work, or hand it over durably, before returning.
 */
public abstract class HiPushListener {
    /** A message of msg_type 0 (handed to the app silently). */
    public void onMessage(HiPushMessage message) {
    }

    /** A message of msg_type 1 (to show to the user): title(), body(), url(). */
    public void onNotification(HiPushMessage message) {
    }

    /** A poll succeeded after connect() or after a failure. */
    public void onConnected() {
    }

    /** Connected before, and now a poll failed or disconnect() was called. */
    public void onDisconnected(String reason) {
    }

    /** A call failed (the client backs off and tries again), or a listener method threw. */
    public void onError(HiPushException error) {
    }
}
