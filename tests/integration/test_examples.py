"""Examples from agent replies on SQLite and PostgreSQL: edit stats, admin changes, retrieval, edit rates."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from handoff.examples import ExampleService, edit_stats
from support.db.engine import session_factory
from support.errors import NotFound, ValidationFailed


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
