package io.hipush;

/** The client conformance scenarios of tests/conformance.py over the SSE stream (ConformanceTest: the long poll). */
class SseConformanceTest extends ConformanceTest {
    @Override
    HiPushClient.Transport transport() {
        return HiPushClient.Transport.SSE;
    }
}
