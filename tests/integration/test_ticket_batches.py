"""Non-urgent tickets through Message Batches on real Redis and SQLite, with the fake model API: collected
into one batch by size or by window, each result applied exactly once (also across a worker SIGKILLed
while applying), failed requests drafted in real time, and urgent tickets never waiting for a batch."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, func, select

from support.db.models import ModelUsage, Ticket, TicketBatch, TicketBatchItem, TicketReply
from support.llm.pricing import TokenCounts, cost
from support.runtime import Runtime, open_runtime
from support.settings import Settings, TicketSettings
from support.testing.fake_anthropic import ApiError, FakeAnthropic, RecordedRequest, Reply, last_user_text
from support.tickets.service import TicketIn
from tests.servers import STRIPPED_ENV, ForkedProcess
from tests.ticket_filing import is_answer, is_triage, ticket_settings, triage_reply, until

ANSWER = "Refunds take 5 business days."
POLL_S = 1.0  # the shortest poll interval the job engine runs
WAIT_S = 30.0  # how long a test waits for a batch to be submitted, answered and applied


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()

    def rule(body: dict[str, Any]) -> Reply | None:
        if is_triage(body):
            return triage_reply("high" if "SOON" in last_user_text(body) else "normal")
        if is_answer(body):
            return Reply(text=ANSWER)
        return None

    fake.add_rule(rule)
    return fake


def make_settings(
    tmp_path: Path, fake: FakeAnthropic, redis_url: str, *, max_requests: int = 50, window_s: float = 60.0
) -> Settings:
    tickets = TicketSettings(
        batch_max_requests=max_requests, batch_window_s=window_s, batch_poll_interval_s=POLL_S
    )
    return ticket_settings(tmp_path, fake, redis_url, tickets=tickets)


@asynccontextmanager
async def running(settings: Settings, *, run_jobs: bool = True) -> AsyncIterator[Runtime]:
    async with open_runtime(settings, run_jobs=run_jobs) as rt:
        yield rt


def ticket_in(n: int, subject: str = "Refund question") -> TicketIn:
    return TicketIn(
        subject=f"{subject} {n}", body="Where is my refund? Mail me at ana@example.com.",
        customer_email="ana@example.com",
    )  # fmt: skip


async def file(rt: Runtime, n: int, subject: str = "Refund question") -> list[str]:
    ids = []
    for i in range(n):
        ticket, _ = await rt.tickets.create(ticket_in(i, subject), key_id=None, idempotency_key=None)
        ids.append(ticket.id)
    return ids


async def rows(rt: Runtime, model: type[Any], *where: Any) -> list[Any]:
    async with rt.sessions() as session:
        return list((await session.execute(select(model).where(*where))).scalars().all())


async def statuses(rt: Runtime, ids: list[str]) -> Counter[str]:
    return Counter(t.status for t in await rows(rt, Ticket, col(Ticket.id).in_(ids)))


async def all_answered(rt: Runtime, ids: list[str]) -> bool:
    return (await statuses(rt, ids))["answered"] == len(ids)


def batch_posts(fake: FakeAnthropic) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/messages/batches"]


def answer_posts(fake: FakeAnthropic) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.path == "/v1/messages" and is_answer(r.body)]


async def assert_each_applied_once(rt: Runtime, ids: list[str]) -> None:
    """Every ticket answered by the batch: one reply, one batch ledger row at half the real-time price."""
    replies = await rows(rt, TicketReply, col(TicketReply.ticket_id).in_(ids))
    assert Counter(r.ticket_id for r in replies) == dict.fromkeys(ids, 1)
    assert {(r.source, r.text) for r in replies} == {("batch", ANSWER)}
    answers = col(ModelUsage.purpose) == "answer"
    ledger = await rows(rt, ModelUsage, col(ModelUsage.ticket_id).in_(ids), answers)
    assert Counter(u.ticket_id for u in ledger) == dict.fromkeys(ids, 1)
    for usage in ledger:
        assert usage.batch
        assert usage.outcome == "ok"
        counts = TokenCounts(
            input=usage.input_tokens, cache_write_5m=usage.cache_write_5m_tokens,
            cache_write_1h=usage.cache_write_1h_tokens, cache_read=usage.cache_read_tokens,
            output=usage.output_tokens,
        )  # fmt: skip
        assert usage.cost_usd > 0
        assert usage.cost_usd == cost(usage.model, counts, batch=False) / Decimal(2)
        assert usage.redactions == {"email": 1}  # the address in the body, redacted out of the request


async def test_fifty_non_urgent_tickets_become_one_batch_and_each_is_answered_once(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    async with running(make_settings(tmp_path, fake_api, redis_url, max_requests=50)) as rt:
        ids = await file(rt, 50)
        await until(lambda: all_answered(rt, ids), timeout_s=WAIT_S)
        [batch] = await until(
            lambda: rows(rt, TicketBatch, col(TicketBatch.status) == "applied"), timeout_s=WAIT_S
        )
        assert batch.request_count == 50
        [post] = batch_posts(fake_api)
        sent = post.body["requests"]
        assert len(sent) == 50
        assert {r["custom_id"] for r in sent} == {f"t_{i}" for i in ids}
        for request in sent:
            assert "ana@example.com" not in str(request["params"])  # redacted like chat
            assert "redactions" not in request["params"]
        assert answer_posts(fake_api) == []  # nothing drafted in real time
        await assert_each_applied_once(rt, ids)
        # Each reply reached the ticket's conversation once.
        for ticket in await rows(rt, Ticket, col(Ticket.id).in_(ids[:5])):
            events = await rt.store.events_after(ticket.conversation_id, 0)
            assert [e.role for e in events if e.type == "message"] == ["customer", "assistant"]


def worker_env(tmp_path: Path, fake: FakeAnthropic, redis_url: str, settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
    env.update({
        "SWITCHBOARD_DATA_DIR": str(tmp_path), "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATABASE_URL": settings.database_url, "ANTHROPIC_API_KEY": "sk-test",
        "ANTHROPIC_BASE_URL": fake.url, "SWITCHBOARD_TICKETS_BATCH_MAX_REQUESTS": "50",
        "SWITCHBOARD_TICKETS_BATCH_WINDOW_S": "60", "SWITCHBOARD_TICKETS_BATCH_POLL_INTERVAL_S": str(POLL_S),
        "PYTHONUNBUFFERED": "1",
    })  # fmt: skip
    return env


def kill(proc: ForkedProcess) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the worker runs in its own session
    proc.wait(timeout=10)


async def applied_items(rt: Runtime) -> int:
    async with rt.sessions() as session:
        statement = select(func.count()).where(col(TicketBatchItem.applied_at).is_not(None))
        return int((await session.execute(statement)).scalar_one())


async def test_a_worker_killed_while_applying_results_leaves_each_ticket_answered_once(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    fake_api.batch_result_interval_s = 0.05  # 50 results take 2.5 s to read: time to kill mid-way
    settings = make_settings(tmp_path, fake_api, redis_url, max_requests=50)
    env = worker_env(tmp_path, fake_api, redis_url, settings)
    async with running(settings, run_jobs=False) as rt:
        first = ForkedProcess(["worker"], env, tmp_path, tmp_path / "worker-1.log")
        second: ForkedProcess | None = None
        try:
            ids = await file(rt, 50)
            applied = await until(lambda: _between(applied_items(rt), 5, 45), timeout_s=60)
            kill(first)
            after_kill = await applied_items(rt)
            assert 5 <= applied <= after_kill < 50, (applied, after_kill)
            second = ForkedProcess(["worker"], env, tmp_path, tmp_path / "worker-2.log")
            await until(lambda: all_answered(rt, ids), timeout_s=60)
            await until(lambda: rows(rt, TicketBatch, col(TicketBatch.status) == "applied"), timeout_s=WAIT_S)
        finally:
            kill(first)
            if second is not None:
                kill(second)
        assert len(batch_posts(fake_api)) == 1
        await assert_each_applied_once(rt, ids)
        for ticket in await rows(rt, Ticket, col(Ticket.id).in_(ids)):
            events = await rt.store.events_after(ticket.conversation_id, 0)
            assert [e.role for e in events if e.type == "message"] == ["customer", "assistant"]


async def _between(count: Any, low: int, high: int) -> int | None:
    value = int(await count)
    return value if low <= value <= high else None


async def test_an_errored_batch_request_falls_back_to_real_time_and_is_answered(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    failed: list[str] = []

    def fail_first_batch_answer(body: dict[str, Any]) -> Reply | None:
        if is_answer(body) and "Broken" in last_user_text(body) and not failed:
            failed.append("once")
            raise ApiError(500, "Internal server error")
        return None

    fake_api.add_rule(fail_first_batch_answer)
    async with running(make_settings(tmp_path, fake_api, redis_url, max_requests=3)) as rt:
        ok = await file(rt, 2)
        [broken] = await file(rt, 1, subject="Broken")
        await until(lambda: all_answered(rt, [*ok, broken]), timeout_s=WAIT_S)
        [item] = await rows(rt, TicketBatchItem, TicketBatchItem.ticket_id == broken)
        assert item.outcome == "errored"
        [reply] = await rows(rt, TicketReply, TicketReply.ticket_id == broken)
        assert (reply.source, reply.text) == ("realtime", ANSWER)
        ledger = await rows(rt, ModelUsage, ModelUsage.ticket_id == broken, ModelUsage.purpose == "answer")
        assert sorted((u.batch, u.outcome) for u in ledger) == [(False, "ok"), (True, "error:batch_errored")]
        assert [u.cost_usd for u in ledger if u.batch] == [Decimal(0)]  # a failed request is not billed
        assert len(batch_posts(fake_api)) == 1
        assert len(answer_posts(fake_api)) == 1  # only the broken one, drafted again in real time
        await until(lambda: rows(rt, TicketBatch, col(TicketBatch.status) == "applied"), timeout_s=WAIT_S)


async def test_an_urgent_ticket_is_answered_without_a_batch(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    async with running(make_settings(tmp_path, fake_api, redis_url, window_s=60.0)) as rt:
        started = time.monotonic()
        [ticket_id] = await file(rt, 1, subject="Refund needed SOON")
        await until(lambda: all_answered(rt, [ticket_id]), timeout_s=10)
        assert time.monotonic() - started < 5.0  # the window is 60 s
        [reply] = await rows(rt, TicketReply, TicketReply.ticket_id == ticket_id)
        assert reply.source == "realtime"
        assert batch_posts(fake_api) == []
        assert await rows(rt, TicketBatch) == []
        assert await rows(rt, TicketBatchItem) == []


async def test_fewer_tickets_than_the_size_limit_are_submitted_once_the_window_passes(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    async with running(make_settings(tmp_path, fake_api, redis_url, max_requests=50, window_s=1.5)) as rt:
        started = time.monotonic()
        ids = await file(rt, 3)
        await until(lambda: all_answered(rt, ids), timeout_s=20)
        assert time.monotonic() - started >= 1.5  # not before the window ended
        [post] = batch_posts(fake_api)
        assert len(post.body["requests"]) == 3
        await assert_each_applied_once(rt, ids)


async def test_two_submitters_at_once_put_each_ticket_in_one_batch(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    async with running(make_settings(tmp_path, fake_api, redis_url, max_requests=4), run_jobs=False) as rt:
        ids = await file(rt, 4)
        for ticket_id in ids:
            await rt.tickets.triage_ticket(ticket_id)
        first, second = await asyncio.gather(rt.batches.submit_due(), rt.batches.submit_due())
        assert len(first) + len(second) == 1
        assert len(batch_posts(fake_api)) == 1
        items = await rows(rt, TicketBatchItem)
        assert sorted(i.ticket_id for i in items) == sorted(ids)


async def test_a_batch_whose_submission_failed_is_sent_again_by_the_sweep(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    async with running(make_settings(tmp_path, fake_api, redis_url, max_requests=2), run_jobs=False) as rt:
        ids = await file(rt, 2)
        for ticket_id in ids:
            await rt.tickets.triage_ticket(ticket_id)
        fake_api.fail_next(500, match=lambda body: "requests" in body)
        [batch_id] = await rt.batches.submit_due()
        [batch] = await rows(rt, TicketBatch)
        assert batch.status == "submitting"  # the API call failed: left for the sweep
        assert await rt.batches.resubmit_stale(grace_s=60) == []  # too soon: it may still be in flight
        assert await rt.batches.resubmit_stale(grace_s=0) == [batch_id]
        await rt.batches.poll()
        assert await all_answered(rt, ids)
        await assert_each_applied_once(rt, ids)
        [batch] = await rows(rt, TicketBatch)
        assert batch.status == "applied"
        assert len(batch_posts(fake_api)) == 2  # the failed attempt and the one that went through
