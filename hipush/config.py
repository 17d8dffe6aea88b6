"""Every HIPUSH_* setting, read from the environment once and checked here."""
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hipush_client.protocol import MAX_POLL_TIMEOUT

ROLES = ("web", "admin", "comet")
MIN_PASSWORD = 8  # of a console operator's password


class ConfigError(ValueError):
    pass


def _int(env, name, default, lo, hi):
    return _number(env, name, default, lo, hi, int)


def _number(env, name, default, lo, hi, kind=float):
    """A setting within [lo, hi]; kind float also takes decimals ("0.5")."""
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _load_dotenv(path: Path, env: dict) -> None:
    """A `.env` file adds variables that the real environment does not set."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        env.setdefault(key.strip(), value.strip().strip("'\""))


def _secret_key(data_dir: Path) -> str:
    """A missing HIPUSH_SECRET_KEY is generated once and kept beside the embedded data."""
    path = data_dir / "secret_key"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path.read_text().strip()


@dataclass(frozen=True)
class Limits:
    content_bytes: int = 4096
    query_string_bytes: int = 16 * 1024
    body_bytes: int = 64 * 1024
    batch_body_bytes: int = 4 * 1024 * 1024  # POST /push/batch: 1,000 entries of up to 4,096-byte messages
    terminal_ids: int = 1000
    subscribe_clients: int = 100
    queue_length: int = 1000


SMTP_TLS_MODES = ("none", "starttls", "ssl")
WEBHOOK_TYPES = ("sms", "weixin", "qq", "ios")


@dataclass(frozen=True)
class RouteSettings:
    """Delivery to terminals that don't long-poll (hipush/services/routes)."""
    smtp_host: str = ""  # empty: no e-mail route
    smtp_port: int = 25
    smtp_tls: str = "none"
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_from: str = ""
    webhooks: tuple = ()  # (terminal_type, url) pairs
    webhook_secret: str = field(default="", repr=False)
    timeout: int = 10  # seconds per network operation of one delivery
    attempts: int = 5
    backoff: int = 1  # seconds before the 2nd attempt, doubling after each failure
    concurrency: int = 20  # deliveries at once per worker


