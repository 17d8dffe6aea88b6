package io.hipush;

/**
 * A failed call. {@link #code()} is SPEC §7's error code (1024 bad parameter, 1026 not found, 1028
 * authentication, 1029 rate limited, 1031 unavailable, ...), 0 when no answer came at all;
 * {@link #httpStatus()} the answer's HTTP status (0 without an answer); {@link #reason()} the server's
 * explanation; {@link #retryAfter()} the seconds a 429 or 503 asked to wait (0 when it did not say).
 */
public class HiPushException extends Exception {
    private static final long serialVersionUID = 1L;

    public static final int BAD_PARAM = 1024;
    public static final int INTERNAL = 1025;
    public static final int NOT_FOUND = 1026;
    public static final int METHOD_NOT_ALLOWED = 1027;
    public static final int AUTH_FAILED = 1028;
    public static final int RATE_LIMITED = 1029;
    public static final int TOO_LARGE = 1030;
    public static final int UNAVAILABLE = 1031;

    private final int code;
    private final String reason;
    private final int httpStatus;
    private final int retryAfter;

    public HiPushException(int code, String reason, int httpStatus, int retryAfter) {
        super(httpStatus > 0 ? reason + " (error " + code + ", HTTP " + httpStatus + ")" : reason);
        this.code = code;
        this.reason = reason;
        this.httpStatus = httpStatus;
        this.retryAfter = retryAfter;
    }

    /** No answer at all (could not connect, timed out, connection dropped). */
    HiPushException(String reason, Throwable cause) {
        this(0, reason, 0, 0);
        initCause(cause);
    }

    /** SPEC §7's error code; 0 when no answer came. */
    public int code() {
        return code;
    }

    public String reason() {
        return reason;
    }

    /** The HTTP status of the answer; 0 when no answer came. */
    public int httpStatus() {
        return httpStatus;
    }

    /** Seconds the server asked to wait (Retry-After of a 429 or 503); 0 when it did not say. */
    public int retryAfter() {
        return retryAfter;
    }

    /** The error code that comes with an HTTP status (SPEC §7), for answers without a hipush body. */
    static int codeOfStatus(int status) {
        switch (status) {
            case 403: return BAD_PARAM;
            case 500: return INTERNAL;
            case 404: return NOT_FOUND;
            case 405: return METHOD_NOT_ALLOWED;
            case 401: return AUTH_FAILED;
            case 429: return RATE_LIMITED;
            case 413: return TOO_LARGE;
            case 503: return UNAVAILABLE;
            default: return 0;
        }
    }
}
