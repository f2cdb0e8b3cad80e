"""Archive idle conversations from Redis to SQL, then let their Redis keys expire.

Runs in every ``switchboard serve`` process (and in ``switchboard worker``). It is idempotent and
at-least-once: events are inserted with "on conflict do nothing" on (conversation_id, seq), the
conversation row is upserted, and the Redis keys get a TTL only after the SQL commit. A conversation
that becomes active again clears its TTL on the next append (inside the store's append script), and is
archived again (only its new events) when it next goes idle.

Erasure (:mod:`support.privacy.customer_data`) tombstones a conversation in Redis before it deletes
anything; the archiver checks the tombstone after its SQL commit and deletes what it wrote if it finds
one. Either its commit lands before erasure's SQL delete (which then removes it) or its check comes after
the tombstone: an archive pass that read the conversation just before an erasure cannot resurrect it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from support.conversation.store import ConversationStore, visitor_identities
from support.db.models import ArchivedConversation, ArchivedMessage

log = logging.getLogger(__name__)

CONVERSATIONS: Table = ArchivedConversation.__table__  # type: ignore[attr-defined]
EVENTS: Table = ArchivedMessage.__table__  # type: ignore[attr-defined]
ARCHIVE_BATCH = 100  # conversations per sweep step: bounded work between event-loop yields
# Called with a batch of conversation ids before they are archived (the report facts' refresh: their
# final state is counted while Redis still holds their triage verdicts).
BeforeArchive = Callable[[list[str]], Awaitable[object]]


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _insert(dialect: str, table: Any) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def archive_conversation(
    store: ConversationStore, sessions: async_sessionmaker[AsyncSession], conversation_id: str
) -> int:
    """Copy one conversation's state and events to SQL; returns how many events it holds."""
    state = await store.get_state(conversation_id)
    if state is None:
        return 0
    summary, _upto, _window = await store.window(conversation_id)
    events = await store.events_after(conversation_id, 0)
    found = dict(visitor_identities(state.visitor))
    conv_row = {
        "id": conversation_id,
        "widget_key": state.widget_key,
        "visitor": json.dumps(state.visitor),
        "visitor_id": found.get("visitor"),
        "visitor_email": found.get("email"),
        "state": state.state,
        "summary": summary,
        "created_at": _dt(state.created_at),
        "last_activity": _dt(state.last_activity),
        "archived_at": datetime.now(UTC),
    }
    async with sessions() as session, session.begin():
        dialect = session.get_bind().dialect.name
        upsert = _insert(dialect, CONVERSATIONS).values(**conv_row)
        changed = (
            "visitor", "visitor_id", "visitor_email", "state", "summary", "last_activity", "archived_at",
        )  # fmt: skip
        update = {k: upsert.excluded[k] for k in changed}
        await session.execute(upsert.on_conflict_do_update(index_elements=["id"], set_=update))
        if events:
            rows = [
                {
                    "conversation_id": conversation_id, "seq": ev.seq, "event_id": ev.id, "type": ev.type,
                    "role": ev.role, "text": ev.text, "created_at": _dt(ev.created_at),
                    "client_id": ev.client_id, "reply_id": ev.reply_id,
                    "author": json.dumps(ev.author) if ev.author is not None else None,
                    "extra": json.dumps(ev.extra),
                }
                for ev in events
            ]  # fmt: skip
            insert = _insert(dialect, EVENTS).values(rows)
            await session.execute(insert.on_conflict_do_nothing(index_elements=["conversation_id", "seq"]))
    if await store.is_erased(conversation_id):  # erased while we copied it: see the module docstring
        async with sessions() as session, session.begin():
            await delete_archived(session, [conversation_id])
        return 0
    return len(events)


async def delete_archived(session: AsyncSession, conversation_ids: list[str]) -> tuple[int, int]:
    """Delete archived conversations and their events in the caller's transaction; returns how many
    (conversations, events) rows went."""
    if not conversation_ids:
        return 0, 0
    events = await session.execute(delete(EVENTS).where(EVENTS.c.conversation_id.in_(conversation_ids)))
    convs = await session.execute(delete(CONVERSATIONS).where(CONVERSATIONS.c.id.in_(conversation_ids)))
    return int(convs.rowcount or 0), int(events.rowcount or 0)  # type: ignore[attr-defined]


async def archive_idle(
    store: ConversationStore,
    sessions: async_sessionmaker[AsyncSession],
    *,
    idle_s: float,
    ttl_s: int,
    now: datetime | None = None,
    before_archive: BeforeArchive | None = None,
) -> int:
    """Archive every conversation idle for ``idle_s``; its Redis keys then expire after ``ttl_s``.

    ``before_archive`` sees each batch first; its failure is logged and archiving goes on (Redis memory
    matters more than one pass of a derived table, which can be rebuilt from the archive).
    """
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=idle_s)
    archived = 0
    while True:
        batch = await store.idle_conversations(cutoff, ARCHIVE_BATCH)
        if not batch:
            return archived
        if before_archive is not None:
            try:
                await before_archive([conversation_id for conversation_id, _ in batch])
            except Exception:
                log.exception("before archiving %d conversations", len(batch))
        for conversation_id, score in batch:
            await archive_conversation(store, sessions, conversation_id)
            await store.touch_expiry(conversation_id, ttl_s)
            if not await store.forget_if_idle(conversation_id, score):
                # It became active while we archived: the next append already cleared the TTL.
                log.info("conversation %s became active during archiving", conversation_id)
            archived += 1
        if len(batch) < ARCHIVE_BATCH:
            return archived
