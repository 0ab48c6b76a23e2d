"""Connect to the Redis a deployment runs: one server, Sentinel or Cluster, plain or TLS.

One URL names the deployment (``redis_url`` in ``mcplane.yaml``):

==========================================================  ===========================================
``redis://[[user]:password@]host[:port][/db]``              one server (``rediss://``: TLS)
``unix://[[user]:password@]/path/redis.sock[?db=N]``        one server on a Unix socket
``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``
                                                            the master Sentinel names for ``service``
                                                            (sentinel port 26379 by default;
                                                            ``rediss+sentinel://``: TLS)
``redis+cluster://[[user]:password@]host[:port][,host[:port]...]``
                                                            a Redis Cluster, found from any of the
                                                            nodes (``rediss+cluster://``: TLS)
==========================================================  ===========================================

The user and password are the data nodes' (the Sentinel master's, the Cluster nodes').
``redis://`` and ``rediss://`` take redis-py's query options. The Sentinel and Cluster
schemes take ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``
(``required``/``optional``/``none``), ``ssl_check_hostname`` (``true``/``false``) and, for
Sentinel, ``sentinel_username`` and ``sentinel_password`` (the sentinels' own credentials).

A mistake in a URL raises :class:`~mcplane.errors.ConfigError` naming the problem, never the
URL itself (it may hold a password). Every client fails fast (see :class:`RedisOptions`): the
layers above turn a failure into ``dependency_unavailable`` or fail open, and the next call
reconnects by itself once Redis is back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from mcplane.errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisOptions", "RedisTarget", "connect_redis", "parse_redis_url"]

Mode = Literal["single", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Mode, bool]] = {
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_SSL_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How mcplane's Redis clients connect. The defaults fail fast, which every layer wants.

    redis-py's own defaults retry ten times with backoff and never time out a read, which turns
    one Redis outage into seconds of latency on every call.
    """

    socket_timeout: float = 2.0
    """Seconds to wait for an answer to one command."""
    connect_timeout: float = 2.0
    """Seconds to wait for a connection (TCP and TLS handshake)."""
    retries: int = 1
    """Quick retries (10-100 ms backoff) of a command that failed on a connection error or timeout."""
    max_connections: int | None = 64
    """Connections per pool (per node on a Cluster); a command waits when all are busy."""
    health_check_interval: float = 15.0
    """PING a pooled connection idle this long before using it (0: never), so a dead one is found early."""

    def __post_init__(self) -> None:
        if not (self.socket_timeout > 0 and self.connect_timeout > 0):
            raise ConfigError("redis timeouts must be positive")
        if self.retries < 0 or (self.max_connections is not None and self.max_connections < 1):
            raise ConfigError("redis retries must be >= 0 and max_connections >= 1")
        if self.health_check_interval < 0:
            raise ConfigError("redis health_check_interval must not be negative")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed ``redis_url`` (see the module doc). ``repr`` never shows the password."""

    mode: Mode
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    """Sentinels or Cluster seed nodes (empty for one server: redis-py reads ``url``)."""
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    options: dict[str, Any] = field(default_factory=dict[str, Any], repr=False)


def parse_redis_url(url: str) -> RedisTarget:
    """Check ``url`` and say what it names; raise :class:`ConfigError` (without the URL) if it is wrong."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError("redis_url must look like redis://host:6379/0 (no scheme found)")
    if scheme in ("redis", "rediss", "unix"):
        from redis.asyncio.connection import parse_url

        try:
            parse_url(url)
        except ValueError:
            raise ConfigError(f"redis_url is not a valid {scheme}:// URL") from None
        return RedisTarget("single", url, ssl=scheme == "rediss")
    if scheme not in _SCHEMES:
        known = "redis, rediss, unix, redis+sentinel, rediss+sentinel, redis+cluster, rediss+cluster"
        raise ConfigError(f"redis_url scheme {scheme!r} is not supported (use one of: {known})")
    mode, ssl = _SCHEMES[scheme]
    parts = urlsplit("x://" + rest)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_node(text, 26379 if mode == "sentinel" else 6379, scheme) for text in hosts.split(","))
    path = [unquote(part) for part in parts.path.split("/") if part]
    service, db = None, 0
    if mode == "sentinel":
        if not path or len(path) > 2:
            raise ConfigError("redis_url: a sentinel URL names the service: redis+sentinel://host:26379/mymaster[/db]")
        service = path[0]
        db = _int(path[1], "database") if len(path) == 2 else 0
    elif path and path != ["0"]:
        raise ConfigError("redis_url: a Redis Cluster has only database 0")
    options: dict[str, Any] = {}
    allowed = _SSL_OPTIONS + (_SENTINEL_OPTIONS if mode == "sentinel" else ())
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in allowed:
            raise ConfigError(f"redis_url: unknown option {name!r} for {scheme}:// (known: {', '.join(allowed)})")
        if name.startswith("ssl_") and not ssl:
            raise ConfigError(f"redis_url: {name} needs a TLS scheme ({scheme.replace('redis+', 'rediss+')}://)")
        options[name] = _bool(value, name) if name == "ssl_check_hostname" else value
    return RedisTarget(mode, url, nodes, service, db, username, password, ssl, options)


