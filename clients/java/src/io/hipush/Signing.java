package io.hipush;

import java.io.UnsupportedEncodingException;
import java.nio.charset.Charset;
import java.security.InvalidKeyException;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The signatures of admin calls (SPEC §3, §6), as clients/python/hipush_client/protocol.py makes them.
 *
 * <p>MD5 (the seed's): every parameter but {@code sign} ({@code appkey} read as {@code app_key}), stably
 * sorted by name, joined raw as name=value with '&amp;', the app secret appended, MD5 in lowercase hex.
 * HMAC-SHA256: lowercase hex HMAC(app secret, path + "\n" + the same pairs with every name and value
 * percent-encoded (RFC 3986: only A-Z a-z 0-9 - . _ ~ stay as they are)).
 */
public final class Signing {
    static final Charset UTF8 = Charset.forName("UTF-8");
    private static final char[] HEX = "0123456789abcdef".toCharArray();
    private static final char[] UPPER_HEX = "0123456789ABCDEF".toCharArray();

    private Signing() {
    }

    /** The seed's MD5 signature of (name, value) pairs. */
    public static String md5Sign(List<String[]> params, String secret) {
        StringBuilder canonical = new StringBuilder();
        for (String[] pair : signedPairs(params)) {
            if (canonical.length() > 0) {
                canonical.append('&');
            }
            canonical.append(pair[0]).append('=').append(pair[1]);
        }
        canonical.append(secret);
        try {
            return hex(MessageDigest.getInstance("MD5").digest(canonical.toString().getBytes(UTF8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The canonical string an HMAC-SHA256 signature covers: path + "\n" + encoded sorted pairs. */
    public static String hmacCanonical(String path, List<String[]> params) {
        StringBuilder canonical = new StringBuilder(path).append('\n');
        boolean first = true;
        for (String[] pair : signedPairs(params)) {
            if (!first) {
                canonical.append('&');
            }
            first = false;
            canonical.append(percentEncode(pair[0])).append('=').append(percentEncode(pair[1]));
        }
        return canonical.toString();
    }

    /** The HMAC-SHA256 signature of a call of {@code path} ("/push/terminal": no host, no query). */
    public static String hmacSign(String path, List<String[]> params, String secret) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(secret.getBytes(UTF8), "HmacSHA256"));
            return hex(mac.doFinal(hmacCanonical(path, params).getBytes(UTF8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        } catch (InvalidKeyException e) {
            throw new IllegalArgumentException("unusable app secret", e);
        }
    }

    /** RFC 3986 percent-encoding of UTF-8 (as Python's quote(s, safe='')). */
    public static String percentEncode(String s) {
        StringBuilder out = new StringBuilder();
        for (byte b : s.getBytes(UTF8)) {
            int c = b & 0xff;
            if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                    || c == '-' || c == '.' || c == '_' || c == '~') {
                out.append((char) c);
            } else {
                out.append('%').append(UPPER_HEX[c >> 4]).append(UPPER_HEX[c & 15]);
            }
        }
        return out.toString();
    }

    /** application/x-www-form-urlencoded text of (name, value) pairs. */
    static String formEncode(List<String[]> params) {
        StringBuilder out = new StringBuilder();
        try {
            for (String[] pair : params) {
                if (out.length() > 0) {
                    out.append('&');
                }
                out.append(java.net.URLEncoder.encode(pair[0], "UTF-8")).append('=')
                        .append(java.net.URLEncoder.encode(pair[1], "UTF-8"));
            }
        } catch (UnsupportedEncodingException e) {
            throw new IllegalStateException(e);
        }
        return out.toString();
    }

    private static List<String[]> signedPairs(List<String[]> params) {
        List<String[]> pairs = new ArrayList<String[]>();
        for (String[] pair : params) {
            if (!"sign".equals(pair[0])) {
                pairs.add(new String[] {"appkey".equals(pair[0]) ? "app_key" : pair[0], pair[1]});
            }
        }
        Collections.sort(pairs, new Comparator<String[]>() {  // stable: repeated names keep request order
            @Override
            public int compare(String[] a, String[] b) {
                return a[0].compareTo(b[0]);
            }
        });
        return pairs;
    }

    /** Base64 (RFC 4648 with padding): java.util.Base64 needs Android API 26. */
    static String base64(byte[] bytes) {
        String alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < bytes.length; i += 3) {
            int n = (bytes[i] & 0xff) << 16;
            n |= i + 1 < bytes.length ? (bytes[i + 1] & 0xff) << 8 : 0;
            n |= i + 2 < bytes.length ? bytes[i + 2] & 0xff : 0;
            out.append(alphabet.charAt(n >> 18)).append(alphabet.charAt((n >> 12) & 63));
            out.append(i + 1 < bytes.length ? alphabet.charAt((n >> 6) & 63) : '=');
            out.append(i + 2 < bytes.length ? alphabet.charAt(n & 63) : '=');
        }
        return out.toString();
    }

    static String hex(byte[] bytes) {
        char[] out = new char[bytes.length * 2];
        for (int i = 0; i < bytes.length; i++) {
            out[2 * i] = HEX[(bytes[i] >> 4) & 15];
            out[2 * i + 1] = HEX[bytes[i] & 15];
        }
        return new String(out);
    }
}
