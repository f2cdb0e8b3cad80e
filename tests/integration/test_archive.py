"""Idle conversations are archived to SQL idempotently, then expire from Redis; activity revives them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from support import keys
from support.conversation.archive import archive_idle
from support.conversation.store import ConversationStore
from support.db.engine import session_factory
from support.db.models import ArchivedConversation, ArchivedMessage

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def _rows(engine: AsyncEngine) -> tuple[list[ArchivedConversation], list[ArchivedMessage]]:
    async with session_factory(engine)() as session:
        convs = list((await session.execute(select(ArchivedConversation))).scalars())
        msgs = list((await session.execute(select(ArchivedMessage).order_by(ArchivedMessage.seq))).scalars())
    return convs, msgs


async def test_idle_conversations_are_archived_once_and_then_expire(
    redis_client: aioredis.Redis, db_engine: AsyncEngine
) -> None:
    store = ConversationStore(redis_client)
    sessions = session_factory(db_engine)
    await store.create_conversation("c1", widget_key="pk", visitor={"name": "Ada"}, now=T0)
    await store.append_customer_message("c1", "m1", "Where is my order?", now=T0)
    await store.append_event(
        "c1", type="message", role="assistant", text="On its way.", reply_id="r1", now=T0
    )
    await store.create_conversation("c2", widget_key="pk", visitor={}, now=T0)
    await store.append_customer_message("c2", "m1", "still talking", now=T0 + timedelta(hours=1))

    later = T0 + timedelta(minutes=40)
    assert await archive_idle(store, sessions, idle_s=1800, ttl_s=3600, now=later) == 1
    assert await archive_idle(store, sessions, idle_s=1800, ttl_s=3600, now=later) == 0  # forgotten
    convs, msgs = await _rows(db_engine)
    assert [c.id for c in convs] == ["c1"]
    assert [(m.seq, m.role, m.text) for m in msgs] == [(1, "customer", "Where is my order?"),
                                                       (2, "assistant", "On its way.")]  # fmt: skip
    assert 0 < await redis_client.ttl(keys.conv_events("c1")) <= 3600
    assert await redis_client.ttl(keys.conv_events("c2")) == -1  # still active: no expiry


async def test_a_revived_conversation_keeps_its_keys_and_archives_only_new_events(
    redis_client: aioredis.Redis, db_engine: AsyncEngine
) -> None:
    store = ConversationStore(redis_client)
    sessions = session_factory(db_engine)
    await store.create_conversation("c1", widget_key="pk", visitor={}, now=T0)
    await store.append_customer_message("c1", "m1", "hello", now=T0)
    await archive_idle(store, sessions, idle_s=60, ttl_s=3600, now=T0 + timedelta(minutes=5))
    await store.append_customer_message("c1", "m2", "back again", now=T0 + timedelta(minutes=10))
    assert await redis_client.ttl(keys.conv_events("c1")) == -1  # activity cancelled the expiry
    # Archiving again is idempotent for seq 1 and adds seq 2 (at-least-once, no duplicates).
    await archive_idle(store, sessions, idle_s=60, ttl_s=3600, now=T0 + timedelta(minutes=20))
    await archive_idle(store, sessions, idle_s=0, ttl_s=3600, now=T0 + timedelta(minutes=30))
    _convs, msgs = await _rows(db_engine)
    assert [(m.seq, m.text) for m in msgs] == [(1, "hello"), (2, "back again")]
