"""The model API misbehaving under customers: storms of 529/429, stalled streams, dropped connections.

A real ``switchboard serve`` on the shared test Redis and its own SQLite database, real widget sockets, and
the fake model API (``support.testing.fake_anthropic``) programmed through its public fault interface. Each
scenario checks what the customer was promised — an answer, an offline answer or a person within
``OUTCOME_BOUND_S``, no acknowledged message lost, no turn left open — and that the ledger (``model_usage``)
has a row for every failed call. Each prints one ``reliability`` line (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from support.settings import LLMSettings
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.faults.accounting import Widget, report, tally_widgets
from tests.integration.test_handoff import user_text
from tests.integration.test_widget_ws import is_answer, is_triage, open_session, start_server, triage_reply
from tests.servers import ServerProcess

ANSWER_MODEL = LLMSettings.model_fields["answer_model"].default
OUTCOME_BOUND_S = 30.0  # an acknowledged message ends in an answer, offline answer or person within this
ANSWER = " ".join(f"word{i:03d}" for i in range(30))  # 30 deltas at 20 tokens/s: about 3 s of streaming
ANSWER_TPS = 20.0
KNOWN = "How long do I have to return a tent?"  # the policy answers it: the offline responder can too
STORM_S = 6.0  # long enough for every stormed customer's turn to end inside it
UNKNOWN = "Can you engrave our names on a wedding tent?"  # nothing covers it: a person


def ledger(db: Path, conversation_id: str) -> list[tuple[str, str]]:
    """(purpose, outcome) of the conversation's model calls, oldest first."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT purpose, outcome FROM model_usage WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ).fetchall()
    return [(str(p), str(o)) for p, o in rows]


def answer_attempts(db: Path, conversation_id: str) -> list[int]:
    """Attempts of each of the conversation's answer calls (one ledger row per call)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT attempts FROM model_usage WHERE conversation_id = ? AND purpose = 'answer' ORDER BY id",
            (conversation_id,),
        ).fetchall()
    return [int(row[0]) for row in rows]


async def wait_ledger(
    db: Path, conversation_id: str, pred: Callable[[list[tuple[str, str]]], bool]
) -> list[tuple[str, str]]:
    """The ledger rows once ``pred`` holds (the turn's bookkeeping is written after the customer's frames)."""
    rows: list[tuple[str, str]] = []
    for _ in range(100):
        rows = ledger(db, conversation_id)
        if pred(rows):
            break
        await asyncio.sleep(0.1)
    return rows


@pytest.fixture
def model(fake: FakeAnthropic) -> FakeAnthropic:
    """Triage is confident; answers are ANSWER, streamed at ANSWER_TPS."""
    fake.reset()
    fake.add_rule(lambda body: triage_reply(confidence=0.95) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text=ANSWER) if is_answer(body) else None)
    fake.set_latency(tps=ANSWER_TPS, model=ANSWER_MODEL)
    return fake


@pytest.fixture
def serve(
    tmp_path: Path, model: FakeAnthropic, redis_url: str, redis_client: aioredis.Redis
) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def make(**extra: str) -> ServerProcess:
        started.append(start_server(tmp_path / f"s{len(started)}", model, redis_url, **extra))
        return started[-1]

    try:
        yield make
    finally:
        for server in started:
            server.kill()


def db_of(server: ServerProcess) -> Path:
    return server.data_dir / "db.sqlite3"


async def ask(
    server: ServerProcess, text: str, client_id: str = "m1"
) -> tuple[Widget, str, int, dict[str, Any], float]:
    """A new customer asks ``text``: (widget, conversation id, the message's seq, the frame that ended the
    turn, seconds from sending to that frame)."""
    session = open_session(server)
    widget = Widget(server, session["token"])
    await widget.connect()
    started = time.monotonic()
    seq = await widget.send_message(client_id, text)
    outcome = await widget.until_outcome(seq)
    return widget, session["conversation_id"], seq, outcome, time.monotonic() - started


def kind(frame: dict[str, Any]) -> str:
    """answer | offline | person, for the frame that ended a turn."""
    if frame["type"] == "status":
        return "person" if frame["state"] in ("queued", "agent") else f"status:{frame['state']}"
    if frame["type"] == "message" and frame.get("role") == "assistant":
        return "answer" if frame["text"] == ANSWER else "offline"
    return f"{frame['type']}:{frame.get('role')}"


@pytest.mark.serial
async def test_a_storm_of_529_and_429_gets_every_customer_an_offline_answer_or_a_person_then_recovers(
    serve: Callable[..., ServerProcess], model: FakeAnthropic
) -> None:
    """For STORM_S every call is 529 (triage) or 429 (answers), both with retry-after: eight customers who
    ask meanwhile each get the offline answer (a question the policy answers) or a person (one it does not)
    within the bound, every failed call is in the ledger, and once the storm is over (and the breaker's
    cooldown has passed) a new question gets the model's answer again."""
    server = serve(SWITCHBOARD_LLM_BREAKER_COOLDOWN_S="3")
    storm_ends = time.monotonic() + STORM_S

    def in_storm(body: dict[str, Any]) -> bool:
        return time.monotonic() < storm_ends

    model.fail_next(529, n=100_000, retry_after=1, match=lambda b: in_storm(b) and is_triage(b))
    model.fail_next(429, n=100_000, retry_after=1, match=lambda b: in_storm(b) and not is_triage(b))
    questions = [KNOWN if i % 2 == 0 else UNKNOWN for i in range(8)]
    stormed = await asyncio.gather(*(ask(server, q) for q in questions))
    assert time.monotonic() < storm_ends, "the storm ended before every customer had been served"
    await asyncio.sleep(max(0.0, storm_ends - time.monotonic()) + 3.5)  # storm over, breaker cooled down
    recovered = await ask(server, "What sizes do your tents come in?")

    results = [*stormed, recovered]
    numbers = await tally_widgets(w for w, *_ in results)
    report("model_api_storm", numbers, worst_time_to_outcome=max(r[4] for r in stormed))
    got = [kind(outcome) for _, _, _, outcome, _ in stormed]
    failed_rows = [
        await wait_ledger(db_of(server), cid, lambda rows: len(rows) >= 2) for _, cid, *_ in stormed
    ]

    assert got == ["offline" if q == KNOWN else "person" for q in questions]
    assert max(waited for *_, waited in stormed) < OUTCOME_BOUND_S
    assert kind(recovered[3]) == "answer"
    for rows in failed_rows:  # triage and answer each failed: 529/429 after retries, or the open breaker
        assert {p for p, _ in rows} == {"triage", "answer"}, rows
        # each purpose failed with its own storm's status, or found the breaker already open
        failed = {"triage": {"error:529", "circuit_open"}, "answer": {"error:429", "circuit_open"}}
        assert all(o in failed[p] for p, o in rows), rows
    assert (numbers.lost, numbers.never_ended) == (0, 0)


