"""Examples from agent replies on SQLite and PostgreSQL: edit stats, admin changes, retrieval, edit rates."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from handoff.examples import ExampleService, edit_stats
from handoff.scrub import ExampleScrubber, People
from support.db.engine import session_factory
from support.db.models import Example
from support.errors import NotFound, ValidationFailed
from support.redaction import Redactor


def test_edit_stats() -> None:
    assert edit_stats(None, "anything") == (None, None)
    assert edit_stats("same", "same") == (0, 0.0)
    assert edit_stats("kitten", "sitting") == (3, round(3 / 7, 4))


async def record(service: ExampleService, question: str, answer: str, **kw: object) -> str:
    example = await service.record(
        conversation_id="c", seq=2, customer_message=question, context="", bot_draft=kw.get("draft"),  # type: ignore[arg-type]
        agent_text=answer, intent=kw.get("intent", "shipping"), agent_id="a1", policy_version="v1",  # type: ignore[arg-type]
    )  # fmt: skip
    return example.id


async def test_retrieval_follows_approval_curation_and_other_processes(
    db_engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    writer = ExampleService(session_factory(db_engine), redis_client, auto_approve=False)
    reader = ExampleService(session_factory(db_engine), redis_client)  # another process's view
    tent = await record(writer, "Can I return a used tent?", "Yes, within 30 days if clean and dry.")
    await record(writer, "Do you ship to Norway?", "Yes, in 5-7 working days.")
    await reader.refresh()
    assert reader.similar("return a tent", 3) == []  # pending examples are never retrieved
    await writer.update(tent, status="approved")
    await reader.refresh()
    found = reader.similar("can I return my tent", 3, min_score=0.3)
    assert [e.id for e, _ in found] == [tent]
    prompt = reader.for_prompt("can I return my tent", 3, 0.3)
    assert prompt[0].answer == "Yes, within 30 days if clean and dry."
    # curated: moves into the cached block, and out of the per-turn retrieval
    await writer.update(tent, curated=True, agent_text="Yes: within 30 days, clean and dry.")
    await reader.refresh()
    assert [c.answer for c in reader.curated] == ["Yes: within 30 days, clean and dry."]
    assert reader.for_prompt("can I return my tent", 3, 0.3) == []
    await writer.update(tent, curated=False, status="retired")
    await reader.refresh()
    assert reader.curated == []
    assert reader.similar("return my tent", 3) == []


async def test_bad_admin_changes_are_refused(db_engine: AsyncEngine, redis_client: aioredis.Redis) -> None:
    service = ExampleService(session_factory(db_engine), redis_client, auto_approve=False)
    example_id = await record(service, "q", "a")
    with pytest.raises(ValidationFailed):
        await service.update(example_id, status="maybe")
    with pytest.raises(ValidationFailed):
        await service.update(example_id, curated=True)  # pending cannot be curated
    with pytest.raises(NotFound):
        await service.update("nope", status="approved")
    (unchanged,) = await service.find()
    assert (unchanged.status, unchanged.curated) == ("pending", False)


async def test_edit_rates_per_intent(db_engine: AsyncEngine, redis_client: aioredis.Redis) -> None:
    service = ExampleService(session_factory(db_engine), redis_client)
    await record(service, "q1", "same text", draft="same text", intent="shipping")
    await record(service, "q2", "changed a lot", draft="original", intent="shipping")
    await record(service, "q3", "written anew", intent="shipping")
    await record(service, "q4", "refund ok", draft="refund not ok", intent="returns_refunds")
    rates = {r.intent: r for r in await service.edit_rates()}
    assert (rates["shipping"].examples, rates["shipping"].with_draft, rates["shipping"].edited) == (3, 2, 1)
    assert rates["shipping"].edit_rate == 0.5
    assert rates["returns_refunds"].edit_rate == 1.0


async def test_examples_are_stored_scrubbed_and_flagged_ones_wait(
    db_engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    service = ExampleService(session_factory(db_engine), redis_client, scrubber=ExampleScrubber(Redactor()))
    people = People(customer_name="Jane Doe", customer_email="jane@shop.test", agent_name="Ada")
    clean = await service.record(
        conversation_id="c1", seq=2, customer_message="Jane here: order #884213 arrived broken",
        context="customer: Jane here: order #884213 arrived broken", bot_draft="Sorry Jane!",
        agent_text="Sorry Jane, I sent a new one for order #884213. Ada", intent="returns_refunds",
        agent_id="a1", policy_version="v1", people=people,
    )  # fmt: skip
    assert (clean.customer_message, clean.agent_text) == (
        "[NAME] here: order [ORDER_NUMBER] arrived broken",
        "Sorry [NAME], I sent a new one for order [ORDER_NUMBER]. [AGENT_NAME]",
    )
    assert (clean.context, clean.bot_draft) == ("customer: [NAME] here: order [ORDER_NUMBER] arrived broken",
                                                "Sorry [NAME]!")  # fmt: skip
    assert (clean.status, clean.review_flags) == ("approved", "")
    short = await service.record(
        conversation_id="c2", seq=2, customer_message="Is the tent waterproof?", context="",
        bot_draft=None, agent_text="Yes.", intent=None, agent_id="a1", policy_version="v1",
    )  # fmt: skip
    assert (short.status, short.review_flags) == ("pending", "too_short")


async def test_retrieval_excludes_the_asking_conversation(
    db_engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    service = ExampleService(session_factory(db_engine), redis_client)
    for cid in ("c1", "c1", "c2"):
        await service.record(
            conversation_id=cid, seq=2, customer_message="Can I return a used tent?", context="",
            bot_draft=None, agent_text=f"Yes, within 30 days if clean and dry ({cid}).", intent=None,
            agent_id="a1", policy_version="v1",
        )  # fmt: skip
    await service.refresh()
    assert [
        e.conversation_id for e, _ in service.similar("return a used tent", 3, exclude_conversation="c1")
    ] == ["c2"]
    assert [
        p.conversation_id for p in service.for_prompt("return a used tent", 3, 0.0, exclude_conversation="c2")
    ] == [
        "c1",
        "c1",
    ]


async def test_rows_stored_before_redaction_are_scrubbed_once_and_reviewed_again(
    db_engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    sessions = session_factory(db_engine)
    async with sessions() as session:
        session.add(
            Example(
                conversation_id="old", customer_message="Refund card 4111 1111 1111 1111 please",
                agent_text="Refunded to 4111 1111 1111 1111 for order #884213.", status="approved",
                curated=True, redaction_version=0,
            )
        )  # fmt: skip
        await session.commit()
    service = ExampleService(sessions, redis_client, scrubber=ExampleScrubber(Redactor()))
    assert await service.rescrub_legacy() == 1
    assert await service.rescrub_legacy() == 0
    (row,) = await service.find()
    assert (row.customer_message, row.agent_text) == (
        "Refund card [CARD_1] please",
        "Refunded to [CARD_1] for order [ORDER_NUMBER].",
    )
    assert (row.status, row.curated, row.redaction_version) == ("approved", True, 1)
