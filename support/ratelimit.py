"""Abuse limits shared by every process, and the client address they are counted against.

What is limited (each a ``SWITCHBOARD_LIMIT_*`` setting, see :class:`~support.settings.LimitSettings`):
new widget sessions per client address; customer messages per conversation; bot-answered messages
("model turns") per conversation and per client address, so one client can never take more than its
share of the shared model budget (:mod:`support.llm.budget`); agent login attempts per account and
address, and per address; tickets filed per integration key, and failed integration-key authentications
per address (so keys cannot be guessed at speed).

Counting is the ``limits`` package's *sliding window counter* over Redis: one Lua script per check, two
small counters per limit and subject, and Redis key TTLs as the only clock (its moving window would
stamp entries with each process's own clock, and keep one list entry per hit). The counters approximate
a true sliding window by weighting the previous fixed window; they never allow more than the limit in
one fixed window and at most twice it across a boundary, which is what an abuse limit needs.

The storage reuses the process's Redis connection pool (``connection_pool=``, which ``limits`` accepts
for exactly this): no second client to own, and the pool's bound and blocking wait apply to limit checks
too. The runtime closes the pool; ``limits`` holds no other resource. Keys: see
:data:`support.keys.RATE_LIMIT_PREFIX`.

On a Redis Cluster (``redis+cluster://``) the storage cannot share the process's cluster client; it
creates its own (``limits``' ``async+redis+cluster://`` storage), which :meth:`RateLimits.aclose` closes.

The client address (:func:`client_address`) is the socket peer, or, when that peer is a trusted proxy
(``SWITCHBOARD_TRUSTED_PROXIES``), the right-most ``X-Forwarded-For`` hop that is not itself trusted:
hops to its left were written by the client and prove nothing. IPv6 clients are counted per /64, the
block one host is normally given.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from litestar.connection import ASGIConnection
from redis.asyncio.cluster import RedisCluster

from support import keys, metrics
from support.conversation.store import ConversationState, ConversationStore
from support.errors import ConfigurationError, RateLimited, Unauthorized
from support.redis_client import RedisClient
from support.settings import LimitSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV6_CLIENT_PREFIX = 64  # one IPv6 host usually owns a whole /64: counting per address would be no limit
log = logging.getLogger(__name__)
UNKNOWN_CLIENT = "unknown"  # no peer address (a Unix-socket listener): all such clients share one count
# States in which a customer message is not answered by the bot (no model call), so costs no model turn.
# Per cluster node, for the limit checks' own cluster client: a check holds a connection for one script.
CLUSTER_MAX_CONNECTIONS = 200
NOT_MODEL_BOUND_STATES = frozenset({"queued", "agent"})


def limits_uri(redis_url: str) -> str:
    """The ``limits`` storage URI for a Redis URL Switchboard accepts (``redis://``, ``rediss://``, or
    ``unix://`` as the embedded server uses); ``limits`` wants its own ``async+`` schemes."""
    for scheme, limits_scheme in (
        ("redis+cluster://", "async+redis+cluster://"),
        ("rediss+cluster://", "async+redis+cluster://"),  # TLS is the ``ssl`` option (see over_redis)
        ("redis://", "async+redis://"),
        ("rediss://", "async+rediss://"),
        ("unix://", "async+redis+unix://"),
    ):
        if redis_url.startswith(scheme):
            return limits_scheme + redis_url.removeprefix(scheme)
    raise ConfigurationError(f"unsupported Redis URL scheme for rate limits: {redis_url.split(':', 1)[0]}")


def _parse_ip(text: str | None) -> IPAddress | None:
    """An address from a peer or a forwarded hop, tolerating a port (``1.2.3.4:80``, ``[::1]:80``)."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> str:
    """Who the client is: ``peer`` unless it is a trusted proxy; then walk ``X-Forwarded-For`` (every
    header line, in order) from the right, skipping trusted hops: the first untrusted hop is the client.
    If every hop is trusted, the left-most is; an unparsable hop ends the walk at the last good one."""
    address = _parse_ip(peer)
    if address is None:
        return peer or UNKNOWN_CLIENT
    if not _trusted(address, trusted):
        return str(address)
    hops = [hop for line in forwarded_for for hop in line.split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_address = _parse_ip(hop)
        if hop_address is None:
            break
        address = hop_address
        if not _trusted(address, trusted):
            break
    return str(address)


def limit_subject(address: str) -> str:
    """What a per-address limit counts under: the IPv4 address, or the IPv6 /64 it belongs to."""
    parsed = _parse_ip(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))
    return str(parsed) if parsed is not None else address


def _account(email: str) -> str:
    """An account's identifier in limit keys: a digest, so no e-mail address is written into Redis."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Limit:
    """One configured limit: its setting's name (also its key namespace) and its windows."""

    name: str
    windows: tuple[RateLimitItem, ...]

    @classmethod
    def of(cls, settings: LimitSettings, name: str) -> Limit:
        spec: str = getattr(settings, name)
        windows = sorted(parse_many(spec), key=lambda w: w.get_expiry()) if spec else []
        return cls(name, tuple(windows))


class RateLimits:
    """Checks and counts every abuse limit; raises :class:`RateLimited` (with ``retry_after_s``)."""

    def __init__(
        self,
        storage: RedisStorage,
        settings: LimitSettings,
        *,
        store: ConversationStore,
        model_turns: bool,
        owns_client: bool = False,
    ) -> None:
        """``model_turns``: False in offline mode, where no message costs a model call. ``owns_client``:
        the storage created its own Redis client, which :meth:`aclose` closes."""
        self._storage = storage
        self._owns_client = owns_client
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._store = store
        self._model_turns = model_turns
        self._trusted: tuple[IPNetwork, ...] = tuple(settings.trusted_proxies)
        self.sessions_per_ip = Limit.of(settings, "sessions_per_ip")
        self.messages_per_conversation = Limit.of(settings, "messages_per_conversation")
        self.model_turns_per_conversation = Limit.of(settings, "model_turns_per_conversation")
        self.model_turns_per_ip = Limit.of(settings, "model_turns_per_ip")
        self.login_attempts_per_account = Limit.of(settings, "login_attempts_per_account")
        self.login_attempts_per_ip = Limit.of(settings, "login_attempts_per_ip")
        self.tickets_per_key = Limit.of(settings, "tickets_per_key")
        self.api_key_failures_per_ip = Limit.of(settings, "api_key_failures_per_ip")

    @classmethod
    def over_redis(
        cls, client: RedisClient, redis_url: str, settings: LimitSettings, **kwargs: Any
    ) -> RateLimits:
        """Limits counted on ``client``'s connection pool (see the module docstring: who owns what)."""
        if isinstance(client, RedisCluster):
            # ``limits`` cannot share a cluster client: its storage builds its own, which the limits own
            # and :meth:`aclose` closes. Its keys already carry one hash tag per limit and subject.
            storage: RedisStorage = RedisClusterStorage(
                limits_uri(redis_url), implementation="redispy", key_prefix=keys.RATE_LIMIT_PREFIX,
                max_connections=CLUSTER_MAX_CONNECTIONS, ssl=redis_url.startswith("rediss+"),
            )  # fmt: skip
            return cls(storage, settings, owns_client=True, **kwargs)
        pool = cast(Any, client.connection_pool)  # ``limits`` types its options as scalars; a pool is allowed
        storage = RedisStorage(
            limits_uri(redis_url), implementation="redispy", key_prefix=keys.RATE_LIMIT_PREFIX,
            connection_pool=pool,
        )  # fmt: skip
        return cls(storage, settings, **kwargs)

    async def aclose(self) -> None:
        """Close the cluster client the storage created (a no-op over a shared single-server pool)."""
        if self._owns_client:
            # ``limits`` offers no close; its redis-py bridge hands out the client it made. Undocumented,
            # so looked up defensively: the cluster tests run with unclosed-client warnings as errors.
            get_connection = getattr(self._storage.bridge, "get_connection", None)
            client = get_connection() if get_connection is not None else None
            if isinstance(client, RedisCluster):
                await client.aclose()
            else:
                log.warning("rate limits: could not close the limits package's cluster client")

    def client(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        """The client address of an HTTP request or a WebSocket (see :func:`client_address`)."""
        peer = connection.client.host if connection.client else None
        return client_address(peer, connection.headers.getall("x-forwarded-for", []), self._trusted)

    async def new_session(self, client: str) -> None:
        """Count a widget session request from ``client``; :class:`RateLimited` over the limit."""
        await self._hit("too many new chat sessions", (self.sessions_per_ip, limit_subject(client)))

    async def customer_message(self, conversation_id: str, client: str) -> None:
        """Count a customer message before it is stored; :class:`RateLimited` (and nothing stored) over
        a limit. Redis round trips, each one script or read: the conversation's message count alongside
        a read of its state; then, only when the bot will answer it, its model-turn counts for the
        conversation and the address side by side (a second window of the same limit, e.g. the address's
        hourly one, follows its first)."""
        count = self._hit(
            "too many messages in this conversation", (self.messages_per_conversation, conversation_id)
        )
        if not self._model_turns:
            await count
            return
        # Both awaited to the end (no stray task), then the first failure raised: a refusal over a read error.
        counted, state = await asyncio.gather(
            count, self._store.get_state(conversation_id), return_exceptions=True
        )
        for outcome in (counted, state):
            if isinstance(outcome, BaseException):
                raise outcome
        if isinstance(state, ConversationState) and state.state in NOT_MODEL_BOUND_STATES:
            return
        await self._hit(
            "too many questions for the assistant",
            (self.model_turns_per_conversation, conversation_id),
            (self.model_turns_per_ip, limit_subject(client)),
        )

    async def attachment_upload(self, conversation_id: str) -> None:
        """Count a customer's upload as a message of its conversation (no model turn: the message that
        carries it counts that); :class:`RateLimited` over the limit, before anything is read."""
        await self._hit(
            "too many uploads in this conversation", (self.messages_per_conversation, conversation_id)
        )

    @contextlib.asynccontextmanager
    async def login_attempt(self, email: str, client: str) -> AsyncIterator[None]:
        """Count a login attempt before the password is checked, so a parallel burst cannot overshoot.
        A success clears the account's count for this address (its failures no longer matter); the
        address's own count stays, so one good account does not reset guessing at others."""
        address = limit_subject(client)
        account = (self.login_attempts_per_account, f"{_account(email)}:{address}")
        await self._hit("too many login attempts", account, (self.login_attempts_per_ip, address))
        yield  # a wrong password (Unauthorized) or any other error leaves the attempt counted
        await asyncio.gather(*(self._limiter.clear(w, self._id(account)) for w in account[0].windows))

    async def ticket(self, key_id: str) -> None:
        """Count a ticket request of one integration key; :class:`RateLimited` over the limit."""
        await self._hit("too many tickets for this integration key", (self.tickets_per_key, key_id))

    @contextlib.asynccontextmanager
    async def api_key_attempt(self, client: str) -> AsyncIterator[None]:
        """Guard one integration-key authentication from ``client``. An address already over its failure
        limit is refused before the key is looked at (a valid key included: otherwise an address that is
        guessing could still tell a right guess from a wrong one). An :class:`Unauthorized` inside the
        block is counted as a failure; the failure that goes over the limit is answered 429 too. Success
        and :class:`~support.errors.Forbidden` (a real key without the scope) are not counted."""
        check = (self.api_key_failures_per_ip, limit_subject(client))
        message = "too many failed integration-key attempts from this address"
        ident = self._id(check)
        for window in check[0].windows:
            if not await self._limiter.test(window, ident):
                await self._refuse(message, [(check[0], (window, ident))])
        try:
            yield
        except Unauthorized:
            await self._hit(message, check)
            raise

    @staticmethod
    def _id(check: tuple[Limit, str]) -> str:
        limit, subject = check
        return keys.rate_limit_subject(limit.name, subject)

    async def _hit(self, message: str, *checks: tuple[Limit, str]) -> None:
        """Count one hit on every check, the checks concurrently; over any, raise :class:`RateLimited`
        with the longest wait among the refusing windows. Within one limit the windows are hit shortest
        first and the first refusal stops it, so a refused request is not counted by the limit that
        refused it (a longer window does not fill up with requests a shorter one turned away)."""
        outcomes = await asyncio.gather(*(self._hit_one(c) for c in checks))
        refused = [(check[0], r) for check, r in zip(checks, outcomes, strict=True) if r is not None]
        if refused:
            await self._refuse(message, refused)

    async def _refuse(self, message: str, refused: list[tuple[Limit, tuple[RateLimitItem, str]]]) -> None:
        """Raise :class:`RateLimited` with the longest wait among the refusing windows."""
        stats = await asyncio.gather(*(self._limiter.get_window_stats(w, i) for _, (w, i) in refused))
        waits = [max(1, math.ceil(s.reset_time - time.time())) for s in stats]
        longest = max(range(len(waits)), key=waits.__getitem__)
        metrics.RATE_LIMITED.labels(limit=refused[longest][0].name).inc()
        raise RateLimited(
            f"{message}; retry in {waits[longest]} s",
            retry_after_s=waits[longest],
            limit=refused[longest][0].name,
        )

    async def _hit_one(self, check: tuple[Limit, str]) -> tuple[RateLimitItem, str] | None:
        """Hit one limit's windows in turn; the window that refused, or None."""
        ident = self._id(check)
        for window in check[0].windows:
            if not await self._limiter.hit(window, ident):
                return window, ident
        return None
