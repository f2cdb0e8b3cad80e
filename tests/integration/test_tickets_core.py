"""The ticket service in one process on real Redis and SQLite, with the fake model API: triage on arrival,
urgent tickets answered or queued at once, the rest left for a batch, idempotency, and the agents' side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from support.db.models import ModelUsage, Ticket, WebhookDelivery
from support.errors import NotFound
from support.privacy.customer_data import CustomerRef
from support.runtime import Runtime, open_runtime
from support.testing.fake_anthropic import FakeAnthropic, Reply, last_user_text
from support.tickets.service import IdempotencyConflict, TicketIn
from tests.ticket_filing import is_answer, is_triage, ticket_settings, triage_reply, until


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()

    def rule(body: dict[str, Any]) -> Reply | None:
        text = last_user_text(body)
        if is_triage(body):
            # "high" is answered in real time; "urgent" goes to people at once (chat's routing).
            urgency = "urgent" if "URGENT" in text else "high" if "SOON" in text else "normal"
            return triage_reply(urgency, 0.2 if "unsure" in text else 0.95)
        if is_answer(body):
            if "OFFTOPIC" in text:  # an answer that cites no section of the knowledge
                return Reply(text="Our shop is open on Sundays.", citations=[])
            return Reply(text="Refunds take 5 business days.")
        return None

    fake.add_rule(rule)
    return fake


@pytest.fixture
async def runtime(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> AsyncIterator[Runtime]:
    async with open_runtime(ticket_settings(tmp_path, fake_api, redis_url), run_jobs=True) as rt:
        yield rt


def ticket_in(subject: str, body: str = "Where is my refund? My card is 4111 1111 1111 1111.") -> TicketIn:
    return TicketIn(subject=subject, body=body, customer_email="Ana@Example.com", customer_name="Ana")


async def status_of(rt: Runtime, ticket_id: str) -> str:
    return (await rt.tickets.get(ticket_id)).status


async def test_an_urgent_ticket_is_answered_at_once_and_the_card_never_reaches_the_model(
    runtime: Runtime, fake_api: FakeAnthropic
) -> None:
    ticket, created = await runtime.tickets.create(
        ticket_in("Refund needed SOON"), key_id=None, idempotency_key=None
    )
    assert created
    assert ticket.status == "received"
    await until(lambda: _is(runtime, ticket.id, "answered"))
    view = await runtime.tickets.view(ticket.id, any_key=True)
    assert view["route"] == "realtime"
    assert view["urgent"] is True
    assert [r["text"] for r in view["replies"]] == ["Refunds take 5 business days."]
    # The answer rests on the knowledge, and the ticket records where (the document and its section).
    sources = (await runtime.tickets.get(ticket.id)).triage["outcome"]["sources"]
    assert sources
    assert all(s["document"] and s["section"] for s in sources)
    # The reply is in the ticket's conversation, written once however often it is settled.
    await runtime.tickets.settle(ticket.id)
    events = await runtime.store.events_after(ticket.conversation_id, 0)
    assert [e.role for e in events if e.type == "message"] == ["customer", "assistant"]
    for request in fake_api.requests:
        assert "4111" not in str(request.body)


async def _settled(rt: Runtime, ticket_id: str) -> bool:
    return (await rt.tickets.get(ticket_id)).settled_at is not None


async def _is(rt: Runtime, ticket_id: str, status: str) -> bool:
    return await status_of(rt, ticket_id) == status


async def test_an_unsure_urgent_ticket_goes_to_people_at_once_with_the_draft_for_the_agent(
    runtime: Runtime,
) -> None:
    ticket, _ = await runtime.tickets.create(
        ticket_in("URGENT unsure charge"), key_id=None, idempotency_key=None
    )
    await until(lambda: _is(runtime, ticket.id, "queued"))
    item = await until(lambda: runtime.queue.item(ticket.conversation_id))
    assert item.reason == "urgent"
    state = await until(lambda: _draft_state(runtime, ticket.conversation_id))
    assert state.extra["draft_text"] == "Refunds take 5 business days."
    assert (await runtime.tickets.view(ticket.id, any_key=True))["replies"] == []


async def test_an_answer_that_cites_nothing_goes_to_people_with_the_draft_kept(runtime: Runtime) -> None:
    # Routing would let the bot answer this one (urgency high, confident), but the model's answer cites no
    # section of the knowledge: as in chat, that is a handoff signal, not a reply to the customer.
    ticket, _ = await runtime.tickets.create(
        ticket_in("SOON OFFTOPIC", body="Is the shop open on Sundays?"), key_id=None, idempotency_key=None
    )
    await until(lambda: _is(runtime, ticket.id, "queued"))
    outcome = (await runtime.tickets.get(ticket.id)).triage["outcome"]
    assert (outcome["reason"], outcome["draft"], outcome["sources"]) == (
        "ungrounded", "Our shop is open on Sundays.", []
    )  # fmt: skip
    item = await until(lambda: runtime.queue.item(ticket.conversation_id))
    assert item.reason == "ungrounded"
    assert (await runtime.tickets.view(ticket.id, any_key=True))["replies"] == []


async def _draft_state(rt: Runtime, cid: str) -> Any:
    state = await rt.store.get_state(cid)
    return state if state is not None and state.extra.get("draft_text") else None


async def test_a_non_urgent_ticket_is_triaged_and_left_for_a_batch(runtime: Runtime) -> None:
    ticket, _ = await runtime.tickets.create(ticket_in("Refund question"), key_id=None, idempotency_key=None)
    await until(lambda: _is(runtime, ticket.id, "triaged"))
    row = await runtime.tickets.get(ticket.id)
    assert row.route == "batch"
    assert row.urgent is False
    async with runtime.sessions() as session:
        from sqlmodel import select

        purposes = [u.purpose for u in (await session.execute(select(ModelUsage))).scalars().all()]
    assert purposes == ["triage"]  # no real-time answer call


async def test_idempotency_key_same_body_same_ticket_other_body_conflict(runtime: Runtime) -> None:
    first, created = await runtime.tickets.create(
        ticket_in("Refund question"), key_id="k1", idempotency_key="abc"
    )
    again, created_again = await runtime.tickets.create(
        ticket_in("Refund question"), key_id="k1", idempotency_key="abc"
    )
    assert created
    assert not created_again
    assert again.id == first.id
    with pytest.raises(IdempotencyConflict):
        await runtime.tickets.create(ticket_in("Another question"), key_id="k1", idempotency_key="abc")
    other, created_other = await runtime.tickets.create(
        ticket_in("Refund question"), key_id="k2", idempotency_key="abc"
    )
    assert created_other
    assert other.id != first.id
    # Only the key that filed a ticket reads it.
    with pytest.raises(NotFound):
        await runtime.tickets.view(first.id, key_id="k2")
    assert (await runtime.tickets.view(first.id, key_id="k1"))["id"] == first.id
    async with runtime.sessions() as session:
        from sqlmodel import select

        assert len((await session.execute(select(Ticket))).scalars().all()) == 2


async def test_a_ticket_whose_triage_job_was_lost_is_resumed_and_answered(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    async with open_runtime(ticket_settings(tmp_path, fake_api, redis_url), run_jobs=False) as rt:
        ticket, _ = await rt.tickets.create(
            ticket_in("Refund needed SOON"), key_id=None, idempotency_key=None
        )
        # The worker that would have run its triage died and its job with it.
        for key in await redis_client.keys("saq:*"):
            await redis_client.delete(key)
        assert await rt.tickets.resume_stranded() == 0  # not late yet: maybe only slow
        async with rt.sessions() as session, session.begin():
            row = await session.get(Ticket, ticket.id)
            assert row is not None
            row.updated_at = row.updated_at - timedelta(minutes=5)
        assert await rt.tickets.resume_stranded() == 1
        worker = asyncio.create_task(rt.jobs.run_worker())
        try:
            await until(lambda: _is(rt, ticket.id, "answered"))
            await until(lambda: _settled(rt, ticket.id))
            assert await rt.tickets.resume_stranded() == 0
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)


async def test_when_triage_fails_the_ticket_still_ends_with_people_within_the_job(
    runtime: Runtime, fake_api: FakeAnthropic
) -> None:
    fake_api.fail_next(529, n=100)  # overloaded: every attempt of every call
    ticket, _ = await runtime.tickets.create(ticket_in("Refund question"), key_id=None, idempotency_key=None)
    await until(lambda: _is(runtime, ticket.id, "queued"), timeout_s=30)
    row = await runtime.tickets.get(ticket.id)
    assert row.route == "realtime"  # not left waiting for a batch
    assert row.triage is not None
    # Nothing in the policy matches it offline: zero confidence routes it to people before any draft.
    assert row.triage["outcome"]["reason"] == "low_confidence"
    await until(lambda: runtime.queue.item(ticket.conversation_id))


async def test_erasing_a_customer_takes_their_tickets_out_of_the_webhook_log_and_leaves_others(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    async with open_runtime(ticket_settings(tmp_path, fake_api, redis_url), run_jobs=False) as rt:
        assert rt.webhooks is not None
        await rt.webhooks.create_endpoint("http://127.0.0.1:9/hook", ["ticket.created"], created_by=None)
        await rt.tickets.create(ticket_in("Refund question"), key_id=None, idempotency_key=None)
        other = TicketIn(subject="Shipping", body="When?", customer_email="bo@example.com")
        await rt.tickets.create(other, key_id=None, idempotency_key=None)
        ana = CustomerRef.parse(None, "ana@example.com")
        exported = await rt.customers.export(ana)
        assert [d["payload"]["data"]["customer"]["email"] for d in exported["webhook_deliveries"]] == [
            "ana@example.com"
        ]
        counts = await rt.customers.erase(ana)
        assert (counts["tickets"], counts["webhook_deliveries"]) == (1, 1)
        async with rt.sessions() as session:
            payloads = [d.payload for d in (await session.execute(select(WebhookDelivery))).scalars().all()]
        assert len(payloads) == 1
        assert "ana@example.com" not in payloads[0]
        assert "bo@example.com" in payloads[0]
        assert (await rt.customers.export(ana))["webhook_deliveries"] == []
