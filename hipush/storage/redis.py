"""Redis connections.

Two pools: ordinary commands use short socket timeouts; a parked poll holds
one connection of the blocking pool for its whole life, with a socket timeout
above the longest poll (redis-py would otherwise cut the blocking pop).
"""
import redis
from redis.connection import parse_url


class _KnowsItsClientId:
    """Learns its server-side CLIENT ID on every (re)connect, so another poll can CLIENT UNBLOCK it."""

    redis_client_id = None

    def on_connect_check_health(self, *args, **kwargs):
        super().on_connect_check_health(*args, **kwargs)
        self.send_command("CLIENT", "ID")
        self.redis_client_id = int(self.read_response())


class _TcpConnection(_KnowsItsClientId, redis.Connection):
    pass


class _UnixConnection(_KnowsItsClientId, redis.UnixDomainSocketConnection):
    pass


class RedisPools:
    def __init__(self, url: str, max_parked: int, longest_poll: int):
        self.url = url
        self.commands = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
            url, max_connections=200, timeout=5, socket_timeout=5, socket_connect_timeout=3,
            health_check_interval=30))
        kwargs = parse_url(url)
        connection_class = _UnixConnection if "path" in kwargs else _TcpConnection
        kwargs.pop("connection_class", None)
        self.blocking = redis.BlockingConnectionPool(
            connection_class=connection_class, max_connections=max_parked, timeout=2,
            socket_timeout=longest_poll + 15, socket_connect_timeout=3, **kwargs)