@dataclass(frozen=True)
class Config:
    database_url: str
    redis_url: str  # empty = the embedded redis-server in data_dir (unless redis_cluster_nodes is set)
    bind: str
    public_addr: str
    secret_key: str
    roles: frozenset
    timezone: ZoneInfo
    data_dir: Path
    limits: Limits = field(default_factory=Limits)
    routes: RouteSettings = field(default_factory=RouteSettings)
    poll_timeout_default: int = 30
    poll_timeout_max: int = MAX_POLL_TIMEOUT
    presence_grace: int = 30
    stream_heartbeat: float = 25.0  # seconds between the comment lines of an idle SSE stream
    stream_max_age: float = 300.0  # seconds an SSE stream lasts; its client reconnects (token and node re-checked)
    default_expires: int = 86400
    max_expires: int = 10 * 86400
    token_lifetime: int = 7 * 86400
    max_parked_polls: int = 9000
    node_heartbeat: float = 1.0  # seconds between a worker's heartbeats
    node_ttl: float = 5.0  # seconds after its last heartbeat a node is no longer handed out
    retention_days: float = 30.0  # pushes and messages whose delivery is over are deleted after this
    publish_rate: int = 1000  # per app per second, unless the app has its own (0: unlimited)
    subscribe_rate: int = 1000
    client_ip_rate: int = 2000  # /user/* calls per client IP per 10 seconds (0: unlimited)
    read_timeout: int = 10  # seconds to read a request body; its headers get min(2, this) (gunicorn.conf.py)
    background: bool = True  # heartbeats and counter flushes; off for in-process unit tests
    # "host:port,...": seed nodes of a Redis Cluster; user, password and TLS then come from redis_url
    redis_cluster_nodes: str = ""
    send_lease: float = 30.0  # seconds a push may stay sending with no sign of life before another worker retries it
    redis_wait_replicas: int = 0  # replicas of each master written that must have a publish before it answers
    redis_wait_timeout: int = 1000  # ms that WAIT gives them; a push they miss is queued again after send_lease
    metrics_token: str = field(default="", repr=False)  # set: GET /metrics needs "Authorization: Bearer <it>"
    console_password: str = field(default="", repr=False)  # set: the console's operator `admin` has it

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url and not self.redis_cluster_nodes

    @property
    def embedded_redis_socket(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def redis_location(self) -> str:
        """Where the Redis is, for messages (a URL may hold a password: Installation hides it)."""
        return f"cluster {self.redis_cluster_nodes}" if self.redis_cluster_nodes else self.effective_redis_url

    @property
    def effective_redis_url(self) -> str:
        """On a cluster: the URL its user, password and TLS come from (may be empty)."""
        if self.redis_cluster_nodes:
            return self.redis_url
        return self.redis_url or f"unix://{self.embedded_redis_socket}"


def _route_settings(env) -> RouteSettings:
    tls = (env.get("HIPUSH_SMTP_TLS") or "none").lower()
    if tls not in SMTP_TLS_MODES:
        raise ConfigError(f"HIPUSH_SMTP_TLS must be one of {', '.join(SMTP_TLS_MODES)}, got {tls!r}")
    smtp_host = env.get("HIPUSH_SMTP_HOST", "").strip()
    smtp_from = env.get("HIPUSH_SMTP_FROM", "").strip()
    if smtp_host and "@" not in smtp_from:
        raise ConfigError("HIPUSH_SMTP_FROM (the sender address, e.g. 'hipush <push@example.com>') "
                          "is required when HIPUSH_SMTP_HOST is set")
    webhooks = []
    for terminal_type in WEBHOOK_TYPES:
        name = f"HIPUSH_WEBHOOK_{terminal_type.upper()}"
        url = env.get(name, "").strip()
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{name} must be an http:// or https:// URL, got {url!r}")
        webhooks.append((terminal_type, url))
    secret = env.get("HIPUSH_WEBHOOK_SECRET", "")
    if webhooks and not secret:
        raise ConfigError("HIPUSH_WEBHOOK_SECRET (the HMAC key gateways check signatures with) is required "
                          "when a HIPUSH_WEBHOOK_* URL is set")
    return RouteSettings(
        smtp_host=smtp_host,
        smtp_port=_int(env, "HIPUSH_SMTP_PORT", 465 if tls == "ssl" else 25, 1, 65535),
        smtp_tls=tls,
        smtp_user=env.get("HIPUSH_SMTP_USER", ""),
        smtp_password=env.get("HIPUSH_SMTP_PASSWORD", ""),
        smtp_from=smtp_from,
        webhooks=tuple(webhooks),
        webhook_secret=secret,
        timeout=_int(env, "HIPUSH_ROUTE_TIMEOUT", 10, 1, 300),
        attempts=_int(env, "HIPUSH_ROUTE_ATTEMPTS", 5, 1, 50),
        backoff=_int(env, "HIPUSH_ROUTE_BACKOFF", 1, 1, 3600),
        concurrency=_int(env, "HIPUSH_ROUTE_CONCURRENCY", 20, 1, 1000),
    )


def _cluster_nodes(env) -> str:
    """HIPUSH_REDIS_CLUSTER_NODES: seed nodes as host:port[,host:port...]; HIPUSH_REDIS_URL, when also set,
    gives only the user, password and scheme (rediss:// for TLS), so it must name no database but 0."""
    nodes = [n.strip() for n in env.get("HIPUSH_REDIS_CLUSTER_NODES", "").split(",") if n.strip()]
    for node in nodes:
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"HIPUSH_REDIS_CLUSTER_NODES must be host:port[,host:port...], got {node!r}")
    url = env.get("HIPUSH_REDIS_URL", "")
    if nodes and url:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or parts.path.strip("/") not in ("", "0"):
            raise ConfigError("with HIPUSH_REDIS_CLUSTER_NODES, HIPUSH_REDIS_URL (its user, password and TLS) "
                              f"must be a redis:// or rediss:// URL of database 0, got {url!r}")
    return ",".join(nodes)


def _node_timing(env) -> dict:
    """HIPUSH_NODE_HEARTBEAT and HIPUSH_NODE_TTL: a node must be able to miss a heartbeat and stay live."""
    heartbeat = _number(env, "HIPUSH_NODE_HEARTBEAT", 1.0, 0.1, 60)
    ttl = _number(env, "HIPUSH_NODE_TTL", 5.0, 0.2, 3600)
    if ttl < 2 * heartbeat:
        raise ConfigError(f"HIPUSH_NODE_TTL ({ttl:g} s) must be at least twice "
                          f"HIPUSH_NODE_HEARTBEAT ({heartbeat:g} s)")
    return {"node_heartbeat": heartbeat, "node_ttl": ttl}


