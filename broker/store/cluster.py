"""The Redis store on a Redis Cluster: each batch to the primary owning its one slot.

``redis+cluster://[user:password@]host:port[,host:port...][?replicas=1&wait_ms=500]``
(``rediss+cluster://`` for TLS) names some of the cluster's nodes; redis-py's
``RedisCluster`` discovers the rest and keeps the slot map (its nodes manager).  Commands
still go the :class:`~broker.store.redis.RedisStore` way (packed here, one round trip, the
same resend rules), on the connection pool of the node owning the batch's slot.

- Every key of one round trip (a batch, ``get_many``, a ``delete`` of several keys,
  ``get_after_writes`` with the writes before it) must hash to one slot: callers give keys
  that travel together one hash tag (:mod:`broker.store.slots`).  A batch spanning slots is a
  programming error, :class:`~broker.store.slots.CrossSlot`, logged at ERROR and raised before
  anything is sent; it is a :class:`~broker.store.base.StoreError`, so a request meets it as
  "temporarily unavailable" (503), never as a 500.  The key prefix may hold no ``{`` or ``}``
  (:func:`check_prefix`): a cluster would hash the prefix's braces instead of the keys' tags.
- ``MOVED`` (the slot has another owner: a failover or a resharding), ``ASK`` (the slot is
  migrating and the key is already on the node named), ``TRYAGAIN`` (a multi-key command met
  its slot half moved) and ``CLUSTERDOWN`` (a failover under way) are answers meaning "not
  run".  The commands refused so, and only those when the others ran (keys still on the
  source during a migration), are sent again under the rules of :mod:`broker.store.redis`
  (Failover and redirection): to the node named (after ``ASKING`` before each, for ``ASK``),
  their replies put in their places; a ``MOVED`` or ``CLUSTERDOWN`` also has the slot map read
  anew, so that later batches go to the new owner directly.
- A node that cannot be reached before anything was sent (a primary just killed) makes the
  slot map be read anew (at most every :data:`REFRESH_EVERY` seconds) and the batch go once
  more to the owner named then.
- ``replicas`` and ``wait_ms`` are as for Sentinel (:mod:`broker.store.sentinel`): a durable
  batch ``WAIT`` s for the replicas of the primary it went to.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from broker.store import slots
from broker.store.base import StoreError
from broker.store.commands import names
from broker.store.confirm import check_wait_ms
from broker.store.redis import NothingSent, RedisStore

logger = logging.getLogger("broker.store.cluster")

SCHEMES = ("redis+cluster", "rediss+cluster")
#: Seconds between two readings of the slot map forced by unreachable nodes.
REFRESH_EVERY = 0.2
_NO_KEYS = frozenset({"WAIT", "PING", "INFO", "ROLE", "ASKING", "CLUSTER"})
_MULTI_KEY = frozenset({"MGET", "DEL", "EXISTS"})


@dataclasses.dataclass(frozen=True)
class Route:
    """Where a batch goes: its slot (``None``: no keys) and the node to ask; ``asking`` after an ``ASK``."""

    slot: int | None
    node: ClusterNode
    asking: bool = False


def _keys(command: tuple) -> tuple:
    name = (command[0].decode() if isinstance(command[0], bytes) else str(command[0])).upper()
    if name in _NO_KEYS:
        return ()
    if name == "EVAL":
        return command[3:3 + int(command[2])]
    if name in _MULTI_KEY:
        return command[1:]
    return command[1:2]


def slot_of(commands: tuple[tuple, ...]) -> int | None:
    """The one slot every key of ``commands`` hashes to; ``None`` without keys; :class:`CrossSlot` else."""
    found: int | None = None
    for command in commands:
        for key in _keys(command):
            slot = key_slot(key.encode() if isinstance(key, str) else key)
            if found is None:
                found = slot
            elif slot != found:
                message = (f"{names(commands)}: keys in more than one cluster slot; keys sent together "
                           "must share a hash tag (broker/store/slots.py)")
                # The command names only (never a key: keys are built from codes and tokens); the
                # stack names the caller that built the batch.
                logger.error("cross-slot batch refused: %s", message, stack_info=True)
                raise slots.CrossSlot(message)
    return found


def parse(url: str) -> dict[str, Any]:
    """``startup_nodes``, credentials, TLS and the ``WAIT`` options of a cluster URL (module docstring)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"not a cluster URL (scheme {parts.scheme!r}; expected one of {', '.join(SCHEMES)})")
    credentials, _, hosts = parts.netloc.rpartition("@")
    user, _, secret = credentials.partition(":")
    nodes = []
    for hostport in hosts.split(","):
        host, sep, port = hostport.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"cluster URL: {hostport!r} is not host:port")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    if parts.path.strip("/"):
        raise ValueError("cluster URL: a cluster has only database 0; no path")
    query = parse_qs(parts.query)
    options = {}
    for name, default in (("replicas", 1), ("wait_ms", 500)):
        raw = (query.get(name) or [str(default)])[-1]
        if not raw.isdigit():
            raise ValueError(f"cluster URL: {name}= must be a whole number")
        options[name] = int(raw)
    check_wait_ms(options["wait_ms"])
    return {"startup_nodes": nodes, "username": unquote(user) or None, "password": unquote(secret) or None,
            "ssl": parts.scheme == "rediss+cluster", **options}


