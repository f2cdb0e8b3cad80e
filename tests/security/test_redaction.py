"""Personal data never reaches the model: a customer types card numbers, a CVV, an e-mail address, phone
numbers and an IBAN into the real widget socket of a real server; every request the (fake) model API
receives - triage, answer, summary - carries typed placeholders instead, while the agent's handoff packet
shows what the customer wrote. Order numbers, dates and prices still reach the model as written.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.redaction import Redactor
from support.settings import RedactionSettings
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.integration.test_widget_ws import connect, is_answer, is_triage, open_session, start_server
from tests.servers import ServerProcess

AGENT_EMAIL = "ada@example.com"
AGENT_PASSWORD = "s3cret-pass"

# What the customer types, one message per turn, and the placeholder kinds the model must see instead
# (numbered across the conversation: the second card is [CARD_2]).
TURNS: list[tuple[str, list[str]]] = [
    ("Please charge my card 4111 1111 1111 1111, the CVV is 737.", ["CARD", "CVV"]),
    ("Or use this one: 5555-5555-5555-4444, security code: 9517", ["CARD", "CVV"]),
    ("You can write to jane.roe@example.org about it.", ["EMAIL"]),
    ("Call me on +44 20 7946 0958, or at home on (415) 555-2671.", ["PHONE", "PHONE"]),
    ("Refund to my IBAN DE89 3704 0044 0532 0130 00 please.", ["IBAN"]),
    ("Where is order 1234567 of 2024-03-05? 3 tents, $1,234.56 on 4111-1111-1111-1111.", ["CARD"]),
]
PLACEHOLDER = re.compile(r"\[([A-Z]+)_\d+\]")
# Every raw value, in each spelling that would give it away.
RAW_VALUES = [
    "4111 1111 1111 1111", "4111111111111111", "5555-5555-5555-4444", "5555555555554444",
    "737", "9517", "jane.roe@example.org", "jane.roe", "+44 20 7946 0958", "7946 0958", "2079460958",
    "(415) 555-2671", "555-2671", "4155552671", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000",
    "3704 0044",
]  # fmt: skip
# What a support bot must still see verbatim.
KEPT_VALUES = ["order 1234567", "2024-03-05", "$1,234.56", "3 tents"]  # fmt: skip


GROUNDED_ANSWER = "We accept card payments; a refund is paid back to the card you paid with."


def triage_reply() -> Reply:
    return Reply(
        tool_use={
            "name": "record_triage",
            "input": {
                "intent": "payments_billing", "urgency": "normal", "sentiment": "neutral",
                "language": "en", "wants_human": False, "confidence": 0.95, "reason": "test",
            },
        }
    )  # fmt: skip


def is_summary(body: dict[str, Any]) -> bool:
    return "running summary" in json.dumps(body.get("system", ""))


@dataclass
class Recorded:
    """What one attacked conversation left behind."""

    bodies: list[dict[str, Any]]  # every model request body, in arrival order
    per_turn: list[tuple[dict[str, Any], dict[str, Any]]]  # (triage, answer) body of each turn
    packet: dict[str, Any]  # the agent's handoff packet
    ledger: list[tuple[str, dict[str, int] | None]]  # (purpose, redactions) of each ledger row


def _wait(pred: Any, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


async def _chat(server: ServerProcess, fake: FakeAnthropic) -> tuple[str, list[tuple[Any, Any]]]:
    session = open_session(server)
    per_turn = []
    async for customer in connect(server, session["token"]):
        for i, (text, _) in enumerate(TURNS):
            seen = len(fake.requests)
            await customer.send({"type": "message", "client_id": f"m{i}", "text": text})
            await customer.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
            new = [r.body for r in fake.requests[seen:] if isinstance(r.body, dict)]
            per_turn.append((next(b for b in new if is_triage(b)), next(b for b in new if is_answer(b))))
        await customer.send({"type": "request_human"})
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
    return session["conversation_id"], per_turn


@pytest.fixture(scope="module")
def recorded(
    fake: FakeAnthropic, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Recorded]:
    fake.reset()
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    # An answer drawn from the payment sections, so it cites them (an answer citing nothing hands off).
    fake.add_rule(lambda body: Reply(text=GROUNDED_ANSWER) if is_answer(body) else None)
    data = tmp_path_factory.mktemp("redaction")
    db_path = data / "a" / "db.sqlite3"
    db_path.parent.mkdir(parents=True)
    env = {"SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}", "PATH": ""}
    servers.create_agent(env, data / "a", AGENT_EMAIL, AGENT_PASSWORD, "Ada")
    # A small window: the oldest turns are folded into a summary by the model during the conversation.
    server = start_server(data / "a", fake, redis_url, SWITCHBOARD_LLM_WINDOW_TOKENS="120")
    try:
        cid, per_turn = asyncio.run(_chat(server, fake))
        _wait(lambda: any(isinstance(r.body, dict) and is_summary(r.body) for r in fake.requests))
        token = httpx.post(
            f"{server.url}/api/v1/agent/login", json={"email": AGENT_EMAIL, "password": AGENT_PASSWORD}
        ).json()["token"]
        packet = httpx.get(
            f"{server.url}/api/v1/agent/conversations/{cid}", headers={"Authorization": f"Bearer {token}"}
        ).json()

        def ledger() -> list[tuple[str, dict[str, int] | None]]:
            with sqlite3.connect(db_path) as db:
                rows = db.execute("SELECT purpose, redactions FROM model_usage ORDER BY id").fetchall()
            return [(purpose, json.loads(r) if r else None) for purpose, r in rows]

        rows = _wait(
            lambda: (found := ledger()) and sum(p == "answer" for p, _ in found) == len(TURNS) and found
        )
        bodies = [r.body for r in fake.requests if isinstance(r.body, dict) and r.path == "/v1/messages"]
        yield Recorded(bodies=bodies, per_turn=per_turn, packet=packet, ledger=rows)
    finally:
        server.kill()


def test_no_raw_card_cvv_email_phone_or_iban_reaches_any_model_request(recorded: Recorded) -> None:
    purposes = {
        ("triage" if is_triage(b) else "answer" if is_answer(b) else "summary") for b in recorded.bodies
    }
    assert purposes == {"triage", "answer", "summary"}
    for body in recorded.bodies:
        sent = json.dumps(body["messages"], ensure_ascii=False)
        leaked = [value for value in RAW_VALUES if value in sent]
        assert leaked == [], f"{leaked} sent to the model"


def test_each_turn_reaches_triage_and_answer_with_typed_placeholders(recorded: Recorded) -> None:
    for (_, kinds), (triage_body, answer_body) in zip(TURNS, recorded.per_turn, strict=True):
        triage_message = triage_body["messages"][0]["content"].split("<new_message>")[-1]
        new_message = answer_body["messages"][-1]["content"][-1]["text"]
        assert PLACEHOLDER.findall(triage_message) == kinds
        assert PLACEHOLDER.findall(new_message) == kinds


def test_the_summariser_sees_placeholders_not_personal_data(recorded: Recorded) -> None:
    summaries = [json.dumps(b["messages"]) for b in recorded.bodies if is_summary(b)]
    assert any("[CARD_1]" in s and "[CVV_1]" in s for s in summaries)


def test_order_numbers_dates_prices_and_quantities_reach_the_model_beside_a_redacted_card(
    recorded: Recorded,
) -> None:
    triage_body, answer_body = recorded.per_turn[-1]
    new_message = answer_body["messages"][-1]["content"][-1]["text"]
    # the card's number depends on which older turns are folded into the summary by then
    assert PLACEHOLDER.sub("[CARD]", new_message) == (
        "Where is order 1234567 of 2024-03-05? 3 tents, $1,234.56 on [CARD]."
    )
    for value in KEPT_VALUES:
        assert value in json.dumps(triage_body["messages"])


def test_the_agents_handoff_packet_shows_what_the_customer_wrote_while_the_model_got_placeholders(
    recorded: Recorded,
) -> None:
    customer_texts = [m["text"] for m in recorded.packet["transcript"] if m.get("role") == "customer"]
    assert customer_texts == [text for text, _ in TURNS]
    sent = [answer["messages"][-1]["content"][-1]["text"] for _, answer in recorded.per_turn]
    assert [PLACEHOLDER.sub("", text) == text for text in sent] == [False] * len(TURNS)


def test_the_ledger_records_what_was_redacted_per_call(recorded: Recorded) -> None:
    answers = [redactions for purpose, redactions in recorded.ledger if purpose == "answer"]
    triages = [redactions for purpose, redactions in recorded.ledger if purpose == "triage"]
    # the first turn's answer carries card and CVV; the first triage the same
    assert answers[0] == {"card": 1, "cvv": 1}
    assert triages[0] == {"card": 1, "cvv": 1}
    # the last turn's answer counts its own card and what its window's history still carried
    assert answers[-1] is not None
    assert answers[-1]["card"] >= 1
    # each summary call's row counts the values taken out of the customer turns it folded (the fake's
    # replies quote placeholders, which are not new redactions)
    folded = "".join(
        line
        for b in recorded.bodies
        if is_summary(b)
        for line in b["messages"][0]["content"].split("<new_turns>")[-1].splitlines()
        if line.startswith("user: ")
    )
    summaries = [redactions or {} for purpose, redactions in recorded.ledger if purpose == "summary"]
    assert sum(s.get("card", 0) for s in summaries) == len(re.findall(r"\[CARD_\d+\]", folded)) > 0


# -- properties ------------------------------------------------------------------------------------

_PII = st.sampled_from(
    [
        "4111 1111 1111 1111", "5555-5555-5555-4444", "jane.roe@example.org", "+44 20 7946 0958",
        "(415) 555-2671", "DE89 3704 0044 0532 0130 00", "CVV 737", "order 1234567", "2024-03-05",
        "[EMAIL_1]", "[CARD_3]",
    ]
)  # fmt: skip
_TEXT = st.lists(
    st.one_of(_PII, st.text(alphabet=st.characters(codec="utf-8"), max_size=20)), max_size=8
).map(" ".join)
_REDACTOR = Redactor(RedactionSettings())


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_redaction_is_idempotent_and_deterministic(text: str) -> None:
    once = _REDACTOR.redact(text)
    assert _REDACTOR.redact(once.text).text == once.text
    assert Redactor(RedactionSettings()).redact(text) == once  # a fresh redactor (no cache) agrees


@settings(max_examples=100, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=6), _TEXT)
def test_appending_a_message_never_changes_how_earlier_ones_redact(history: list[str], new: str) -> None:
    before = _REDACTOR.redact_many(history)
    after = _REDACTOR.redact_many([*history, new])
    assert after[: len(history)] == before
