"""The audit log: who did what, when, among admins and agents (an append-only SQL table).

Services record their own actions through the :class:`AuditSink` they were given (the desk, accounts,
knowledge, integration keys, webhooks, customer data, team hours, saved replies), never the HTTP handlers:
an action done through the CLI or a job is recorded the same way. An entry names people and things by id
and says *that* something happened, never its content: no message text, no customer e-mail address, so
erasing a customer leaves nothing of theirs here and the log need never be rewritten. The table refuses
UPDATE and DELETE by trigger (migration 0015); nothing in the API writes to it.

Recording is best effort after the fact: the action has already happened (a reply sent, a conversation
claimed) when it is recorded, so a failed write is logged loudly and does not turn the action into an
error.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support.db.models import AuditEntry, as_utc, iso_z
from support.errors import ValidationFailed

log = logging.getLogger(__name__)

PAGE_DEFAULT = 100
PAGE_MAX = 1000  # rows per page (and per CSV download): bounded memory per request
MAX_DETAIL_CHARS = 200  # a detail value is an id, a name of a field or a count, never prose
CSV_COLUMNS = ("id", "at", "actor_id", "action", "target_type", "target_id", "details")

DetailValue = str | int | float | bool | None | Sequence[str]

# The actions recorded, by area (docs/console.md, "Audit log"); ``action=`` filters by one, or by an area
# with its trailing dot (``conversation.``).
ACTIONS = (
    "conversation.claimed", "conversation.released", "conversation.transferred",
    "conversation.resolved", "conversation.returned_to_bot", "conversation.message_sent",
    "knowledge.saved", "knowledge.removed", "knowledge.activated",
    "account.created", "account.updated",
    "integration_key.created", "integration_key.revoked",
    "webhook.created", "webhook.deactivated",
    "customer_data.exported", "customer_data.erased",
    "team.hours_changed", "team.created", "team.updated", "team.members_changed", "account.skills_changed",
    "conversation.assigned",
    "saved_reply.created", "saved_reply.updated", "saved_reply.deleted",
)  # fmt: skip


class AuditSink(Protocol):
    """Where a service records what an admin or agent did."""

    async def record(
        self,
        actor_id: str | None,
        action: str,
        target_type: str,
        target_id: str | None = None,
        details: Mapping[str, DetailValue] | None = None,
    ) -> None:
        """Append one entry (``actor_id`` None: the system did it)."""
        ...


class NoAudit:
    """An audit sink that records nothing (tools and tests that build a service alone)."""

    async def record(
        self,
        actor_id: str | None,
        action: str,
        target_type: str,
        target_id: str | None = None,
        details: Mapping[str, DetailValue] | None = None,
    ) -> None:
        """Nothing."""


@dataclass(frozen=True)
class AuditQuery:
    """A page of the log: newest first, entries with ids below ``before`` (the previous page's
    ``next_before``), filtered by actor, action (or an area, ``conversation.``) and time range."""

    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = PAGE_DEFAULT
    before: int | None = None


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """An entry as the API returns it."""
    return {
        "id": entry.id, "at": iso_z(entry.at), "actor_id": entry.actor_id, "action": entry.action,
        "target_type": entry.target_type, "target_id": entry.target_id, "details": entry.details,
    }  # fmt: skip


def _clean(details: Mapping[str, DetailValue] | None) -> dict[str, Any]:
    """Details as stored: short values only (a long string is cut, never stored whole)."""
    out: dict[str, Any] = {}
    for key, value in (details or {}).items():
        if isinstance(value, str):
            out[key] = value[:MAX_DETAIL_CHARS]
        elif isinstance(value, list | tuple):
            out[key] = [str(v)[:MAX_DETAIL_CHARS] for v in value]
        else:
            out[key] = value
    return out


class AuditLog:
    """Appends entries and reads pages of them; the session factory is passed in (built in the lifespan)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record(
        self,
        actor_id: str | None,
        action: str,
        target_type: str,
        target_id: str | None = None,
        details: Mapping[str, DetailValue] | None = None,
    ) -> None:
        """Append one entry; a failure is logged (with the entry), not raised (see the module docstring)."""
        entry = AuditEntry(
            actor_id=actor_id, action=action, target_type=target_type, target_id=target_id,
            details=_clean(details),
        )  # fmt: skip
        try:
            async with self._sessions() as session:
                session.add(entry)
                await session.commit()
        except Exception:
            log.exception("audit entry lost: %s by %s on %s %s", action, actor_id, target_type, target_id)

    async def find(self, query: AuditQuery) -> tuple[list[AuditEntry], int | None]:
        """One page, newest first, and the ``before`` of the next page (None: this is the last)."""
        if not 1 <= query.limit <= PAGE_MAX:
            raise ValidationFailed(f"`limit` must be between 1 and {PAGE_MAX}")
        if query.since is not None and query.until is not None and as_utc(query.since) > as_utc(query.until):
            raise ValidationFailed("`from` is after `to`")
        stmt = select(AuditEntry)
        if query.actor:
            stmt = stmt.where(col(AuditEntry.actor_id) == query.actor)
        if query.action:
            if query.action.endswith("."):
                stmt = stmt.where(col(AuditEntry.action).startswith(query.action, autoescape=True))
            else:
                stmt = stmt.where(col(AuditEntry.action) == query.action)
        if query.since is not None:
            stmt = stmt.where(col(AuditEntry.at) >= as_utc(query.since))
        if query.until is not None:
            stmt = stmt.where(col(AuditEntry.at) < as_utc(query.until))
        if query.before is not None:
            stmt = stmt.where(col(AuditEntry.id) < query.before)
        stmt = stmt.order_by(col(AuditEntry.id).desc()).limit(query.limit + 1)
        async with self._sessions() as session:
            rows = list((await session.execute(stmt)).scalars().all())
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return rows, (rows[-1].id if more and rows else None)


def as_csv(entries: Sequence[AuditEntry]) -> str:
    """Entries as CSV with a header row; ``details`` as compact JSON. Cells a spreadsheet would run as a
    formula (``=``, ``+``, ``-``, ``@`` first) are prefixed with ``'``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        row = entry_json(entry)
        row["details"] = json.dumps(row["details"], separators=(",", ":"), sort_keys=True)
        writer.writerow([_cell(row[column]) for column in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@") else text
