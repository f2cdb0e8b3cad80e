"""``switchboard eval export`` on SQLite and PostgreSQL: which conversations become which cases, the
scrubbing (attacked with PII seeded in archived messages), stable ids and re-export without duplicates."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from support.db.engine import session_factory
from support.db.models import ArchivedConversation, ArchivedMessage, Example, HandoffRecord, Rating
from support.evaluation.cases import load_cases
from support.evaluation.export import case_id, export_cases
from support.evaluation.service import ExportScrubber
from support.settings import Settings

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SCRUBBER = ExportScrubber(Settings())  # what the command builds
# What an attacker looks for in the output: every seeded secret, verbatim.
SECRETS = [
    "margarethe.voss@example.org", "Margarethe", "Voss", "+49 151 2345 6789", "4111 1111 1111 1111",
    "4111111111111111", "DE89370400440532013000", "48213", "Benedikt", "RMA-2291-XK", "770012345",
    "margarethe", "benedikt",
]  # fmt: skip


async def archive(
    engine: AsyncEngine,
    cid: str,
    messages: list[tuple[str, str]],
    *,
    start: datetime = T0,
    handoff: tuple[int, str] | None = None,
    rating: int | None = None,
    retired_seq: int | None = None,
) -> None:
    """One archived conversation; ``handoff``: (after which message index, reason)."""
    visitor = {"name": "Margarethe Voss", "email": "margarethe.voss@example.org"}
    async with session_factory(engine)() as session:
        session.add(ArchivedConversation(
            id=cid, widget_key="w", visitor=json.dumps(visitor), visitor_email=visitor["email"],
            state="closed", created_at=start, last_activity=start + timedelta(hours=1),
        ))  # fmt: skip
        await session.flush()
        for seq, (role, text) in enumerate(messages, start=1):
            author = json.dumps({"name": "Benedikt Agent"}) if role == "agent" else None
            session.add(ArchivedMessage(
                conversation_id=cid, seq=seq, event_id=f"{cid}-{seq}", type="message", role=role, text=text,
                created_at=start + timedelta(minutes=seq), author=author,
            ))  # fmt: skip
        if handoff is not None:
            after, reason = handoff
            session.add(HandoffRecord(
                conversation_id=cid, reason=reason, priority="normal",
                queued_at=start + timedelta(minutes=after, seconds=30),
            ))  # fmt: skip
        if rating is not None:
            session.add(Rating(conversation_id=cid, score=rating))
        if retired_seq is not None:
            session.add(Example(conversation_id=cid, seq=retired_seq, customer_message="q",
                                agent_text="a reply an admin retired", status="retired"))  # fmt: skip
        await session.commit()


async def seed(engine: AsyncEngine) -> None:
    await archive(engine, "legal", [
        ("customer", "Hi, I am Margarethe Voss, margarethe.voss@example.org, phone +49 151 2345 6789."),
        ("customer", "margarethe again: order 48213 never came. I will sue! Card 4111 1111 1111 1111."),
        ("agent", "Hello Margarethe, I am Benedikt; I have passed order 48213 to our legal team."),
    ], handoff=(2, "wants_human"))  # fmt: skip
    await archive(engine, "unsure", [
        ("customer", "Can I return a tent I set up once? Return RMA-2291-XK, IBAN DE89370400440532013000."),
        ("assistant", "Let me get a colleague."),
        ("agent", "benedikt here, margarethe: yes, within 30 days. Mail margarethe.voss@example.org."),
        ("customer", "Thanks"),
    ], handoff=(1, "low_confidence"))  # fmt: skip
    await archive(engine, "confirmed", [
        ("customer", "Do you ship to Norway? Call me on 770012345."),
        ("assistant", "Yes, we ship to Norway in 5-7 working days."),
    ], rating=5)  # fmt: skip
    await archive(engine, "unrated", [("customer", "Hello?"), ("assistant", "Hi, how can I help?")])
    await archive(engine, "retired", [
        ("customer", "Where is my parcel?"), ("agent", "It is with the courier, Margarethe."),
    ], handoff=(1, "low_confidence"), retired_seq=2)  # fmt: skip
    await archive(engine, "eval-run-1-case", [("customer", "never exported")], handoff=(1, "urgent"))
    await archive(engine, "late", [("customer", "Is the shop open on Sunday?"), ("assistant", "Yes.")],
                  start=T0 + timedelta(days=10), rating=4)  # fmt: skip


async def test_export_turns_conversations_into_scrubbed_cases_with_stable_ids(
    db_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(db_engine)
    out = tmp_path / "cases.jsonl"
    lines: list[str] = []
    stats = await export_cases(session_factory(db_engine), SCRUBBER, out, until=T0 + timedelta(days=5),
                               progress=lines.append)  # fmt: skip
    text = out.read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in text, secret
    cases = {c.id: c for c in load_cases(out)}  # what `switchboard eval` reads
    said = "\n".join(t for c in cases.values() for t in (*c.turns, c.reference or ""))
    assert not re.search(r"\d{5,}|@", said)
    assert set(cases) == {case_id(c) for c in ("legal", "unsure", "confirmed", "retired")}
    legal = cases[case_id("legal")]
    assert legal.expect.handoff is True
    assert legal.reference is None
    assert len(legal.turns) == 2
    assert "[NAME]" in legal.turns[0]
    assert "[ORDER_NUMBER]" in legal.turns[1]
    unsure = cases[case_id("unsure")]
    assert unsure.expect.handoff is False
    assert unsure.expect.must_include == ()
    assert len(unsure.turns) == 1
    assert "within 30 days" in (unsure.reference or "")
    confirmed = cases[case_id("confirmed")]
    assert confirmed.expect.handoff is False
    assert confirmed.reference == "Yes, we ship to Norway in 5-7 working days."
    # An admin retired the example made of the agent's reply: no "answer like this" case from it.
    assert cases[case_id("retired")].expect.handoff is True
    assert stats.skipped == {"not_confirmed": 1}
    assert stats.written == 4
    assert lines[-1].startswith("5 conversations read, 4 new cases")

    again = await export_cases(session_factory(db_engine), SCRUBBER, out)
    assert (again.written, again.already) == (1, 4)  # only the later conversation is new
    assert out.read_text(encoding="utf-8").startswith(text)
    assert len(load_cases(out)) == 5
    assert (await export_cases(session_factory(db_engine), SCRUBBER, out, limit=1)).written == 0
