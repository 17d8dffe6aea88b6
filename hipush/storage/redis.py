"""Redis connections: one server (HIPUSH_REDIS_URL, or the embedded one), or a Redis Cluster
(HIPUSH_REDIS_CLUSTER_NODES). Everything above this module speaks to both the same way.

Ordinary commands go through `commands` (redis.Redis or redis.cluster.RedisCluster) with short
socket timeouts. A parked poll holds one connection of a blocking pool for its whole life, with a
socket timeout above the longest poll (redis-py would otherwise cut the blocking pop). On a cluster
there is one such pool per master, made when a poll first needs it, and a poll holds a connection
to the master of its client's slot.
"""
import hashlib
import time

import redis
from redis import exceptions
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.crc import key_slot

ERRORS = (redis.RedisError, exceptions.RedisClusterException)  # anything that Redis or the cluster client raises
# Redis, or the shard a key lives on, cannot answer now (down, failing over, slots moving): 503 / 1031.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, exceptions.ClusterError, exceptions.AskError,
               exceptions.TryAgainError, exceptions.ReadOnlyError, exceptions.SlotNotCoveredError)
# A held connection's slot may have moved: the cluster's slot map is read again before the next poll.
_SLOT_MAP_STALE = (redis.ConnectionError, redis.TimeoutError, exceptions.ClusterError, exceptions.AskError,
                   exceptions.ReadOnlyError)
SLOT_MAP_REFRESH_SECONDS = 0.5  # a herd of polls failing at once reads the slot map once


class _KnowsItsClientId:
    """Learns its server-side CLIENT ID on every (re)connect, so another poll can CLIENT UNBLOCK it."""

    redis_client_id = None

    def on_connect_check_health(self, *args, **kwargs):
        super().on_connect_check_health(*args, **kwargs)
        self.send_command("CLIENT", "ID")
        self.redis_client_id = int(self.read_response())


class _TcpConnection(_KnowsItsClientId, redis.Connection):
    pass


class _SslConnection(_KnowsItsClientId, redis.SSLConnection):
    pass


class _UnixConnection(_KnowsItsClientId, redis.UnixDomainSocketConnection):
    pass


def _blocking_pool(kwargs: dict, max_parked: int, longest_poll: int):
    """A pool of connections for parked polls, to the server `kwargs` (parse_url's) name."""
    kwargs = dict(kwargs)
    ssl = kwargs.pop("connection_class", None) is redis.SSLConnection
    connection_class = _UnixConnection if "path" in kwargs else _SslConnection if ssl else _TcpConnection
    return redis.BlockingConnectionPool(
        connection_class=connection_class, max_connections=max_parked, timeout=2, socket_read_size=4096,
        socket_timeout=longest_poll + 15, socket_connect_timeout=3, driver_info=None, **kwargs)


class RedisPools:
    """One Redis server."""

    cluster = False

    def __init__(self, url: str, max_parked: int, longest_poll: int):
        self.url = url
        # driver_info=None: no CLIENT SETINFO round trips, and no package-metadata lookup (about 1 ms of CPU),
        # on each new connection, of which a herd of polls opens thousands
        self.commands = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
            url, max_connections=200, timeout=5, socket_timeout=5, socket_connect_timeout=3,
            health_check_interval=30, driver_info=None))
        self.blocking = _blocking_pool(parse_url(url), max_parked, longest_poll)

    def hold(self, key: str) -> "HeldConnection":
        """A blocking connection to the server holding `key`, for one poll's whole life."""
        return HeldConnection(self, self.blocking, "")

    def unblock(self, poller: str) -> None:
        """Ends the wait of the poll `poller` (HeldConnection.poller_id) names, wherever it is parked."""
        redis_client_id, _, node = poller.partition("@")
        self._unblock(int(redis_client_id.split(":")[0]), node)

    def _unblock(self, redis_client_id: int, node: str) -> None:
        self.commands.client_unblock(redis_client_id)

    def answers(self) -> bool:
        """Whether Redis answers a PING now (on a cluster, the node the client picks)."""
        try:
            return bool(self.commands.ping())
        except ERRORS:
            return False

    def slot(self, key: str) -> int:
        """Keys of one slot may go in one script or transaction; a single server has one slot."""
        return 0

    def mget(self, names: list) -> list:
        return self.commands.mget(names) if names else []

    def register_script(self, source: str) -> "Script":
        return Script(self, source)

    def load_script(self, source: str, key: str) -> None:
        """Loads a script on the server that holds `key`."""
        self.commands.execute_command("SCRIPT LOAD", source)

    def pipeline(self) -> "ScriptPipeline":
        return ScriptPipeline(self)

    def send(self, commands) -> None:
        """Sends commands whose replies nobody needs (a CommandBatch's), in one round trip."""
        if commands:
            pipe = self.commands.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            pipe.execute()

    def slot_map_stale(self) -> None:
        """A held connection met a moved slot or a dead shard (nothing to do on one server)."""

    def add_waits(self, pipe, written_keys, replicas: int, timeout_ms: int) -> int:
        """Adds to a redis-py pipeline, after its writes, a WAIT on every master they went to (on the
        connection that carried them, which is what WAIT waits for); returns how many."""
        pipe.execute_command("WAIT", replicas, timeout_ms)
        return 1


