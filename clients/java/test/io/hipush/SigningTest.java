package io.hipush;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;

/** Signatures and JSON as the server and the Python kit make them (vectors from hipush_client.protocol). */
class SigningTest {
    private static List<String[]> params() {
        List<String[]> pairs = new ArrayList<String[]>();
        pairs.add(new String[] {"app_key", "k1"});
        pairs.add(new String[] {"msg", "h\u00e9llo & b=2 ~*"});
        pairs.add(new String[] {"client_id", "b"});
        pairs.add(new String[] {"client_id", "a"});
        pairs.add(new String[] {"appkey", "x"});
        pairs.add(new String[] {"sign", "zz"});
        return pairs;
    }

    @Test
    void md5SignsTheSortedRawParameters() {
        assertEquals("69717190ad9cae8086b027d09690a2bc", Signing.md5Sign(params(), "s3cret"));
    }

    @Test
    void hmacSignsThePathAndTheEncodedParameters() {
        assertEquals("/push/terminal\napp_key=k1&app_key=x&client_id=b&client_id=a&msg=h%C3%A9llo%20%26%20b%3D2%20~%2A",
                Signing.hmacCanonical("/push/terminal", params()));
        assertEquals("c25e1ab1f02e9add72e4be6df4030f35c2b735b7d61be364ec367a0119e1bbc9",
                Signing.hmacSign("/push/terminal", params(), "s3cret"));
    }

    @Test
    void base64OfBasicCredentials() {
        assertEquals("a2V5OnNlY3JldA==", Signing.base64("key:secret".getBytes(Signing.UTF8)));
        assertEquals("YQ==", Signing.base64("a".getBytes(Signing.UTF8)));
    }

    @Test
    void jsonWritesCompactSortedAndReadsItBack() {
        Map<String, Object> value = new LinkedHashMap<String, Object>();
        value.put("title", "T");
        value.put("b", Arrays.asList(1L, 2.5, true, null));
        value.put("\u00e9", "\"q\"\n");
        String text = Json.write(value);
        assertEquals("{\"b\":[1,2.5,true,null],\"title\":\"T\",\"\u00e9\":\"\\\"q\\\"\\n\"}", text);
        assertEquals(value, Json.parse(text));
        assertEquals(Arrays.asList(-12L, 1.5e3, "\u00e9\u4e2d"), Json.parse(" [-12, 1.5e3, \"\\u00e9\u4e2d\"] "));
        assertThrows(IllegalArgumentException.class, () -> Json.parse("{\"a\":1,}"));
        assertThrows(IllegalArgumentException.class, () -> Json.parse("[1] 2"));
    }
}