async def test_a_stream_that_stalls_mid_answer_or_after_its_headers_still_ends_the_turn(
    serve: Callable[..., ServerProcess], model: FakeAnthropic
) -> None:
    """Default timeouts. One answer stream stops after some text reached the customer; another sends its
    headers and then nothing, on every attempt. The first customer gets ``reply_aborted`` and a person; the
    second the offline answer (the policy covers the question); both within the bound, and the ledger has
    the stalled calls as ``timeout``."""
    mid, headers_only = "Tell me about tent pegs", KNOWN
    model.stall_next(after_events=12, match=lambda b: is_answer(b) and mid in user_text(b))
    model.stall_next(after_events=0, n=10, match=lambda b: is_answer(b) and headers_only in user_text(b))
    server = serve()
    (w1, c1, _, o1, t1), (w2, c2, _, o2, t2) = await asyncio.gather(
        ask(server, mid), ask(server, headers_only)
    )

    numbers = await tally_widgets([w1, w2])
    report("model_api_stall", numbers, stall_mid_answer=t1, stall_after_headers=t2)
    rows1 = await wait_ledger(db_of(server), c1, lambda rows: ("answer", "timeout") in rows)
    rows2 = await wait_ledger(db_of(server), c2, lambda rows: ("answer", "timeout") in rows)

    deltas = [f for _, f in w1.frames if f["type"] == "delta"]
    assert deltas, "the stall was meant to come after text reached the customer"
    assert {"type": "reply_aborted", "reply_id": deltas[0]["reply_id"]} in [f for _, f in w1.frames]
    assert (kind(o1), kind(o2)) == ("person", "offline")
    assert max(t1, t2) < OUTCOME_BOUND_S
    assert ("answer", "timeout") in rows1
    assert ("answer", "timeout") in rows2
    assert (numbers.lost, numbers.never_ended) == (0, 0)


async def test_a_dropped_connection_is_retried_before_the_stream_starts_and_handed_off_after(
    serve: Callable[..., ServerProcess], model: FakeAnthropic
) -> None:
    """The model API closes the connection: right after the response headers (nothing streamed yet: the
    gateway retries and the customer gets the model's answer), and mid-answer (text already shown: no
    retry, which would repeat it; ``reply_aborted`` and a person). The ledger has the dropped calls."""
    early, late = "Do you sell sleeping bags?", "Tell me about tent pegs"
    model.drop_next(after_events=0, match=lambda b: is_answer(b) and early in user_text(b))
    model.drop_next(after_events=12, match=lambda b: is_answer(b) and late in user_text(b))
    server = serve()
    (w1, c1, _, o1, t1), (w2, c2, _, o2, t2) = await asyncio.gather(ask(server, early), ask(server, late))

    numbers = await tally_widgets([w1, w2])
    report("model_api_drop", numbers, drop_before_text=t1, drop_mid_answer=t2)
    rows1 = await wait_ledger(db_of(server), c1, lambda rows: ("answer", "ok") in rows)
    rows2 = await wait_ledger(db_of(server), c2, lambda rows: any(p == "answer" for p, _ in rows))

    deltas = [f for _, f in w2.frames if f["type"] == "delta"]
    assert (kind(o1), kind(o2)) == ("answer", "person")
    assert deltas, "the drop was meant to come after text reached the customer"
    assert {"type": "reply_aborted", "reply_id": deltas[0]["reply_id"]} in [f for _, f in w2.frames]
    assert max(t1, t2) < OUTCOME_BOUND_S
    assert [o for p, o in rows1 if p == "answer"] == ["ok"]
    assert answer_attempts(db_of(server), c1) == [2]  # the dropped attempt, then the one that answered
    assert [o for p, o in rows2 if p == "answer"] == ["error:connection"]
    assert (numbers.lost, numbers.never_ended) == (0, 0)