def _console_password(env) -> str:
    password = env.get("HIPUSH_CONSOLE_PASSWORD", "")
    if password and len(password) < MIN_PASSWORD:
        raise ConfigError(f"HIPUSH_CONSOLE_PASSWORD must have at least {MIN_PASSWORD} characters")
    return password


def load(environ=None, **overrides) -> Config:
    env = dict(os.environ if environ is None else environ)
    _load_dotenv(Path(env.get("HIPUSH_ENV_FILE", ".env")), env)
    data_dir = Path(env.get("HIPUSH_DATA_DIR") or "./var").resolve()
    bind = env.get("HIPUSH_BIND") or "127.0.0.1:8080"
    if ":" not in bind:
        raise ConfigError(f"HIPUSH_BIND must be host:port, got {bind!r}")
    public_addr = env.get("HIPUSH_PUBLIC_ADDR") or bind
    host, _, port = public_addr.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"HIPUSH_PUBLIC_ADDR must be ip:port, got {public_addr!r}")
    roles = frozenset(r.strip() for r in (env.get("HIPUSH_ROLES") or ",".join(ROLES)).split(",") if r.strip())
    if not roles or roles - set(ROLES):
        raise ConfigError(f"HIPUSH_ROLES must be a comma list of {', '.join(ROLES)}")
    try:
        tz = ZoneInfo(env.get("HIPUSH_TIMEZONE") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"HIPUSH_TIMEZONE is not a known time zone: {env.get('HIPUSH_TIMEZONE')!r}") from None
    database_url = env.get("HIPUSH_DATABASE_URL") or f"sqlite:///{data_dir / 'hipush.db'}"
    values = dict(
        database_url=database_url,
        redis_url=env.get("HIPUSH_REDIS_URL", ""),
        bind=bind,
        public_addr=public_addr,
        secret_key=env.get("HIPUSH_SECRET_KEY") or _secret_key(data_dir),
        roles=roles,
        timezone=tz,
        data_dir=data_dir,
        limits=Limits(queue_length=_int(env, "HIPUSH_QUEUE_LENGTH", 1000, 1, 100000)),
        routes=_route_settings(env),
        poll_timeout_default=_int(env, "HIPUSH_POLL_TIMEOUT", 30, 1, MAX_POLL_TIMEOUT),
        presence_grace=_int(env, "HIPUSH_PRESENCE_GRACE", 30, 1, 3600),
        # at most 60: a stream's wait must end well within the blocking connections' socket timeout
        stream_heartbeat=_number(env, "HIPUSH_STREAM_HEARTBEAT", 25.0, 0.1, 60),
        stream_max_age=_number(env, "HIPUSH_STREAM_MAX_AGE", 300.0, 1, 86400),
        max_parked_polls=_int(env, "HIPUSH_MAX_PARKED_POLLS", 9000, 1, 100000),
        publish_rate=_int(env, "HIPUSH_PUBLISH_RATE", 1000, 0, 10**9),
        subscribe_rate=_int(env, "HIPUSH_SUBSCRIBE_RATE", 1000, 0, 10**9),
        client_ip_rate=_int(env, "HIPUSH_CLIENT_IP_RATE", 2000, 0, 10**9),
        read_timeout=_int(env, "HIPUSH_READ_TIMEOUT", 10, 1, 3600),
        **_node_timing(env),
        retention_days=_number(env, "HIPUSH_RETENTION_DAYS", 30.0, 0, 36500),
        redis_cluster_nodes=_cluster_nodes(env),
        send_lease=_number(env, "HIPUSH_SEND_LEASE", 30.0, 1, 3600),
        redis_wait_replicas=_int(env, "HIPUSH_REDIS_WAIT_REPLICAS", 0, 0, 16),
        redis_wait_timeout=_int(env, "HIPUSH_REDIS_WAIT_TIMEOUT_MS", 1000, 1, 60000),
        metrics_token=env.get("HIPUSH_METRICS_TOKEN", ""),
        console_password=_console_password(env),
    )
    values.update(overrides)
    return Config(**values)
