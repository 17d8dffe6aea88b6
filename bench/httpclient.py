"""A small HTTP/1.1 client over raw sockets, for the load generator (gevent-patched there).

One `Connection` is one keep-alive TCP connection that sends one request at a
time: bodies by Content-Length or chunked, `Connection: close` honoured. It is
deliberately tiny, so that the generator's own cost per request stays low and
is the same for hipush and Nchan.
"""
import socket


class HttpError(Exception):
    """The server answered something that is not HTTP/1.x, or closed the connection mid-answer."""


class Closed(HttpError):
    """The server closed the connection; `empty` when it did so before sending a single byte."""

    def __init__(self, empty: bool):
        super().__init__("connection closed before any answer" if empty else "connection closed mid-answer")
        self.empty = empty


class Connection:
    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock = None
        self.buf = b""
        self.answered = 0  # answers read on the current socket

    def connect(self) -> None:
        self.close()
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.answered = 0

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def request(self, method: str, path: str, headers: str = "", body: bytes = b""):
        """(status, {lower-case header name: value}, body). Retries once, on a fresh connection, when a
        reused keep-alive connection turns out closed before any byte of the answer (the server's idle
        keep-alive timeout), as ordinary HTTP clients do."""
        reused = self.sock is not None and self.answered > 0
        if self.sock is None:
            self.connect()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{headers}"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode("latin-1") + body
        try:
            self.sock.sendall(data)
            return self._read_answer(method)
        except (Closed, BrokenPipeError, ConnectionResetError) as exc:
            if not reused or (isinstance(exc, Closed) and not exc.empty):
                self.close()
                raise
            self.connect()
            self.sock.sendall(data)
            return self._read_answer(method)
        except BaseException:
            self.close()
            raise

    def events(self, method: str, path: str, headers: str = ""):
        """A server-sent event stream: yields, as each piece of it arrives, the (id, data) of the events the
        piece completes (an empty list for a comment line), until the server ends the stream. The body may be
        chunked or run until the server closes. Raises HttpError for an answer that is not a 200. The
        connection is not reused after it."""
        self.connect()
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{headers}\r\n".encode("latin-1"))
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b" ", 2)[1]
        if status != b"200":
            self.close()
            raise HttpError(f"HTTP {status.decode(errors='replace')} instead of an event stream")
        chunked = b"transfer-encoding: chunked" in head.lower()
        text = b""
        while True:
            piece = self._read_chunk() if chunked else self._read_some()
            if not piece:
                self.close()
                return
            *blocks, text = (text + piece).replace(b"\r\n", b"\n").split(b"\n\n")
            found = []
            for block in blocks:
                fields = dict(line.split(b":", 1) for line in block.split(b"\n") if b":" in line
                              and not line.startswith(b":"))
                fields = {name: value[1:] if value.startswith(b" ") else value for name, value in fields.items()}
                if b"data" in fields and b"event" not in fields:
                    found.append((fields.get(b"id", b"").decode(), fields[b"data"]))
            yield found

    def _read_some(self) -> bytes:
        """What has arrived of a body that runs until the server closes (b"" once it has)."""
        if not self.buf:
            try:
                self._fill()
            except Closed:
                return b""
        piece, self.buf = self.buf, b""
        return piece

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed(empty=not self.buf)
        self.buf += chunk

    def _read_answer(self, method: str):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            self.close()
            raise HttpError(f"not an HTTP answer: {lines[0][:80]!r}")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buf) < length:
                self._fill()
            body, self.buf = self.buf[:length], self.buf[length:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:  # the body runs until the server closes
            try:
                while True:
                    self._fill()
            except Closed:
                pass
            body, self.buf = self.buf, b""
            self.close()
        self.answered += 1
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def _read_chunked(self) -> bytes:
        body = b""
        while chunk := self._read_chunk():
            body += chunk
        return body

    def _read_chunk(self) -> bytes:
        """The next chunk of a chunked body; b"" for the last (no trailers expected)."""
        while b"\r\n" not in self.buf:
            self._fill()
        size_line, self.buf = self.buf.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        while len(self.buf) < size + 2:
            self._fill()
        chunk, self.buf = self.buf[:size], self.buf[size + 2:]
        return chunk
