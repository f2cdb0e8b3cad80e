"""Predicted satisfaction on real Redis and SQL with the fake model API: only finished, unrated
conversations are scored, through one Message Batch whose requests carry redacted transcripts in the user
turn; each result is applied once, with its ledger row at batch prices; failed requests are asked again a
bounded number of times."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update
from sqlmodel import col, select

from support.db.models import (
    ArchivedConversation,
    ArchivedMessage,
    ConversationFact,
    ModelUsage,
    PredictionBatch,
    PredictionBatchItem,
)
from support.llm.prediction import SYSTEM_PROMPT
from support.llm.pricing import TokenCounts, cost
from support.reports.predicted import MAX_ATTEMPTS, PURPOSE
from support.runtime import Runtime, open_runtime
from support.testing.fake_anthropic import ApiError, FakeAnthropic, RecordedRequest, Reply
from tests.ticket_filing import ticket_settings, until

NOW = datetime.now(UTC)
EMAIL, CARD = "ana@example.com", "4111 1111 1111 1111"


@pytest.fixture
async def rt(
    tmp_path: Path, fake: FakeAnthropic, redis_url: str, redis_client: Any, db_url: str
) -> AsyncIterator[Runtime]:
    fake.reset()
    async with open_runtime(ticket_settings(tmp_path, fake, redis_url, db_url), run_jobs=False) as runtime:
        yield runtime


async def chat(rt: Runtime, cid: str, *turns: tuple[str, str]) -> None:
    """A conversation in the store with these (role, text) messages."""
    await rt.store.create_conversation(cid, widget_key="pk_demo", visitor={})
    for n, (role, text) in enumerate(turns):
        if role == "customer":
            await rt.store.append_customer_message(cid, f"c{n}", text, now=NOW)
        else:
            await rt.store.append_event(cid, type="message", role=role, text=text, now=NOW)


async def archived(rt: Runtime, cid: str, *turns: tuple[str, str]) -> None:
    """A conversation Redis has forgotten: only its archived rows are left."""
    async with rt.sessions() as session, session.begin():
        session.add(
            ArchivedConversation(
                id=cid, widget_key="pk_demo", state="resolved", created_at=NOW, last_activity=NOW
            )
        )
        await session.flush()
        session.add_all(
            ArchivedMessage(
                conversation_id=cid,
                seq=n + 1,
                event_id=f"e{n}",
                type="message",
                role=role,
                text=text,
                created_at=NOW,
            )
            for n, (role, text) in enumerate(turns)
        )


async def facts(rt: Runtime, **rows: dict[str, Any]) -> None:
    """One bulk insert of fact rows (conversation id -> the columns that differ from an unrated chat)."""
    base = {"started_at": NOW - timedelta(days=2), "cost_usd": Decimal(0), "updated_at": NOW}
    values = [{**base, "conversation_id": cid, **columns} for cid, columns in rows.items()]
    async with rt.sessions() as session, session.begin():
        await session.execute(insert(ConversationFact), values)


async def fact(rt: Runtime, cid: str) -> ConversationFact:
    async with rt.sessions() as session:
        row = await session.get(ConversationFact, cid)
    assert row is not None
    return row


async def applied(rt: Runtime) -> bool:
    await rt.predicted.poll()
    async with rt.sessions() as session:
        statuses = (await session.execute(select(PredictionBatch.status))).scalars().all()
    return bool(statuses) and set(statuses) <= {"applied"}


def batch_posts(fake: FakeAnthropic) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/messages/batches"]


async def test_only_finished_unrated_conversations_are_scored_once_from_redacted_transcripts(
    rt: Runtime, fake: FakeAnthropic
) -> None:
    resolved_long_ago = {
        "resolved_at": NOW - timedelta(hours=2),
        "last_bot_reply_at": NOW - timedelta(hours=3),
    }
    await chat(rt, "happy", ("customer", f"My tent pole broke. I'm {EMAIL}, card {CARD}."),
               ("assistant", "A new pole is on its way."), ("customer", "Thanks, solved!"))  # fmt: skip
    await chat(rt, "unhappy", ("customer", "Where is my parcel?"), ("assistant", "Let me hand you over."),
               ("customer", "This is useless, nobody came."))  # fmt: skip
    await chat(rt, "rated", ("customer", "Thanks a lot"), ("assistant", "You're welcome."))
    await chat(rt, "fresh", ("customer", "Thanks"), ("assistant", "Anytime."))
    await chat(rt, "writing", ("customer", "Hello?"), ("assistant", "Hi!"), ("customer", "Still there?"))
    await chat(rt, "rated_meanwhile", ("customer", "Great, thanks"), ("assistant", "Glad to help."))
    await archived(rt, "cold", ("customer", "Do you ship to Norway?"), ("assistant", "Yes, in 5 days."))
    await facts(
        rt,
        happy=resolved_long_ago,
        unhappy={"last_bot_reply_at": NOW - timedelta(days=2)},  # no resolution; the bot's reply a day old
        rated={**resolved_long_ago, "rating": 4, "rated_at": NOW},
        fresh={"resolved_at": NOW - timedelta(minutes=10), "last_bot_reply_at": NOW - timedelta(minutes=11)},
        writing={"last_bot_reply_at": NOW - timedelta(days=2), "last_customer_at": NOW - timedelta(hours=1)},
        rated_meanwhile=resolved_long_ago,
        cold=resolved_long_ago,
        old={**resolved_long_ago, "started_at": NOW - timedelta(days=90)},  # before the lookback
    )

    assert len(await rt.predicted.run()) == 1
    [post] = batch_posts(fake)
    sent = post.body["requests"]
    async with rt.sessions() as session:
        items = {i.custom_id: i for i in (await session.execute(select(PredictionBatchItem))).scalars()}
    assert sorted(items[r["custom_id"]].conversation_id for r in sent) == [
        "cold", "happy", "rated_meanwhile", "unhappy",
    ]  # fmt: skip
    for request in sent:
        params = request["params"]
        assert params["model"] == rt.settings.llm.triage_model
        assert params["system"] == SYSTEM_PROMPT  # constant: nothing of the customer's in it
        assert params["tool_choice"] == {"type": "tool", "name": "record_prediction"}
        assert "redactions" not in params
    happy = next(r["params"] for r in sent if items[r["custom_id"]].conversation_id == "happy")
    [turn] = happy["messages"]
    assert turn["role"] == "user"
    assert "customer: My tent pole broke. I'm [EMAIL_1], card [CARD_1]." in turn["content"]
    for raw in (EMAIL, CARD, CARD.replace(" ", "")):
        assert raw not in json.dumps(sent)

    async with rt.sessions() as session, session.begin():  # a real rating arrives while the batch runs
        await session.execute(
            update(ConversationFact)
            .where(col(ConversationFact.conversation_id) == "rated_meanwhile")
            .values(rating=5)
        )
    await until(lambda: applied(rt))

    scored = {
        cid: await fact(rt, cid)
        for cid in ("happy", "unhappy", "cold", "rated", "fresh", "writing", "rated_meanwhile", "old")
    }
    assert {cid: f.predicted_score for cid, f in scored.items()} == {
        "happy": 5, "unhappy": 1, "cold": 3,
        "rated": None, "fresh": None, "writing": None, "rated_meanwhile": None, "old": None,
    }  # fmt: skip
    assert scored["unhappy"].predicted_reason == "The customer says the help was useless or that nobody came."
    assert scored["happy"].predicted_at is not None
    assert scored["rated"].rating == 4

    assert await rt.predicted.run() == []  # nothing left to ask about: no second batch
    await rt.predicted.poll()
    assert len(batch_posts(fake)) == 1

    async with rt.sessions() as session:
        ledger = list((await session.execute(select(ModelUsage))).scalars())
    assert sorted(u.conversation_id or "" for u in ledger) == ["cold", "happy", "rated_meanwhile", "unhappy"]
    for usage in ledger:
        assert (usage.purpose, usage.batch, usage.outcome) == (PURPOSE, True, "ok")
        counts = TokenCounts(input=usage.input_tokens, output=usage.output_tokens)
        assert usage.cost_usd > 0
        assert usage.cost_usd == cost(usage.model, counts) / 2
    assert next(u.redactions for u in ledger if u.conversation_id == "happy") == {"card": 1, "email": 1}


async def test_a_failed_prediction_is_asked_again_a_bounded_number_of_times(
    rt: Runtime, fake: FakeAnthropic
) -> None:
    def refuse(body: dict[str, Any]) -> Reply | None:
        if body.get("tool_choice", {}).get("name") == "record_prediction":
            raise ApiError(500, "Internal server error")  # in a batch: that request is `errored`
        return None

    fake.add_rule(refuse)
    await chat(rt, "flaky", ("customer", "Thanks"), ("assistant", "You're welcome."))
    await facts(rt, flaky={"resolved_at": NOW - timedelta(hours=2)})
    for _ in range(MAX_ATTEMPTS):
        assert len(await rt.predicted.run()) == 1
        await until(lambda: applied(rt))
    assert await rt.predicted.run() == []
    assert len(batch_posts(fake)) == MAX_ATTEMPTS
    async with rt.sessions() as session:
        items = list((await session.execute(select(PredictionBatchItem))).scalars())
        ledger = list((await session.execute(select(ModelUsage))).scalars())
    assert sorted((i.attempt, i.outcome) for i in items) == [
        (n, "errored") for n in range(1, MAX_ATTEMPTS + 1)
    ]
    assert {(u.outcome, u.cost_usd) for u in ledger} == {("error:batch_errored", Decimal(0))}
    assert (await fact(rt, "flaky")).predicted_score is None


async def test_a_batch_whose_submission_failed_is_sent_again_and_applied_once(
    rt: Runtime, fake: FakeAnthropic
) -> None:
    await chat(rt, "lost", ("customer", "Great, thanks"), ("assistant", "Glad to help."))
    await facts(rt, lost={"resolved_at": NOW - timedelta(hours=2)})
    fake.fail_next(529, match=lambda body: "requests" in body)  # the batch create call fails
    [batch_id] = await rt.predicted.run()
    assert await rt.predicted.run() == []  # its conversation is taken: not collected twice
    assert await rt.predicted.resubmit_stale(grace_s=0) == [batch_id]
    await until(lambda: applied(rt))
    assert [r.response_status for r in batch_posts(fake)] == [529, 200]
    assert (await fact(rt, "lost")).predicted_score == 5
    async with rt.sessions() as session:
        assert len(list((await session.execute(select(ModelUsage))).scalars())) == 1