class ClusterPools(RedisPools):
    """A Redis Cluster, found from its seed nodes; password, user and TLS come from `url`."""

    cluster = True

    def __init__(self, seeds: list, url: str, max_parked: int, longest_poll: int):
        self.url = url
        options = parse_url(url) if url else {}
        options.pop("db", None)
        self.auth = {k: v for k, v in options.items() if k in ("username", "password", "connection_class")}
        self.max_parked, self.longest_poll = max_parked, longest_poll
        self.commands = RedisCluster(
            startup_nodes=[ClusterNode(host, int(port)) for host, port in seeds], dynamic_startup_nodes=True,
            socket_timeout=5, socket_connect_timeout=3, driver_info=None, **self._cluster_auth())
        self.blocking = {}  # node name -> its blocking pool
        self._slot_map_read = time.monotonic()

    def _cluster_auth(self) -> dict:
        ssl = self.auth.get("connection_class") is redis.SSLConnection
        return {**{k: v for k, v in self.auth.items() if k != "connection_class"}, **({"ssl": True} if ssl else {})}

    def hold(self, key: str) -> "HeldConnection":
        node = self.commands.get_node_from_key(key)
        pool = self.blocking.get(node.name)
        if pool is None:
            pool = self.blocking[node.name] = _blocking_pool(
                {"host": node.host, "port": node.port, **self.auth}, self.max_parked, self.longest_poll)
        try:
            return HeldConnection(self, pool, node.name)
        except (redis.ConnectionError, redis.TimeoutError):
            self.slot_map_stale()  # the master may have failed over
            raise

    def _unblock(self, redis_client_id: int, node: str) -> None:
        target = self.commands.get_node(node_name=node)
        if target is not None:  # a node that left the cluster has no polls parked any more
            self.commands.execute_command("CLIENT UNBLOCK", redis_client_id, target_nodes=target)

    def slot(self, key: str) -> int:
        return key_slot(key.encode())

    def load_script(self, source: str, key: str) -> None:
        self.commands.execute_command("SCRIPT LOAD", source, target_nodes=self.commands.get_node_from_key(key))

    def mget(self, names: list) -> list:
        return self.commands.mget_nonatomic(names) if names else []

    def add_waits(self, pipe, written_keys, replicas: int, timeout_ms: int) -> int:
        masters = {}
        for key in written_keys:
            node = self.commands.get_node_from_key(key)
            masters[node.name] = node
        for node in masters.values():  # the cluster pipeline sends each master's commands on one connection
            pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
        return len(masters)

    def slot_map_stale(self) -> None:
        if time.monotonic() - self._slot_map_read > SLOT_MAP_REFRESH_SECONDS:
            self._slot_map_read = time.monotonic()
            try:
                self.commands.nodes_manager.initialize()
            except (redis.RedisError, exceptions.RedisClusterException):
                pass  # no node answers yet: the next poll tries again


def connect(url: str, cluster_nodes: str, max_parked: int, longest_poll: int) -> RedisPools:
    """The pools for a config: a cluster when `cluster_nodes` ("host:port,...") is set."""
    if not cluster_nodes:
        return RedisPools(url, max_parked, longest_poll)
    seeds = [node.strip().rsplit(":", 1) for node in cluster_nodes.split(",") if node.strip()]
    return ClusterPools(seeds, url, max_parked, longest_poll)


class Script:
    """A Lua script run by EVALSHA alone, loaded again where Redis lost it (a restart, a failover, SCRIPT FLUSH).

    Sent as a plain command, so the cluster client routes it by its keys, and it runs on a held
    connection or a pipeline as well."""

    def __init__(self, pools: RedisPools, source: str):
        self.pools = pools
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def command(self, keys, args) -> tuple:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def __call__(self, keys=(), args=(), client=None):
        """Runs it on `client` (a HeldConnection), else by the ordinary commands."""
        client = client or self.pools.commands
        try:
            return client.execute_command(*self.command(keys, args))
        except exceptions.NoScriptError:
            self.load(keys, client)
            return client.execute_command(*self.command(keys, args))

    def load(self, keys, client=None) -> None:
        """Loads it where a call with these keys runs: a HeldConnection's server, else the keys' master."""
        if client is not None and client is not self.pools.commands:
            client.execute_command("SCRIPT LOAD", self.source)
        else:
            self.pools.load_script(self.source, keys[0])