def _node(text: str, default_port: int, scheme: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ConfigError(f"redis_url: an empty host in the {scheme}:// node list")
    return host, _int(port, "port") if port else default_port


def _int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"redis_url: the {what} must be a number") from None
    if value < 0:
        raise ConfigError(f"redis_url: the {what} must not be negative")
    return value


def _bool(text: str, name: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"redis_url: {name} must be true or false")


def connect_redis(
    url: str,
    *,
    timeout: float | None = None,
    retries: int | None = None,
    max_connections: int | None = None,
    options: RedisOptions | None = None,
) -> Redis:
    """A client for the deployment ``url`` names, with ``options`` (or the fail-fast defaults).

    ``timeout``, ``retries`` and ``max_connections`` override the matching option (``timeout``
    both the connect and the read timeout). The client is typed as ``Redis``; for a Cluster it
    is a ``RedisCluster``, which has the same command methods. Closing it (``aclose``) also
    closes the Sentinel connections.
    """
    opts = options or RedisOptions()
    socket_timeout = timeout if timeout is not None else opts.socket_timeout
    connect_timeout = timeout if timeout is not None else opts.connect_timeout
    target = parse_redis_url(url)
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff

    common: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), opts.retries if retries is None else retries),
        "health_check_interval": opts.health_check_interval,
        "decode_responses": False,
    }
    pool_size = max_connections if max_connections is not None else opts.max_connections
    if target.mode == "single":
        from redis.asyncio import Redis

        return Redis.from_url(url, max_connections=pool_size, **common)
    tls = {"ssl": True, **{k: v for k, v in target.options.items() if k.startswith("ssl_")}} if target.ssl else {}
    auth = {"username": target.username, "password": target.password}
    if target.mode == "cluster":
        from redis.asyncio.cluster import ClusterNode

        nodes = [ClusterNode(host, port) for host, port in target.nodes]
        cluster = _cluster_class()(startup_nodes=nodes, max_connections=pool_size or 64, **auth, **tls, **common)
        return cluster  # pyright: ignore[reportReturnType]  # the same commands as Redis
    return _sentinel_master(target, pool_size, common | tls | auth)


@functools.cache
def _cluster_class() -> type[Any]:
    from redis.asyncio.cluster import RedisCluster

    class Cluster(RedisCluster):
        """Learns the topology before its first command.

        redis-py resolves a command's slot (which may ask the default node) before it
        initializes; concurrent first commands then race the initialization, which closes
        the startup connections under them. Initializing first (once, under redis-py's lock)
        avoids that.
        """

        async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            if self._initialize:
                await self.initialize()
            return await super().execute_command(*args, **kwargs)

    return Cluster


def _sentinel_master(target: RedisTarget, pool_size: int | None, kwargs: dict[str, Any]) -> Redis:
    from redis.asyncio import Redis
    from redis.asyncio.sentinel import Sentinel

    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": kwargs["socket_timeout"],
        "socket_connect_timeout": kwargs["socket_connect_timeout"],
        "retry": kwargs["retry"],  # redis-py's default retries with backoff for seconds
        "username": target.options.get("sentinel_username"),
        "password": target.options.get("sentinel_password"),
    }
    if target.ssl:
        sentinel_kwargs.update({k: v for k, v in kwargs.items() if k.startswith("ssl")})
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs, **kwargs)

    class SentinelMaster(Redis):
        """The master's client; closing it closes the connections to the sentinels too."""

        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            try:
                await super().aclose(close_connection_pool)
            finally:
                for node in sentinel.sentinels:
                    await node.aclose()

    assert target.service is not None  # parse_redis_url requires it
    return sentinel.master_for(target.service, redis_class=SentinelMaster, db=target.db, max_connections=pool_size)
