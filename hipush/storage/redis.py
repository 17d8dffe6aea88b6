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
        # driver_info=None: no CLIENT SETINFO round trips, and no package-metadata lookup (about 1 ms of CPU),
        # on each new connection, of which a herd of polls opens thousands
        self.commands = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
            url, max_connections=200, timeout=5, socket_timeout=5, socket_connect_timeout=3,
            health_check_interval=30, driver_info=None))
        kwargs = parse_url(url)
        connection_class = _UnixConnection if "path" in kwargs else _TcpConnection
        kwargs.pop("connection_class", None)
        self.blocking = redis.BlockingConnectionPool(
            connection_class=connection_class, max_connections=max_parked, timeout=2, socket_read_size=4096,
            socket_timeout=longest_poll + 15, socket_connect_timeout=3, driver_info=None, **kwargs)


class HeldConnection:
    """One blocking-pool connection held for a poll's whole life, speaking just the commands a poll uses.

    Lighter than a redis.Redis per poll (which copies its response-callback table), and it
    knows its server-side client id, so that a newer poll can CLIENT UNBLOCK it.
    """

    def __init__(self, pool):
        self.pool = pool
        self.connection = pool.get_connection()

    @property
    def redis_client_id(self) -> int:
        return self.connection.redis_client_id

    def execute_commands(self, commands) -> list:
        """Sends the commands in one write and reads every reply; raises the first error reply after
        reading them all. The connection stays up (a reconnect would change the poll's client id)."""
        try:
            self.connection.send_packed_command(self.connection.pack_commands(commands))
            replies = []
            for _ in commands:
                try:
                    replies.append(self.connection.read_response())
                except redis.ResponseError as error:
                    replies.append(error)
        except (redis.ConnectionError, redis.TimeoutError):
            self.connection.disconnect()
            raise
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    def execute_command(self, *args):
        return self.execute_commands([args])[0]

    def evalsha(self, sha, numkeys, *args):
        return self.execute_command("EVALSHA", sha, numkeys, *args)

    def script_load(self, script):
        return self.execute_command("SCRIPT", "LOAD", script)

    def blmove(self, source, destination, timeout, src="LEFT", dest="RIGHT", before=()):
        """`before`: commands sent ahead of it in the same write (their replies are dropped)."""
        return self.execute_commands([*before, ("BLMOVE", source, destination, src, dest, timeout)])[-1]

    def release(self):
        self.pool.release(self.connection)


class CommandBatch:
    """Commands whose replies nobody needs (counter increments), gathered to ride along with a held
    connection's next call instead of costing a round trip of their own."""

    def __init__(self):
        self.commands = []

    def hincrby(self, name, key, amount) -> None:
        self.commands.append(("HINCRBY", name, key, amount))

    def sadd(self, name, *values) -> None:
        self.commands.append(("SADD", name, *values))

    def take(self) -> list:
        commands, self.commands = self.commands, []
        return commands


class ScriptPipeline:
    """A non-transactional pipeline that runs registered scripts by EVALSHA alone.

    redis-py's own pipeline sends SCRIPT EXISTS before every execute that holds a
    script: one more round trip per publish. This one loads a script only when Redis
    has lost it (a restart, SCRIPT FLUSH) and then re-runs just the calls that missed.
    """

    def __init__(self, commands):
        self.commands = commands
        self.pipe = commands.pipeline(transaction=False)
        self.scripts = {}

    def __len__(self) -> int:
        return len(self.pipe.command_stack)

    def script(self, script, keys, args) -> None:
        self.scripts[script.sha] = script
        self.pipe.evalsha(script.sha, len(keys), *keys, *args)

    def hincrby(self, name, key, amount) -> None:
        self.pipe.hincrby(name, key, amount)

    def sadd(self, name, *values) -> None:
        self.pipe.sadd(name, *values)

    def spop(self, name, count) -> None:
        self.pipe.spop(name, count)

    def pexpire(self, name, milliseconds) -> None:
        self.pipe.pexpire(name, milliseconds)

    def execute(self) -> list:
        stack = [args for args, _ in self.pipe.command_stack]
        results = self.pipe.execute(raise_on_error=False)
        for i, result in enumerate(results):
            if isinstance(result, redis.exceptions.NoScriptError):
                self.commands.script_load(self.scripts[stack[i][1]].script)
                results[i] = self.commands.execute_command(*stack[i])
            elif isinstance(result, Exception):
                raise result
        return results
