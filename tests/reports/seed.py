"""Known conversation facts, ledger rows, examples and agents, with every report value worked out by hand
in the tests (docs/metrics.md has the definitions). ``NOW`` decides which bot conversations are *assumed*."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from support.db.models import Agent, ConversationFact, Example, ModelUsage

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
MON = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
FROM, TO = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 11, tzinfo=UTC)


def at(days: float, hours: float = 0, seconds: float = 0) -> datetime:
    return MON + timedelta(days=days, hours=hours, seconds=seconds)


def fact(cid: str, started: datetime, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "conversation_id": cid, "channel": "chat", "started_at": started, "intent": None,
        "policy_version": None, "agent_id": None, "resolution_type": "bot", "customer_messages": 1,
        "bot_messages": 1, "agent_messages": 0, "last_customer_at": started, "first_bot_reply_at": None,
        "last_bot_reply_at": None, "bot_first_response_s": None, "handoff_count": 0, "handed_off_at": None,
        "handoff_reason": None, "queue_wait_s": None, "human_first_response_s": None, "resolved_at": None,
        "resolved_by": None, "resolution_s": None, "confirmed": False, "reopened": False, "rating": None,
        "rated_at": None, "predicted_score": None, "predicted_reason": None, "predicted_at": None,
        "cost_usd": Decimal(0), "model_calls": 0, "updated_at": started,
    }  # fmt: skip
    row.update(kw)
    return row


FACTS = [
    # c1: bot, confirmed (rated 5); its prediction is ignored (it was rated)
    fact("c1", at(0, 10), intent="returns_refunds", policy_version="v1", last_bot_reply_at=at(0, 10, 60),
         bot_first_response_s=2.0, resolved_at=at(0, 10, 120), resolved_by="customer", resolution_s=120.0,
         confirmed=True, rating=5, predicted_score=1, cost_usd=Decimal("0.01")),
    # c2: bot, assumed (its reply was last, more than 24 h before NOW); asked for a rating, gave none
    fact("c2", at(0, 11), intent="returns_refunds", policy_version="v1", last_bot_reply_at=at(0, 11, 3),
         bot_first_response_s=3.0, resolved_at=at(0, 11, 300), resolution_s=3.0, predicted_score=4,
         cost_usd=Decimal("0.02")),
    # c3: bot, the customer wrote last: not resolved
    fact("c3", at(1, 9), intent="warranty_repairs", policy_version="v1", last_customer_at=at(1, 9, 300),
         last_bot_reply_at=at(1, 9, 240), bot_first_response_s=1.0, predicted_score=2,
         cost_usd=Decimal("0.005")),
    # c4: handed off, a person replied and resolved it; reopened; rated 2
    fact("c4", at(1, 12), intent="warranty_repairs", policy_version="v2", agent_id="ag1",
         resolution_type="handed_off", bot_first_response_s=4.0, handoff_count=1, handed_off_at=at(1, 12, 60),
         handoff_reason="low_confidence", queue_wait_s=30.0, human_first_response_s=45.0,
         resolved_at=at(1, 12, 600), resolution_s=600.0, reopened=True, rating=2, cost_usd=Decimal("0.03")),
    # c5: ticket handed off twice, nobody replied, closed and rated 1: unanswered, not resolved
    fact("c5", at(2, 8), channel="ticket", resolution_type="unanswered", handoff_count=2,
         handoff_reason="wants_human", resolved_at=at(2, 9), resolution_s=3600.0, rating=1),
    # c6: ticket, a person only, resolved, rated 4
    fact("c6", at(7, 10), channel="ticket", intent="returns_refunds", policy_version="v2", agent_id="ag2",
         resolution_type="human", handoff_count=1, handoff_reason="urgent", queue_wait_s=10.0,
         human_first_response_s=20.0, resolved_at=at(7, 10, 300), resolution_s=300.0, rating=4,
         cost_usd=Decimal("0.004")),
    # c7: bot replied last, but within 24 h of NOW: not assumed yet
    fact("c7", at(8, 11, 1800), policy_version="v2", last_bot_reply_at=at(8, 11, 1860),
         bot_first_response_s=5.0, cost_usd=Decimal("0.001")),
    # c8: bot replied last long ago, but rated 2: not assumed
    fact("c8", at(2, 15), intent="product_question", policy_version="v1", last_bot_reply_at=at(2, 15, 60),
         bot_first_response_s=2.5, resolved_at=at(2, 15, 600), resolution_s=600.0, rating=2,
         cost_usd=Decimal("0.002")),
    # outside the range
    fact("old", at(-13), intent="returns_refunds", confirmed=True, rating=5, cost_usd=Decimal(7)),
]  # fmt: skip


def usage(purpose: str, when: datetime, **kw: Any) -> dict[str, Any]:
    model = "claude-haiku-4-5" if purpose == "triage" else "claude-sonnet-4-6"
    row = {
        "purpose": purpose, "model": model, "conversation_id": "c1", "ticket_id": None,
        "policy_version": None,
        "input_tokens": 0, "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 0, "cache_read_tokens": 0,
        "output_tokens": 0, "cost_usd": Decimal(0), "latency_ms": 0.0, "ttft_ms": None, "request_id": None,
        "outcome": "ok", "attempts": 1, "batch": False, "redactions": None, "created_at": when,
    }  # fmt: skip
    row.update(kw)
    return row


LEDGER = [
    usage("triage", at(0, 10), input_tokens=300, output_tokens=40, cost_usd=Decimal("0.0005")),
    usage("answer", at(0, 10), input_tokens=100, cache_write_5m_tokens=9000, output_tokens=80,
          cost_usd=Decimal("0.0353")),
    usage("answer", at(1, 9), input_tokens=100, cache_read_tokens=9000, output_tokens=80,
          cost_usd=Decimal("0.0042")),
    usage("answer", at(1, 10), outcome="error:overloaded"),
    usage("answer", at(-30), cost_usd=Decimal(5)),  # outside the range
]  # fmt: skip


def example(
    intent: str | None, agent: str, draft: str | None, ratio: float | None, when: datetime
) -> dict[str, Any]:
    return {
        "id": f"e-{intent}-{agent}-{ratio}-{when.day}", "conversation_id": "c4", "seq": 3,
        "customer_message": "?", "context": "", "bot_draft": draft, "agent_text": "answer",
        "edit_distance": None, "edit_ratio": ratio, "intent": intent, "agent_id": agent,
        "policy_version": None, "status": "approved", "curated": False, "review_flags": "",
        "redaction_version": 1, "created_at": when, "updated_at": when,
    }  # fmt: skip


EXAMPLES = [
    example("returns_refunds", "ag1", "draft", 0.0, at(0, 12)),
    example("returns_refunds", "ag1", "draft", 0.5, at(1, 12)),
    example("warranty_repairs", "ag2", "draft", 0.2, at(1, 13)),
    example("warranty_repairs", "ag2", None, None, at(2, 12)),
    example(None, "ag1", "draft", 0.1, at(3, 12)),
    example("returns_refunds", "ag1", "draft", 1.0, at(-5)),  # outside the range
]


async def seed(engine: AsyncEngine) -> None:
    """One bulk insert per table."""
    agents = [
        {"id": "ag1", "email": "sam@example.test", "name": "Sam", "role": "agent", "password_hash": "x",
         "capacity": 3, "active": True, "token_generation": 0, "created_at": MON},
        {"id": "ag2", "email": "kim@example.test", "name": "Kim", "role": "agent", "password_hash": "x",
         "capacity": 3, "active": True, "token_generation": 0, "created_at": MON},
    ]  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(insert(Agent.__table__), agents)  # type: ignore[attr-defined]
        await conn.execute(insert(ConversationFact.__table__), FACTS)  # type: ignore[attr-defined]
        await conn.execute(insert(ModelUsage.__table__), LEDGER)  # type: ignore[attr-defined]
        await conn.execute(insert(Example.__table__), EXAMPLES)  # type: ignore[attr-defined]