def check_prefix(prefix: str) -> None:
    """Refuse (:class:`ValueError`) a key prefix holding a brace: a cluster hashes a key's first
    ``{...}``, so the prefix's would stand in for the keys' own hash tags (or, ``{}``, drop them)."""
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"redis prefix {prefix!r} (BROKER_REDIS_PREFIX): no {{ or }} on a Redis Cluster, "
                         "which would hash the prefix's braces instead of the keys' hash tags")


class Notices:
    """Pub/sub on a cluster, for :mod:`broker.registry.watch`: a ``PUBLISH`` on any node reaches
    subscribers on every node (the cluster bus), so a subscription goes to a primary that answers
    *now*: redis-py would pick one from a slot map that may still name a node just killed."""

    def __init__(self, store: ClusterStore):
        self._store = store

    def pubsub(self, **kwargs: Any):
        return self._store.cluster.pubsub(node=self._store.live_node(), **kwargs)

    def publish(self, channel: str, message: str) -> int:
        return int(self._store._run(("PUBLISH", channel, message))[0])   # noqa: SLF001 - the store's own wire


class ClusterStore(RedisStore):
    """A :class:`RedisStore` whose batches go to the node owning their slot (module docstring)."""

    one_slot_batches = True

    def __init__(self, cluster: RedisCluster, *, prefix: str = "digione:", replicas: int = 1, wait_ms: int = 500):
        check_prefix(prefix)
        super().__init__(cluster, prefix=prefix, replicas=replicas, wait_ms=wait_ms)   # type: ignore[arg-type]
        self._cluster = cluster
        self._refreshed = 0.0
        self._refresh_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "digione:") -> ClusterStore:
        options = parse(url)
        check_prefix(prefix)   # before connecting
        cluster = RedisCluster(startup_nodes=options["startup_nodes"], username=options["username"],
                               password=options["password"], ssl=options["ssl"], socket_timeout=2.0,
                               socket_connect_timeout=2.0, health_check_interval=30)
        return cls(cluster, prefix=prefix, replicas=options["replicas"], wait_ms=options["wait_ms"])

    # -- routing ------------------------------------------------------------------------------

    def _route(self, commands: tuple[tuple, ...]) -> Route:
        return self._route_slot(slot_of(commands))

    def _route_slot(self, slot: int | None) -> Route:
        """The node our slot map names for ``slot`` (``None``: any node); :class:`NothingSent` if none."""
        manager = self._cluster.nodes_manager
        if slot is None:
            return Route(None, manager.default_node or self._cluster.get_random_node())
        try:
            return Route(slot, manager.get_node_from_slot(slot))
        except (redis.RedisError, redis.exceptions.RedisClusterException, IndexError) as exc:
            # No owner known (the map is being rebuilt, or lacks the slot: SlotNotCoveredError).
            raise NothingSent(f"redis cluster: no node holds slot {slot} ({exc.__class__.__name__}); "
                              "nothing was sent") from exc

    def _pool(self, route: Route):
        if route.node.redis_connection is None:
            self._cluster.nodes_manager.create_redis_connections([route.node])
        return route.node.redis_connection.connection_pool

    def _node_name(self, route: Route) -> str:
        return route.node.name

    def _on_route(self, route: Route, commands: tuple[tuple, ...]) -> tuple[tuple, ...]:
        if not route.asking:
            return commands
        return tuple(c for command in commands for c in (("ASKING",), command))

    def _off_route(self, route: Route, replies: list[Any]) -> list[Any]:
        return replies[1::2] if route.asking else replies

    def _rerouted(self, route: Route, error: Exception) -> Route:
        """Where the refused commands go again: after ``ASK`` to the node named, with ``ASKING``;
        after ``MOVED`` to the node named (the slot's new owner), the map read anew for later
        batches; after ``TRYAGAIN`` (a multi-key command met its slot half moved) to the same node
        after a moment; else (``CLUSTERDOWN``: a failover under way) a moment, then the owner in
        the map read anew."""
        if isinstance(error, redis.exceptions.AskError):   # MOVED is an AskError too, in redis-py
            node = self._cluster.nodes_manager._get_or_create_cluster_node(   # noqa: SLF001 - redis-py's node cache
                error.host, error.port, "primary", self._cluster.nodes_manager.nodes_cache)
            moved = isinstance(error, redis.exceptions.MovedError)
            if moved:
                self._refresh(force=True)
            return Route(route.slot, node, asking=not moved)
        time.sleep(0.05)
        if isinstance(error, redis.exceptions.TryAgainError):
            return route
        self._refresh(force=True)
        return self._route_slot(route.slot)

    def _refresh(self, *, force: bool = False) -> None:
        """Read the slot map anew (rate-limited unless ``force``: a MOVED is the map's owner speaking)."""
        now = time.monotonic()
        if not force and now - self._refreshed < REFRESH_EVERY:
            return
        with self._refresh_lock:
            self._refreshed = now
            try:
                self._cluster.nodes_manager.initialize()
            except (redis.RedisError, redis.exceptions.RedisClusterException, OSError):
                pass   # no node answers yet: the next call tries again

    def _run(self, *commands: tuple, route: Any = None) -> list[Any]:
        try:
            return super()._run(*commands, route=route)
        except NothingSent:
            if route is not None and route.slot is None:
                raise   # asked of that node itself (ping, live_node): another node is no answer
            # The owner named by our map is unreachable (killed?): read the map once more and send
            # there; nothing was sent, so this is safe for any command.
            self._refresh()
            return super()._run(*commands, route=self._route(commands))

    # -- pub/sub (the registry's notices) -------------------------------------------------------

    @property
    def client(self) -> Any:
        """What the registry watcher and announcer use: ``pubsub()`` and ``publish()`` (:class:`Notices`)."""
        return Notices(self)

    @property
    def cluster(self) -> RedisCluster:
        return self._cluster

    def live_node(self) -> ClusterNode:
        """A primary that answers now (the slot map read anew first): where a subscription goes."""
        self._refresh(force=True)
        for node in self._cluster.nodes_manager.get_nodes_by_server_type("primary"):
            try:
                self._run(("PING",), route=Route(None, node))
                return node
            except StoreError:
                continue
        raise NothingSent("redis cluster: no primary answers; nothing was sent")

    # -- the store ---------------------------------------------------------------------------

    def ping(self) -> bool:
        """Whether some node answers and says the cluster can serve every slot (``cluster_state:ok``)."""
        for node in list(self._cluster.nodes_manager.nodes_cache.values()):
            try:
                info = self._run(("CLUSTER", "INFO"), route=Route(None, node))[0]
            except StoreError:   # that node is away: ask another
                continue
            text = info.decode() if isinstance(info, bytes) else str(info)
            return "cluster_state:ok" in text
        return False
