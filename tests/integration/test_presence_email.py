"""Presence, business hours and the reply by e-mail, end to end: a `switchboard serve` process, real Redis,
SQLite, real customer and agent WebSockets, and a real SMTP server (aiosmtpd) that receives what a
customer would get. Only the model API is the fake."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from aiosmtpd.controller import Controller

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.integration.test_widget_ws import (
    Client,
    connect,
    is_answer,
    is_triage,
    open_session,
    start_server,
    triage_reply,
)
from tests.servers import ServerProcess, agent_auth, free_port

FROM = "help@shop.test"
AWAY_AFTER_S = 1.5  # an online agent whose consoles are all gone is away after this


@dataclass
class Received:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class Inbox:
    """An aiosmtpd handler keeping what it receives."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def wait(self, count: int, timeout_s: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} e-mails, got {len(self.messages)}")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()
    # Every customer asks for a person: the turn hands off (and the queued status says who can answer).
    fake.add_rule(lambda body: triage_reply(wants_human=True) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="A draft for the agent.") if is_answer(body) else None)
    return fake


@pytest.fixture
def desk(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any, smtp: tuple[Inbox, int]
) -> Iterator[ServerProcess]:
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    env = {"SWITCHBOARD_DATABASE_URL": db, "SWITCHBOARD_DATA_DIR": str(tmp_path), "PATH": ""}
    servers.create_agent(env, tmp_path, "ada@example.com", "s3cret-pass", "Ada", "agent")
    servers.create_agent(env, tmp_path, "root@example.com", "s3cret-pass", "Root", "admin")
    proc = start_server(
        tmp_path / "a", fake_api, redis_url,
        SWITCHBOARD_DATABASE_URL=db, SWITCHBOARD_HANDOFF_LEASE_S="1.5",
        SWITCHBOARD_HANDOFF_AWAY_AFTER_S=str(AWAY_AFTER_S),
        SWITCHBOARD_SMTP_HOST="127.0.0.1", SWITCHBOARD_SMTP_PORT=str(smtp[1]),
        SWITCHBOARD_SMTP_SECURITY="none", SWITCHBOARD_SMTP_FROM_ADDRESS=FROM,
        SWITCHBOARD_SMTP_FROM_NAME="Shop Support",
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.kill()


def login(server: ServerProcess, who: str) -> dict[str, str]:
    return agent_auth(server, who, "s3cret-pass")


@pytest.fixture
async def agent_socket(desk: ServerProcess) -> AsyncIterator[Client]:
    token = login(desk, "ada@example.com")["Authorization"][7:]
    async with websockets.connect(f"ws://127.0.0.1:{desk.port}/api/v1/agent/ws?token={token}") as ws:
        yield Client(ws)


async def queued(client: Client, text: str) -> dict[str, Any]:
    await client.send({"type": "message", "client_id": f"m-{time.monotonic_ns()}", "text": text})
    frames = await client.until(lambda f: f["type"] == "status" and f["state"] == "queued")
    return frames[-1]


def presence_of(server: ServerProcess, auth: dict[str, str], name: str) -> dict[str, Any]:
    agents = httpx.get(f"{server.url}/api/v1/agent/agents", headers=auth).json()
    found: dict[str, Any] = next(a for a in agents if a["name"] == name)
    return found


async def test_with_nobody_online_the_customer_leaves_an_address_and_gets_the_reply_by_mail_and_in_chat(
    desk: ServerProcess, smtp: tuple[Inbox, int]
) -> None:
    inbox, _port = smtp
    ada = login(desk, "ada@example.com")
    other = open_session(desk)
    async for bob in connect(desk, other["token"]):
        await queued(bob, "Bob here: my order 5521 never arrived, my address is Elm St 4")
        await bob.send({"type": "contact", "email": "bob@example.net"})
        await bob.until(lambda f: f["type"] == "contact_saved")
    session = open_session(desk)
    cid = session["conversation_id"]
    async for customer in connect(desk, session["token"]):
        status = await queued(customer, "Can you repair a torn tent zip?")
        assert (status["agents_online"], status["agents_available"], status["email_reply"]) == (
            False, False, True,
        )  # fmt: skip
        await customer.send({"type": "contact", "email": "Ana.Lopez@Example.com"})
        saved = await customer.until(lambda f: f["type"] in ("contact_saved", "error"))
        assert saved[-1] == {"type": "contact_saved", "email": "ana.lopez@example.com"}
        last_seq = status["seq"]
    # The customer has left. Ada claims the chat (the packet says where replies go) and answers.
    packet = httpx.post(f"{desk.url}/api/v1/agent/conversations/{cid}/claim", headers=ada).json()
    assert packet["contact_email"] == "ana.lopez@example.com"
    reply = "Yes: send it to us with the prepaid label, we replace zips for free."
    sent = httpx.post(
        f"{desk.url}/api/v1/agent/conversations/{cid}/messages", headers=ada, json={"text": reply}
    )
    assert sent.status_code == 201, sent.text

    [mail] = inbox.wait(1)
    assert mail.rcpt_tos == ["ana.lopez@example.com"]  # exactly one recipient: hers
    assert mail.mail_from == FROM
    message = mail.message
    assert message["To"] == "ana.lopez@example.com"
    assert message["From"] == f"Shop Support <{FROM}>"
    assert message["Subject"] == "Re: Can you repair a torn tent zip?"
    assert message["Message-ID"].endswith("@shop.test>")
    assert message["Date"]
    body = message.get_content()
    assert reply in body
    assert "> Can you repair a torn tent zip?" in body  # what she asked, quoted
    assert "Ada, Shop Support" in body
    # Nothing of the other customer's conversation or address
    for foreign in ("Bob", "5521", "Elm St", "bob@example.net"):
        assert foreign not in message.as_string()

    # She comes back to the chat: the reply is there too (a persisted event, replayed by resume).
    async for customer in connect(desk, session["token"]):
        await customer.send({"type": "resume", "after": last_seq})
        frames = await customer.until(lambda f: f["type"] == "message" and f["role"] == "agent")
        assert frames[-1]["text"] == reply
        assert frames[-1]["author"] == {"name": "Ada"}
    # Resolving the chat resolves its ticket; one e-mail only for one reply.
    resolved = httpx.post(f"{desk.url}/api/v1/agent/conversations/{cid}/resolve", headers=ada)
    assert resolved.status_code == 200
    tickets = httpx.get(
        f"{desk.url}/api/v1/agent/tickets", headers=ada, params={"email": "ana.lopez@example.com"}
    ).json()
    assert [(t["conversation_id"], t["channel"], t["status"]) for t in tickets] == [(cid, "chat", "resolved")]
    await asyncio.sleep(0.5)
    assert len(inbox.messages) == 1


async def test_presence_decides_whether_someone_can_answer_and_a_closed_console_turns_away(
    desk: ServerProcess, agent_socket: Client
) -> None:
    ada = login(desk, "ada@example.com")
    await agent_socket.until(lambda f: f["type"] == "queue")
    assert presence_of(desk, ada, "Ada")["presence"] == "online"  # opening the console made her online
    session = open_session(desk)
    async for customer in connect(desk, session["token"]):
        status = await queued(customer, "I need a person please")
        assert (status["agents_online"], status["agents_available"]) == (True, True)
        assert "email_reply" not in status
        seq = status["seq"]

        # Away (socket frame): every console hears it, the waiting customer is told nobody can answer.
        await agent_socket.send({"type": "presence", "status": "away"})
        frame = (await agent_socket.until(lambda f: f["type"] == "presence" and f["presence"] != "online"))[
            -1
        ]
        assert (frame["presence"], frame["auto"]) == ("away", False)
        update = (await customer.until(lambda f, seq=seq: f["type"] == "status" and f["seq"] == seq))[-1]
        assert (update["agents_available"], update.get("email_reply")) == (False, True)

        # Online again (REST)
        back = httpx.put(f"{desk.url}/api/v1/agent/presence", headers=ada, json={"status": "online"})
        assert back.json() == {"presence": "online", "auto": False}
        update = (await customer.until(lambda f, seq=seq: f["type"] == "status" and f["seq"] == seq))[-1]
        assert update["agents_available"] is True
        bad = httpx.put(f"{desk.url}/api/v1/agent/presence", headers=ada, json={"status": "busy"})
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request")

        # Her console goes away: after the grace period she is away (set automatically), the customer told.
        await agent_socket.ws.close()
        update = (await customer.until(lambda f, seq=seq: f["type"] == "status" and f["seq"] == seq))[-1]
        assert update["agents_available"] is False
    away = presence_of(desk, ada, "Ada")
    assert (away["presence"], away["auto"]) == ("away", True)
    # A console opened again makes her online; one she chose away for stays away.
    token = ada["Authorization"][7:]
    async with websockets.connect(f"ws://127.0.0.1:{desk.port}/api/v1/agent/ws?token={token}") as ws:
        await Client(ws).until(lambda f: f["type"] == "queue")
        assert presence_of(desk, ada, "Ada")["presence"] == "online"
        await Client(ws).send({"type": "presence", "status": "offline"})
        await Client(ws).until(lambda f: f["type"] == "presence" and f["presence"] == "offline")
    async with websockets.connect(f"ws://127.0.0.1:{desk.port}/api/v1/agent/ws?token={token}") as ws:
        await Client(ws).until(lambda f: f["type"] == "queue")
        assert presence_of(desk, ada, "Ada")["presence"] == "offline"


async def test_business_hours_set_by_an_admin_close_the_team_for_everyone(
    desk: ServerProcess, agent_socket: Client
) -> None:
    admin, ada = login(desk, "root@example.com"), login(desk, "ada@example.com")
    await agent_socket.until(lambda f: f["type"] == "queue")
    teams = httpx.get(f"{desk.url}/api/v1/admin/teams", headers=admin).json()
    assert [(t["id"], t["business_hours"], t["source"], t["open_now"]) for t in teams] == [
        ("default", None, "setting", True)
    ]
    # Every day closed (no day named): nobody can answer, however many agents are online.
    closed = {"timezone": "Europe/Berlin", "weekly": {}, "holidays": ["2026-12-25"]}
    put = httpx.put(
        f"{desk.url}/api/v1/admin/teams/default/hours", headers=admin, json={"business_hours": closed}
    )
    assert put.status_code == 200, put.text
    assert (put.json()["source"], put.json()["open_now"], put.json()["business_hours"]) == (
        "admin", False, {"timezone": "Europe/Berlin", "weekly": {}, "holidays": ["2026-12-25"]},
    )  # fmt: skip
    session = open_session(desk)
    async for customer in connect(desk, session["token"]):
        status = await queued(customer, "Is anyone there?")
    assert (status["agents_online"], status["agents_available"], status["email_reply"]) == (True, False, True)

    # Bad hours: a typed 400 that says why, and nothing changes
    for body, says in (
        ({"business_hours": {"timezone": "Mars/Base"}}, "unknown time zone"),
        (
            {"business_hours": {"timezone": "UTC", "weekly": {"mon": ["18:00-09:00"]}}},
            "ends before it starts",
        ),
        ({"business_hours": "always"}, ""),
    ):
        bad = httpx.put(f"{desk.url}/api/v1/admin/teams/default/hours", headers=admin, json=body)
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request"), bad.text
        assert says in bad.json()["error"]["message"]
    unknown = httpx.put(
        f"{desk.url}/api/v1/admin/teams/sales/hours", headers=admin, json={"business_hours": None}
    )
    assert unknown.status_code == 404
    assert (
        httpx.put(
            f"{desk.url}/api/v1/admin/teams/default/hours", headers=ada, json={"business_hours": None}
        ).status_code
        == 403
    )
    assert httpx.get(f"{desk.url}/api/v1/admin/teams", headers=admin).json()[0]["source"] == "admin"
    # Back to the setting (none: always open)
    reset = httpx.put(
        f"{desk.url}/api/v1/admin/teams/default/hours", headers=admin, json={"business_hours": None}
    )
    assert (reset.json()["source"], reset.json()["open_now"]) == ("setting", True)
