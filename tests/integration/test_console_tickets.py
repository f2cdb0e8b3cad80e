"""Tickets beside chats in the agents' queue: a `switchboard serve` process with the fake model API, a
chat over a real widget WebSocket, a ticket filed through the ticket service, and an agent over the real
agent HTTP API who claims the ticket, sends an edit of the bot's draft and resolves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.runtime import Runtime
from support.testing.fake_anthropic import FakeAnthropic, Reply, last_user_text
from support.tickets.service import TicketIn, conversation_id_of
from tests import servers
from tests.integration.test_widget_ws import connect, open_session, start_server
from tests.servers import ServerProcess, agent_auth
from tests.ticket_filing import is_answer, is_triage, ticket_runtime, triage_reply, until

PASSWORD = "s3cret-pass"
DRAFT = "We see two charges; the second one is a hold and drops off within 3 business days."
EDIT = DRAFT + " I have asked our payments team to release it today."
SUBJECT = "URGENT: charged twice for one order"
BODY = "My card was charged twice for the same tent. Please fix this."
CHAT_TEXT = "Can you engrave our names on a wedding tent?"


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    """Triage is unsure of everything (so people take it); the ticket's says urgent. Drafts say DRAFT."""
    fake.reset()

    def rule(body: dict[str, Any]) -> Reply | None:
        if is_triage(body):
            urgent = "URGENT" in last_user_text(body)
            return triage_reply("urgent" if urgent else "normal", confidence=0.2)
        if is_answer(body):
            return Reply(text=DRAFT)
        return None

    fake.add_rule(rule)
    return fake


@pytest.fixture
def server(tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any) -> Any:
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    proc = start_server(tmp_path / "srv", fake_api, redis_url, SWITCHBOARD_DATABASE_URL=db)
    try:
        servers.create_agent(proc.env, proc.data_dir, "ada@example.com", PASSWORD, "Ada")
        yield proc
    finally:
        proc.kill()


@pytest.fixture
async def desk(
    tmp_path: Path, server: ServerProcess, fake_api: FakeAnthropic, redis_url: str
) -> AsyncIterator[Runtime]:
    """The ticket service on the server's Redis and database (the REST channel's service)."""
    async with ticket_runtime(
        tmp_path / "filer", fake_api, redis_url, server.env["SWITCHBOARD_DATABASE_URL"]
    ) as runtime:
        yield runtime


async def test_a_ticket_sits_beside_a_chat_and_is_answered_learned_from_and_resolved(
    server: ServerProcess, desk: Runtime
) -> None:
    ada = agent_auth(server, "ada@example.com", PASSWORD)
    async with httpx.AsyncClient(base_url=server.url, headers=ada) as http:
        # A chat the bot is unsure about goes to people...
        session = open_session(server)
        chat_id = session["conversation_id"]
        async for customer in connect(server, session["token"]):
            await customer.send({"type": "message", "client_id": "m1", "text": CHAT_TEXT})
            await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
            break
        # ...and so does an urgent ticket the bot is unsure about.
        ticket, created = await desk.tickets.create(
            TicketIn(subject=SUBJECT, body=BODY, customer_email="Ana@Example.com", customer_name="Ana",
                     channel="email"),
            key_id=None, idempotency_key=None,
        )  # fmt: skip
        assert created
        cid = conversation_id_of(ticket.id)

        async def both_queued() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await http.get("/api/v1/agent/queue")).json()
            return items if len(items) == 2 else None

        queue = await until(both_queued)
        by_id = {item["conversation_id"]: item for item in queue}
        assert by_id[cid]["kind"] == "ticket"
        assert by_id[cid]["ticket"] == {
            "id": ticket.id, "subject": SUBJECT, "channel": "email", "email": "ana@example.com",
        }  # fmt: skip
        assert by_id[cid]["reason"] == "urgent"
        assert by_id[cid]["customer"] == {"name": "Ana", "email": "ana@example.com"}
        assert by_id[chat_id]["kind"] == "chat"
        assert by_id[chat_id]["ticket"] is None
        assert by_id[chat_id]["reason"] == "low_confidence"
        assert [item["conversation_id"] for item in queue] == [cid, chat_id]  # urgent first

        async def packet_with_draft() -> dict[str, Any] | None:
            packet: dict[str, Any] = (await http.get(f"/api/v1/agent/conversations/{cid}")).json()
            return packet if packet["draft"] else None

        packet = await until(packet_with_draft)
        assert packet["kind"] == "ticket"
        assert packet["ticket"]["subject"] == SUBJECT
        assert packet["ticket"]["body"] == BODY
        assert packet["ticket"]["channel"] == "email"
        assert packet["ticket"]["status"] == "queued"
        assert packet["draft"]["text"] == DRAFT
        chat_packet = (await http.get(f"/api/v1/agent/conversations/{chat_id}")).json()
        assert chat_packet["kind"] == "chat"
        assert chat_packet["ticket"] is None

        claimed = await http.post(f"/api/v1/agent/conversations/{cid}/claim")
        assert claimed.status_code == 200, claimed.text
        mine = (await http.get("/api/v1/agent/conversations")).json()
        assert [(m["conversation_id"], m["kind"], m["ticket"]["subject"]) for m in mine] == [
            (cid, "ticket", SUBJECT)
        ]
        sent = await http.post(
            f"/api/v1/agent/conversations/{cid}/messages",
            json={"text": EDIT, "draft_id": packet["draft"]["id"]},
        )
        assert sent.status_code == 201, sent.text

        view = await desk.tickets.view(ticket.id, any_key=True)
        assert [(r["author"], r["text"]) for r in view["replies"]] == [("agent", EDIT)]
        examples = await desk.examples.of_conversations([cid])
        assert len(examples) == 1
        assert examples[0].bot_draft == DRAFT
        assert examples[0].agent_text == EDIT
        assert examples[0].customer_message == f"{SUBJECT}\n\n{BODY}"

        resolved = await http.post(f"/api/v1/agent/conversations/{cid}/resolve")
        assert resolved.status_code == 200, resolved.text
        assert (await desk.tickets.view(ticket.id, any_key=True))["status"] == "resolved"
        # The chat still waits.
        assert [item["conversation_id"] for item in (await http.get("/api/v1/agent/queue")).json()] == [
            chat_id
        ]


async def test_a_ticket_queued_without_its_card_gets_it_from_the_ticket_and_an_erased_one_stays_a_ticket(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any
) -> None:
    """Queue items written before they carried the ticket (an upgrade) are filled in from SQL."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    async with ticket_runtime(tmp_path, fake_api, redis_url, db) as runtime:
        kept, _ = await runtime.tickets.create(
            TicketIn(
                subject="Lost parcel", body="Where is it?", customer_email="ana@example.com", channel="form"
            ),
            key_id=None, idempotency_key=None,
        )  # fmt: skip
        for cid in (conversation_id_of(kept.id), conversation_id_of("gone")):
            await runtime.handoff.enqueue(cid, reason="low_confidence", preview="Lost parcel")
        items = {item["conversation_id"]: item for item in await runtime.desk.queue_items()}
    assert items[conversation_id_of(kept.id)]["kind"] == "ticket"
    assert items[conversation_id_of(kept.id)]["ticket"] == {
        "id": kept.id, "subject": "Lost parcel", "channel": "form", "email": "ana@example.com",
    }  # fmt: skip
    assert items[conversation_id_of("gone")]["kind"] == "ticket"
    assert items[conversation_id_of("gone")]["ticket"] == {
        "id": "gone", "subject": None, "channel": None, "email": None,
    }  # fmt: skip
