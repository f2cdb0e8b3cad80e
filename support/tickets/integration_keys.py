"""Integration keys: how another system (a contact form, an e-mail bridge) files and reads tickets.

A key is ``sbk_`` followed by 43 URL-safe characters (32 random bytes). Only its SHA-256 hex digest is
stored (``key_hash``), with its first characters (``prefix``) so people can tell keys apart in lists; the
key itself is returned once, by :meth:`IntegrationKeys.create`, and can never be read back. A key this
random needs no slow hash: nobody can search 256 bits, and a plain digest lets a request find its key by
one indexed lookup (so comparing in constant time does not matter either: the lookup is by digest).

Each key carries scopes (:data:`SCOPES`): ``tickets:write`` files tickets, ``tickets:read`` reads the
tickets that key filed. A revoked key stays listed (with ``revoked_at``) and never authenticates again.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, or_, select, update

from support.audit import AuditSink, NoAudit
from support.db.models import IntegrationKey, utcnow
from support.errors import Forbidden, NotFound, Unauthorized, ValidationFailed

KEY_PREFIX = "sbk_"
KEY_RANDOM_BYTES = 32  # 256 bits: beyond any search, so a plain SHA-256 digest is a safe thing to store
# ``sbk_`` + token_urlsafe(32) is 47 characters; anything much longer is not a key (and is not hashed).
MAX_KEY_CHARS = 100
SHOWN_PREFIX_CHARS = 12  # ``sbk_`` and 8 random characters: enough to tell keys apart, useless to guess
TICKETS_WRITE = "tickets:write"
TICKETS_READ = "tickets:read"
SCOPES = (TICKETS_WRITE, TICKETS_READ)
MAX_NAME_CHARS = 120  # the column's length
# ``last_used_at`` is written at most this often per key: a busy integration must not turn every request
# into a write (SQLite has one writer).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def key_digest(key: str) -> str:
    """What is stored of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def looks_like_key(key: str) -> bool:
    """Whether ``key`` has a key's shape (checked before any lookup)."""
    return key.startswith(KEY_PREFIX) and len(key) <= MAX_KEY_CHARS and key.isascii() and key.isprintable()


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands datetimes back naive; they were stored as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def key_json(key: IntegrationKey) -> dict[str, Any]:
    """A key as lists show it: never the key, never its hash."""
    return {
        "id": key.id, "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes),
        "created_by": key.created_by, "created_at": _iso(key.created_at),
        "last_used_at": _iso(key.last_used_at), "revoked_at": _iso(key.revoked_at),
    }  # fmt: skip


def parse_scopes(scopes: Sequence[str] | None) -> list[str]:
    """The scopes asked for, in the canonical order; every scope when none are given.
    :class:`ValidationFailed` for an unknown scope or an empty list."""
    if scopes is None:
        return list(SCOPES)
    if isinstance(scopes, str) or not all(isinstance(s, str) for s in scopes):
        raise ValidationFailed("scopes must be a list of strings")
    unknown = sorted({s for s in scopes if s not in SCOPES})
    if unknown:
        raise ValidationFailed(f"unknown scope {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    if not scopes:
        raise ValidationFailed(f"scopes must not be empty; known: {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in scopes]


class IntegrationKeys:
    """Creates, checks, lists and revokes integration keys; the session factory is passed in."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, audit: AuditSink | None = None) -> None:
        self._sessions = sessions
        self._audit: AuditSink = audit or NoAudit()

    async def create(
        self, name: str, scopes: Sequence[str] | None = None, created_by: str | None = None
    ) -> tuple[IntegrationKey, str]:
        """A new key and its plaintext, which is never available again. :class:`ValidationFailed` for an
        empty or long name, or an unknown scope."""
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > MAX_NAME_CHARS:
            raise ValidationFailed(f"name must have 1 to {MAX_NAME_CHARS} characters")
        plaintext = new_key()
        key = IntegrationKey(
            name=name, prefix=plaintext[:SHOWN_PREFIX_CHARS], key_hash=key_digest(plaintext),
            scopes=parse_scopes(scopes), created_by=created_by,
        )  # fmt: skip
        async with self._sessions() as session:
            session.add(key)
            await session.commit()
            await session.refresh(key)
        await self._audit.record(created_by, "integration_key.created", "integration_key", key.id,
                                 {"scopes": list(key.scopes)})  # fmt: skip
        return key, plaintext

    async def authenticate(self, key: str, scope: str | None = None) -> IntegrationKey:
        """The live key ``key`` is, if it has ``scope`` (None: any scope). :class:`Unauthorized` for a
        malformed, unknown or revoked key; :class:`Forbidden` for a key without the scope."""
        if not looks_like_key(key):
            raise Unauthorized("missing or malformed integration key")
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(IntegrationKey).where(col(IntegrationKey.key_hash) == key_digest(key))
                )
            ).scalar_one_or_none()
        if found is None or found.revoked_at is not None:
            # The same answer for both: a caller learns nothing about which keys ever existed.
            raise Unauthorized("unknown or revoked integration key")
        if scope is not None and scope not in found.scopes:
            raise Forbidden(f"this integration key lacks the {scope} scope")
        await self._touch(found)
        return found

    async def _touch(self, key: IntegrationKey) -> None:
        """Record the use, at most once per :data:`LAST_USED_RESOLUTION` (one conditional UPDATE, so
        concurrent requests do not each write)."""
        now = utcnow()
        stale = now - LAST_USED_RESOLUTION
        last = key.last_used_at
        if last is not None and (last if last.tzinfo else last.replace(tzinfo=UTC)) > stale:
            return
        async with self._sessions() as session:
            await session.execute(
                update(IntegrationKey)
                .where(
                    col(IntegrationKey.id) == key.id,
                    or_(col(IntegrationKey.last_used_at).is_(None), col(IntegrationKey.last_used_at) < stale),
                )
                .values(last_used_at=now)
            )
            await session.commit()
        key.last_used_at = now

    async def get(self, key_id: str) -> IntegrationKey:
        """One key (revoked or not), else :class:`NotFound`."""
        async with self._sessions() as session:
            key = await session.get(IntegrationKey, key_id)
        if key is None:
            raise NotFound(f"no integration key {key_id}")
        return key

    async def revoke(self, key_id: str, *, by: str | None = None) -> IntegrationKey:
        """Revoke a key at once (its next request gets 401); revoking it again changes nothing.
        :class:`NotFound` for an unknown id."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(IntegrationKey)
                .where(col(IntegrationKey.id) == key_id, col(IntegrationKey.revoked_at).is_(None))
                .values(revoked_at=utcnow())
            )
        key = await self.get(key_id)
        await self._audit.record(by, "integration_key.revoked", "integration_key", key.id)
        return key

    async def list(self) -> list[IntegrationKey]:
        """Every key, newest first, revoked ones too."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(IntegrationKey).order_by(col(IntegrationKey.created_at).desc(), col(IntegrationKey.id))
            )
            return list(rows.scalars().all())