class HeldConnection:
    """One blocking-pool connection held for a poll's whole life, speaking just the commands a poll uses.

    Lighter than a redis.Redis per poll (which copies its response-callback table), and it
    knows its server-side client id, so that a newer poll can CLIENT UNBLOCK it.
    """

    def __init__(self, pools: RedisPools, pool, node: str):
        self.pools = pools
        self.pool = pool
        self.node = node  # on a cluster: the master it is connected to
        self.connection = pool.get_connection()

    @property
    def redis_client_id(self) -> int:
        return self.connection.redis_client_id

    def poller_id(self, serial: int) -> str:
        """Names this poll uniquely, and where to CLIENT UNBLOCK it (RedisPools.unblock)."""
        return f"{self.redis_client_id}:{serial}" + (f"@{self.node}" if self.node else "")

    def execute_commands(self, commands, raise_on_error: bool = True) -> list:
        """Sends the commands in one write and reads every reply; raises the first error reply after
        reading them all (raise_on_error=False: leaves errors among the replies). The connection stays
        up (a reconnect would change the poll's client id)."""
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
            self.pools.slot_map_stale()
            raise
        for reply in replies:
            if isinstance(reply, _SLOT_MAP_STALE):
                self.pools.slot_map_stale()
            if isinstance(reply, redis.ResponseError) and raise_on_error:
                raise reply
        return replies

    def execute_command(self, *args):
        return self.execute_commands([args])[0]

    def riders(self, commands) -> list:
        """Of commands to send ahead of this connection's next call, those that can go on it: on one
        server all of them; on a cluster none (their keys are in other slots), which are sent now instead."""
        if not self.pools.cluster:
            return commands
        self.pools.send(commands)
        return []

    def send(self, commands) -> None:
        """Sends commands whose replies nobody needs (a CommandBatch's) on their own."""
        commands = self.riders(commands)
        if commands:
            self.execute_commands(commands)

    def release(self) -> None:
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
    """A non-transactional pipeline that runs scripts by EVALSHA alone; on a cluster each command goes
    to the master of its keys' slot.

    redis-py's own pipeline sends SCRIPT EXISTS before every execute that holds a
    script: one more round trip per publish. This one loads a script only when Redis
    has lost it (a restart, a failover, SCRIPT FLUSH) and then re-runs just the calls that missed.
    With `wait_for_replicas`, its writes are followed by a WAIT on each master written; `replicated`
    tells whether every one of them reached that many replicas in time.
    """

    def __init__(self, pools: RedisPools):
        self.pools = pools
        self.pipe = pools.commands.pipeline(transaction=False)
        self.stack = []  # (command, the script it runs or None)
        self.wait = None  # (replicas, timeout_ms)
        self.replicated = True

    def __len__(self) -> int:
        return len(self.stack)

    def _add(self, command, script=None) -> None:
        self.stack.append((command, script))
        self.pipe.execute_command(*command)

    def script(self, script: Script, keys, args) -> None:
        self._add(script.command(keys, args), script)

    def hincrby(self, name, key, amount) -> None:
        self._add(("HINCRBY", name, key, amount))

    def sadd(self, name, *values) -> None:
        self._add(("SADD", name, *values))

    def scard(self, name) -> None:
        self._add(("SCARD", name))

    def spop(self, name, count) -> None:
        self._add(("SPOP", name, count))

    def pexpire(self, name, milliseconds) -> None:
        self._add(("PEXPIRE", name, milliseconds))

    def set(self, name, value, px) -> None:
        self._add(("SET", name, value, "PX", px))

    def wait_for_replicas(self, replicas: int, timeout_ms: int) -> None:
        """Makes `execute` WAIT for `replicas` replicas of each master written (0: no WAIT)."""
        self.wait = (replicas, timeout_ms) if replicas else None

    def execute(self, raise_on_error: bool = True) -> list:
        """The replies in order; raise_on_error=False leaves a failed command's error among them (on a
        cluster, the commands of a shard that is down fail, the others' land)."""
        waits = self.pools.add_waits(self.pipe, [_first_key(c) for c, _ in self.stack], *self.wait) \
            if self.wait and self.stack else 0
        replies = self.pipe.execute(raise_on_error=False)
        results, acks = replies[:len(self.stack)], replies[len(self.stack):]
        self.replicated = len(acks) == waits and all(
            not isinstance(ack, Exception) and ack >= self.wait[0] for ack in acks)
        missed = [i for i, result in enumerate(results) if isinstance(result, exceptions.NoScriptError)]
        if missed:
            again = ScriptPipeline(self.pools)
            for i in missed:
                command, script = self.stack[i]
                script.load(command[3:3 + command[2]])
                again._add(command, script)
            again.wait = self.wait
            for i, result in zip(missed, again.execute(raise_on_error=False)):
                results[i] = result
            self.replicated = self.replicated and again.replicated
        if raise_on_error:
            for result in results:
                if isinstance(result, Exception):
                    raise result
        return results


def _first_key(command) -> str:
    """The key a command is routed by: an EVALSHA's first key, else its first argument."""
    return command[3] if command[0] == "EVALSHA" else command[1]
