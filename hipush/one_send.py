"""One send per answer under gunicorn: gunicorn writes an answer's headers and its body with two sends, which
on a kept-alive connection costs two packets and two wake-ups of the client. Installed in each worker
(gunicorn.conf.py's post_worker_init), a response holds its headers and sends them with its first body bytes,
or at its end when it has none. An SSE stream's events still leave as they are written (its first chunk is
written at once). This replaces corking the socket around each answer: its two setsockopt calls per request
cost ~12 % of a worker's CPU on the stream-acknowledgement path (py-spy, bench/cpu_per_message.py)."""
from gunicorn.http.wsgi import Response

FINAL_CHUNK = b"0\r\n\r\n"


def install() -> None:
    Response.held_headers = b""  # headers not sent yet, until the first body bytes or the answer's end
    Response.send_headers = _hold_headers
    Response._emit_body = _emit_with_headers
    Response.close = _close
    Response.can_sendfile = _no_sendfile


def _hold_headers(self) -> None:
    """gunicorn's send_headers(), held in the response instead of sent."""
    if not self.headers_sent:
        lines = self.default_headers() + ["%s: %s\r\n" % (name, value) for name, value in self.headers]
        self.held_headers = ("%s\r\n" % "".join(lines)).encode("latin-1")
        self.headers_sent = True


def _take_held(self) -> bytes:
    held, self.held_headers = self.held_headers, b""
    return held


def _emit_with_headers(self, data: bytes) -> None:
    if self.chunked:
        data = b"%X\r\n%s\r\n" % (len(data), data)
    self.sock.sendall(_take_held(self) + data)


def _close(self) -> None:
    self.send_headers()
    tail = _take_held(self) + (FINAL_CHUNK if self.chunked else b"")
    if tail:
        self.sock.sendall(tail)


def _no_sendfile(self) -> bool:
    """sendfile() would send the file ahead of the held headers: files go through write() instead."""
    return False
