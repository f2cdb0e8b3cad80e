"""Saved replies and the audit log as services on real SQL (SQLite, and PostgreSQL when configured) and a
real Redis conversation store: who sees and changes which reply, placeholders, limits, and an audit log
that records ids only and cannot be rewritten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from handoff.agents import AgentIdentity
from handoff.saved_replies import ReplyChange, SavedReplyService, placeholders_in, render
from support.audit import AuditLog, AuditQuery, as_csv
from support.conversation.store import ConversationStore
from support.db.engine import session_factory
from support.db.models import Example
from support.errors import Conflict, Forbidden, NotFound, ValidationFailed
from support.settings import SavedReplySettings

ADA = AgentIdentity(id="a" * 32, name="Ada Lovelace", role="agent")
BO = AgentIdentity(id="b" * 32, name="Bo", role="agent")
ROOT = AgentIdentity(id="r" * 32, name="Root", role="admin")
REFUND = ReplyChange(
    title="Refund", shortcut="/refund", text="Hi {{customer.first_name}}, refunds take 5 days."
)


@pytest.fixture
async def parts(db_engine: AsyncEngine, redis_client: Any) -> tuple[SavedReplyService, AuditLog]:
    sessions = session_factory(db_engine)
    audit = AuditLog(sessions)
    settings = SavedReplySettings(max_team=3, max_personal=2, max_text_chars=200)
    return SavedReplyService(sessions, ConversationStore(redis_client), settings, audit), audit


def test_placeholders_are_checked_and_filled_with_fallbacks() -> None:
    assert placeholders_in("Hi {{ customer.name }}, {{agent.name}} here") == ["customer.name", "agent.name"]
    with pytest.raises(ValidationFailed, match=r"\{\{customer.phone\}\}"):
        placeholders_in("Call {{customer.phone}}")
    text_ = "Hi {{customer.first_name}}, I'm {{agent.first_name}}. We wrote to {{customer.email}}."
    assert render(
        text_, {"customer.first_name": "Ada", "agent.first_name": "Bo", "customer.email": None}
    ) == ("Hi Ada, I'm Bo. We wrote to your email address.")
    assert render("Hi {{customer.name}}!", {"customer.name": ""}) == "Hi there!"


async def test_personal_replies_are_only_their_owners(parts: tuple[SavedReplyService, AuditLog]) -> None:
    replies, _ = parts
    mine = await replies.create(ADA, "personal", REFUND)
    team = await replies.create(ROOT, "team", ReplyChange(title="Hello", shortcut="hello", text="Hello!"))
    assert team.shortcut == "/hello"  # the slash is added
    assert [r.id for r in await replies.visible(ADA)] == [team.id, mine.id]
    assert [r.id for r in await replies.visible(BO)] == [team.id]
    assert [r.id for r in await replies.visible(ROOT)] == [team.id]  # admins do not see agents' own either
    # Bo cannot read, change or delete Ada's: the same 404 as for an id that does not exist.
    for attempt in (
        replies.get(mine.id, BO),
        replies.update(mine.id, BO, ReplyChange(text="pwned")),
        replies.delete(mine.id, BO),
        replies.delete(mine.id, ROOT),
    ):
        with pytest.raises(NotFound, match=f"no saved reply {mine.id}"):
            await attempt
    with pytest.raises(NotFound, match="no saved reply nope"):
        await replies.get("nope", BO)
    assert (await replies.get(mine.id, ADA)).text == REFUND.text  # unchanged
    # An agent reads the team's but cannot change it or add to it.
    with pytest.raises(Forbidden):
        await replies.update(team.id, ADA, ReplyChange(text="changed"))
    with pytest.raises(Forbidden):
        await replies.delete(team.id, ADA)
    with pytest.raises(Forbidden):
        await replies.create(ADA, "team", REFUND)
    assert (await replies.update(team.id, ROOT, ReplyChange(text="Hello again"))).text == "Hello again"
    await replies.delete(mine.id, ADA)
    assert [r.id for r in await replies.visible(ADA)] == [team.id]


async def test_the_filter_matches_title_shortcut_or_text_without_wildcards(
    parts: tuple[SavedReplyService, AuditLog],
) -> None:
    replies, _ = parts
    await replies.create(ADA, "personal", REFUND)
    await replies.create(
        ADA, "personal", ReplyChange(title="Shipping", shortcut="/ship", text="100% tracked")
    )
    assert [r.shortcut for r in await replies.visible(ADA, "REFUND")] == ["/refund"]
    assert [r.shortcut for r in await replies.visible(ADA, "tracked")] == ["/ship"]
    assert [r.shortcut for r in await replies.visible(ADA, "%")] == ["/ship"]  # a literal percent sign
    assert await replies.visible(ADA, "_d") == []  # a literal underscore, not "any one character"
    assert len(await replies.visible(ADA, "  ")) == 2


BAD = [
    (ReplyChange(title="T", shortcut="/x", text="y" * 201), "longer than 200"),
    (ReplyChange(title="T", shortcut="/x", text="Dear {{customer.address}}"), "unknown placeholder"),
    (ReplyChange(title="T", shortcut="/two words", text="y"), "shortcut"),
    (ReplyChange(title=" ", shortcut="/x", text="y"), "title"),
    (ReplyChange(title="T", shortcut="/x", text="   "), "empty"),
]


async def test_bad_replies_are_refused_and_nothing_is_saved(
    parts: tuple[SavedReplyService, AuditLog],
) -> None:
    replies, audit = parts
    for change, message in BAD:
        with pytest.raises(ValidationFailed, match=message):
            await replies.create(ADA, "personal", change)
    assert await replies.visible(ADA) == []
    assert (await audit.find(AuditQuery()))[0] == []


async def test_each_library_has_a_size_limit_and_unique_shortcuts(
    parts: tuple[SavedReplyService, AuditLog],
) -> None:
    replies, _ = parts
    await replies.create(ADA, "personal", REFUND)
    with pytest.raises(Conflict, match="/refund"):
        await replies.create(ADA, "personal", REFUND)
    await replies.create(BO, "personal", REFUND)  # Bo's own library: the same shortcut is fine
    await replies.create(ROOT, "team", REFUND)  # and the team's
    await replies.create(ADA, "personal", ReplyChange(title="Two", shortcut="/two", text="2"))
    with pytest.raises(ValidationFailed, match="holds 2 saved replies already"):
        await replies.create(ADA, "personal", ReplyChange(title="Three", shortcut="/three", text="3"))
    assert len(await replies.visible(ADA)) == 3  # two of hers, one of the team's


async def test_render_fills_the_conversations_customer_and_the_agent(
    parts: tuple[SavedReplyService, AuditLog], redis_client: Any
) -> None:
    replies, _ = parts
    store = ConversationStore(redis_client)
    await store.create_conversation("c-known", widget_key="pk", visitor={"name": "Grace Hopper"})
    await store.create_conversation("c-anon", widget_key="pk", visitor={})
    reply = await replies.create(
        ADA, "personal",
        ReplyChange(title="Hi", shortcut="/hi", text="Hi {{customer.first_name}}, {{agent.name}} here."),
    )  # fmt: skip
    assert await replies.render(reply.id, ADA, "c-known") == "Hi Grace, Ada Lovelace here."
    assert await replies.render(reply.id, ADA, "c-anon") == "Hi there, Ada Lovelace here."
    with pytest.raises(NotFound):
        await replies.render(reply.id, BO, "c-known")  # not Bo's
    with pytest.raises(NotFound):
        await replies.render(reply.id, ADA, "c-missing")


async def test_an_approved_example_becomes_a_reply_with_placeholders(
    parts: tuple[SavedReplyService, AuditLog], db_engine: AsyncEngine
) -> None:
    replies, _ = parts
    async with session_factory(db_engine)() as session:
        approved = Example(
            customer_message="where is my refund", agent_text="Hi [NAME], [AGENT_NAME] here: 5 days.",
            intent="returns_refunds", status="approved",
        )  # fmt: skip
        pending = Example(customer_message="q", agent_text="a", status="pending")
        session.add_all([approved, pending])
        await session.commit()
    with pytest.raises(Forbidden):
        await replies.from_example(approved.id, ADA, "team", title=None, shortcut=None)
    reply = await replies.from_example(approved.id, ROOT, "team", title=None, shortcut=None)
    assert (reply.scope, reply.title, reply.shortcut, reply.example_id) == (
        "team", "Returns refunds", "/returns-refunds", approved.id,
    )  # fmt: skip
    assert reply.text == "Hi {{customer.name}}, {{agent.name}} here: 5 days."
    mine = await replies.from_example(approved.id, ADA, "personal", title="Mine", shortcut="/mine")
    assert (mine.scope, mine.owner_id) == ("personal", ADA.id)
    with pytest.raises(Conflict, match="approved"):
        await replies.from_example(pending.id, ROOT, "team", title=None, shortcut=None)
    with pytest.raises(NotFound):
        await replies.from_example("nope", ROOT, "team", title=None, shortcut=None)


async def test_the_audit_log_pages_filters_and_never_holds_reply_text(
    parts: tuple[SavedReplyService, AuditLog],
) -> None:
    replies, audit = parts
    reply = await replies.create(ADA, "personal", REFUND)
    await replies.update(reply.id, ADA, ReplyChange(text="Refunds take {{agent.name}} 3 days."))
    await replies.delete(reply.id, ADA)
    for n in range(3):
        await audit.record(ROOT.id, "conversation.claimed", "conversation", f"c{n}")
    first, before = await audit.find(AuditQuery(limit=4))
    assert [e.action for e in first] == [*["conversation.claimed"] * 3, "saved_reply.deleted"]
    assert before == first[-1].id
    rest, after = await audit.find(AuditQuery(limit=4, before=before))
    assert [e.action for e in rest] == ["saved_reply.updated", "saved_reply.created"]
    assert after is None
    assert rest[0].details == {"scope": "personal", "shortcut": "/refund", "fields": ["text"]}
    assert "Refunds" not in as_csv(first + rest)
    mine, _ = await audit.find(AuditQuery(actor=ADA.id, action="saved_reply."))
    assert len(mine) == 3
    assert (await audit.find(AuditQuery(action="saved_reply")))[0] == []  # exact unless it ends in a dot
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert (await audit.find(AuditQuery(since=later)))[0] == []
    assert len((await audit.find(AuditQuery(until=later)))[0]) == 6
    with pytest.raises(ValidationFailed):
        await audit.find(AuditQuery(since=later, until=later - timedelta(days=1)))


async def test_the_audit_table_refuses_updates_and_deletes(
    parts: tuple[SavedReplyService, AuditLog], db_engine: AsyncEngine
) -> None:
    _, audit = parts
    await audit.record(ROOT.id, "account.created", "agent", ADA.id, {"role": "agent"})
    for statement in ("UPDATE audit_entry SET actor_id = 'someone'", "DELETE FROM audit_entry"):
        with pytest.raises((DBAPIError, IntegrityError), match="append-only"):
            async with db_engine.begin() as conn:
                await conn.execute(text(statement))
    entries, _ = await audit.find(AuditQuery())
    assert [(e.actor_id, e.action, e.target_id) for e in entries] == [(ROOT.id, "account.created", ADA.id)]
