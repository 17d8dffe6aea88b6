"""One TCP segment per answer: gunicorn writes an answer's headers and its body with two sends, which on
a kept-alive connection costs two packets and two wake-ups of the client. The socket is corked while the
app runs and uncorked once gunicorn has written the body (it closes the body iterable then), so the
kernel sends headers and body together. A no-op where the server hands over no socket, and for the paths of
streamed answers (an SSE stream's events must leave as they are written)."""
import socket


def _set_cork(sock, on: int) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, on)
    except OSError:  # the client has gone: nothing is left to send
        pass


class _UncorkWhenClosed:
    __slots__ = ("body", "sock")

    def __init__(self, body, sock):
        self.body = body
        self.sock = sock

    def __iter__(self):
        return iter(self.body)

    def close(self):
        _set_cork(self.sock, 0)  # first: closing the body may run work meant for after the answer
        if hasattr(self.body, "close"):
            self.body.close()


class CorkedAnswers:
    """WSGI middleware (`app.wsgi_app = CorkedAnswers(app.wsgi_app)`)."""

    def __init__(self, wsgi_app, streamed_paths=()):
        self.wsgi_app = wsgi_app
        self.streamed_paths = frozenset(streamed_paths)

    def __call__(self, environ, start_response):
        sock = environ.get("gunicorn.socket")
        if (sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6)
                or environ.get("PATH_INFO") in self.streamed_paths):
            return self.wsgi_app(environ, start_response)
        _set_cork(sock, 1)
        try:
            return _UncorkWhenClosed(self.wsgi_app(environ, start_response), sock)
        except BaseException:
            _set_cork(sock, 0)
            raise
