"""Answers that show their ground, end to end: a `switchboard serve` subprocess, real Redis and SQLite, the
real SDK against the fake model API. An answer records the policy sections it cites (the customer's frame
names them, the agent's console shows the cited text), the cited documents stay a cached prefix across
turns and conversations, and an answer to a question that cites nothing hands off as `ungrounded`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from support.db.engine import make_engine
from support.testing.fake_anthropic import FakeAnthropic, cached_prefix_tokens
from tests import servers
from tests.integration.test_widget_ws import (
    ORIGIN,
    assistant_message,
    connect,
    is_answer,
    is_triage,
    open_session,
    start_server,
    triage_reply,
)
from tests.servers import ServerProcess, agent_auth

PASSWORD = "s3cret-pass-for-grounding"
QUIET_KEY = "pk_quiet"  # a widget key the admin did not let show sources


@pytest.fixture
def served(tmp_path: Path, fake: FakeAnthropic, redis_url: str, redis_client: Any) -> Iterator[Any]:
    fake.reset()
    db = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    env = {"SWITCHBOARD_DATABASE_URL": db, "SWITCHBOARD_DATA_DIR": str(tmp_path), "PATH": ""}
    servers.create_agent(env, tmp_path, "ada@example.com", PASSWORD, "Ada", "agent")
    proc = start_server(
        tmp_path / "a",
        fake,
        redis_url,
        SWITCHBOARD_DATABASE_URL=db,
        SWITCHBOARD_WIDGET_SHOW_SOURCES='["pk_test"]',
        SWITCHBOARD_WIDGET_KEYS=json.dumps({"pk_test": [ORIGIN], QUIET_KEY: [ORIGIN]}),
    )
    try:
        yield proc, db
    finally:
        proc.kill()


async def turns(server: ServerProcess, questions: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """Ask ``questions`` in one new conversation; its id and, per question, the frame that ended the turn
    (the answer, or the ``queued`` status of a handoff)."""
    session = open_session(server)
    assert session["show_sources"] is True, "the admin enabled sources for this widget key"
    ends = []
    async for client in connect(server, session["token"]):
        for i, question in enumerate(questions):
            await client.send({"type": "message", "client_id": f"q-{i}", "text": question})
            frames = await client.until(lambda f: assistant_message(f) or f.get("state") == "queued")
            ends.append(frames[-1])
    return str(session["conversation_id"]), ends


async def answer_rows(db: str, rows: int) -> list[tuple[str, int]]:
    """(conversation_id, cache_read_tokens) of the answer calls' ledger rows, once there are ``rows``."""
    engine = make_engine(db)
    query = text(
        "SELECT conversation_id, cache_read_tokens FROM model_usage WHERE purpose = 'answer' ORDER BY id"
    )
    try:
        async with asyncio.timeout(10):
            while True:
                async with engine.connect() as conn:
                    found = [(r[0], r[1]) for r in await conn.execute(query)]
                if len(found) >= rows:
                    return found
                await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


async def test_answers_record_their_sections_read_the_cache_and_an_ungrounded_answer_hands_off(
    served: Any, fake: FakeAnthropic
) -> None:
    server, db = served
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)

    first, (returns, boots, refund) = await turns(
        server,
        [
            "How many days do I have to return my tent?",
            "Can I return boots I wore on a trail?",
            "How is my refund paid?",
        ],
    )
    assert returns["sources"] == [{"document": "sample_policy", "section": "Return window"}]
    assert "cited_text" not in returns["sources"][0], "the customer's frame names the section only"
    assert boots["sources"]
    assert refund["sources"]
    second, (austria,) = await turns(server, ["How long does delivery to Austria take?"])
    assert austria["type"] == "message"
    assert austria["sources"][0]["section"] == "Shipping zones and warehouses"  # it names Austria

    # The knowledge documents are one cached prefix for every conversation; the history is read on turn 2.
    bodies = [r.body for r in fake.requests if r.body and is_answer(r.body)]
    prefix = cached_prefix_tokens(bodies[0])
    assert bodies[0]["messages"][0]["content"][0]["type"] == "document"
    rows = await answer_rows(db, 4)
    assert [cid for cid, _ in rows] == [first, first, first, second]
    assert [read for _, read in rows][:2] == [0, prefix], "turn 1 writes the documents, turn 2 reads them"
    assert rows[2][1] > prefix, "turn 3 reads the documents and the history turn 2 wrote"
    assert rows[3][1] == prefix, "another conversation reads the documents written by the first"

    # A question the knowledge does not cover: the fake's answer cites nothing, so a person takes it.
    third, (queued,) = await turns(server, ["What is the airspeed velocity of an unladen swallow?"])
    assert (queued["type"], queued["state"], queued["reason"]) == ("status", "queued", "ungrounded")

    agent = agent_auth(server, "ada@example.com", PASSWORD)
    packet = httpx.get(f"{server.url}/api/v1/agent/conversations/{third}", headers=agent).json()
    assert (packet["reason"], packet["reason_text"]) == (
        "ungrounded",
        "Bot answer not grounded in the policy",
    )
    assert "swallow" in packet["draft"]["text"], "the ungrounded draft is kept for the agent"
    answered = httpx.get(f"{server.url}/api/v1/agent/conversations/{first}", headers=agent).json()
    bot = [e for e in answered["transcript"] if e.get("role") == "assistant"]
    assert bot[0]["sources"][0]["section"] == "Return window"
    assert "within 30 days of delivery" in bot[0]["sources"][0]["cited_text"], "agents see the cited text"


async def test_a_widget_key_that_does_not_show_sources_never_receives_section_names(
    served: Any, fake: FakeAnthropic
) -> None:
    """An internal policy's section names are not every customer's to read: a customer of a widget key
    outside SWITCHBOARD_WIDGET_SHOW_SOURCES reading the raw socket finds them neither in the live answer nor
    in a replay, while the agent still sees what the answer cites."""
    server, _ = served
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    resp = httpx.post(
        f"{server.url}/api/v1/widget/sessions", json={"widget_key": QUIET_KEY}, headers={"Origin": ORIGIN}
    )
    assert resp.status_code == 201, resp.text
    session = resp.json()
    assert session["show_sources"] is False
    async for client in connect(server, session["token"]):
        await client.send(
            {"type": "message", "client_id": "q", "text": "How many days do I have to return my tent?"}
        )
        live = await client.until(assistant_message)
        await client.send({"type": "resume", "after": 0})
        replay = await client.until(assistant_message)
    for frame in live + replay:
        assert "sources" not in frame, frame
    assert "Return window" not in json.dumps(live + replay)
    agent = agent_auth(server, "ada@example.com", PASSWORD)
    cid = session["conversation_id"]
    packet = httpx.get(f"{server.url}/api/v1/agent/conversations/{cid}", headers=agent).json()
    bot = [e for e in packet["transcript"] if e.get("role") == "assistant"]
    assert bot[0]["sources"][0]["section"] == "Return window", "the answer still records what it cites"
