package io.hipush;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;

/** Reads the events of a text/event-stream (the parts of the format a hipush stream uses; not a public API). */
final class EventStream {
    /** One event: its type ("message" unless an {@code event:} line named another) and its data. */
    static final class Event {
        final String type;
        final String data;

        Event(String type, String data) {
            this.type = type;
            this.data = data;
        }
    }

    private final BufferedReader reader;

    EventStream(InputStream in) {
        this.reader = new BufferedReader(new InputStreamReader(in, Signing.UTF8));
    }

    /**
     * The next event that has data, blocking until it is complete; null when the stream ended. Comment lines
     * (the heartbeats), {@code retry:} (an EventSource's reconnection delay: this client decides itself) and
     * {@code id:} (a message's data carries its id too) are skipped.
     */
    Event next() throws IOException {
        String type = "message";
        StringBuilder data = null;
        for (String line; (line = reader.readLine()) != null; ) {
            if (line.isEmpty()) {  // the end of an event
                if (data != null) {
                    return new Event(type, data.toString());
                }
                type = "message";
                continue;
            }
            if (line.startsWith(":")) {
                continue;
            }
            int colon = line.indexOf(':');
            String field = colon < 0 ? line : line.substring(0, colon);
            String value = colon < 0 ? "" : line.substring(line.startsWith(" ", colon + 1) ? colon + 2 : colon + 1);
            if (field.equals("event")) {
                type = value;
            } else if (field.equals("data")) {
                data = data == null ? new StringBuilder(value) : data.append('\n').append(value);
            }
        }
        return null;
    }
}
