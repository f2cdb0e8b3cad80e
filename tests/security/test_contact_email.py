"""The widget's `contact` frame against an attacker: addresses that would add a header or a recipient, an
address too long, a customer's text that would add a header through the subject, and a frame aimed at
another visitor's conversation. Real server, real SMTP server (aiosmtpd), real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.integration import test_presence_email as shared
from tests.integration.test_presence_email import Inbox, login, queued
from tests.integration.test_widget_ws import connect, open_session
from tests.servers import ServerProcess

# The real server, SMTP server and model fake of the e-mail integration tests (registered by their names).
desk, smtp, fake_api = shared.desk, shared.smtp, shared.fake_api

HOSTILE_ADDRESSES: list[Any] = [
    "ana@example.com\r\nBcc: everyone@evil.test",  # CRLF header injection
    "ana@example.com\nBcc: everyone@evil.test",
    "ana@example.com\n",  # a trailing line break (Python's `$` would let it through)
    "ana@example.com,eve@evil.test",  # a second recipient
    "Ana <eve@evil.test>",
    '"ana\r\nx"@example.com',
    "a" * 300 + "@example.com",  # oversized
    "ana@example.com" + " " * 5000,
    "",
    7,
    None,
]


async def test_hostile_addresses_are_bad_frames_and_change_nothing(
    desk: ServerProcess, smtp: tuple[Inbox, int]
) -> None:
    ada = login(desk, "ada@example.com")
    session = open_session(desk)
    cid = session["conversation_id"]
    async for customer in connect(desk, session["token"]):
        await queued(customer, "Where is my parcel?")
        for address in HOSTILE_ADDRESSES:
            await customer.send({"type": "contact", "email": address})
            error = (await customer.until(lambda f: f["type"] in ("error", "contact_saved")))[-1]
            assert (error["type"], error["code"]) == ("error", "bad_frame"), address
            await asyncio.sleep(1.0)  # the frames share the socket's message bucket (1/s)
        # The socket is still open and usable; nothing was recorded.
        assert (
            httpx.get(f"{desk.url}/api/v1/agent/conversations/{cid}", headers=ada).json()["contact_email"]
            is None
        )
        await customer.send({"type": "contact", "email": "ana@example.com"})
        assert (await customer.until(lambda f: f["type"] == "contact_saved"))[-1][
            "email"
        ] == "ana@example.com"


async def test_a_customers_text_cannot_add_a_header_or_recipient_through_the_subject(
    desk: ServerProcess, smtp: tuple[Inbox, int]
) -> None:
    inbox, _port = smtp
    ada = login(desk, "ada@example.com")
    session = open_session(desk)
    cid = session["conversation_id"]
    async for customer in connect(desk, session["token"]):
        await queued(customer, "Refund please\r\nBcc: everyone@evil.test\r\nX-Injected: yes\n\nbody")
        await customer.send({"type": "contact", "email": "ana@example.com"})
        await customer.until(lambda f: f["type"] == "contact_saved")
    httpx.post(f"{desk.url}/api/v1/agent/conversations/{cid}/claim", headers=ada).raise_for_status()
    httpx.post(
        f"{desk.url}/api/v1/agent/conversations/{cid}/messages", headers=ada, json={"text": "Refunded."}
    ).raise_for_status()
    [mail] = inbox.wait(1)
    assert mail.rcpt_tos == ["ana@example.com"]
    assert mail.message["Bcc"] is None
    assert mail.message["X-Injected"] is None
    assert mail.message["Subject"] == "Re: Refund please Bcc: everyone@evil.test X-Injected: yes body"


async def test_a_contact_frame_reaches_only_the_sockets_own_conversation(
    desk: ServerProcess, smtp: tuple[Inbox, int]
) -> None:
    inbox, _port = smtp
    ada = login(desk, "ada@example.com")
    victim = open_session(desk)
    async for customer in connect(desk, victim["token"]):
        await queued(customer, "My card was charged twice")
    attacker = open_session(desk)
    async for evil in connect(desk, attacker["token"]):
        # While the bot has the attacker's own conversation: no e-mail reply to offer.
        await evil.send(
            {"type": "contact", "email": "eve@evil.test", "conversation_id": victim["conversation_id"]}
        )
        error = (await evil.until(lambda f: f["type"] in ("error", "contact_saved")))[-1]
        assert (error["type"], error["code"]) == ("error", "email_unavailable")
        await queued(evil, "I need a person")
        await evil.send(
            {"type": "contact", "email": "eve@evil.test", "conversation_id": victim["conversation_id"]}
        )
        await evil.until(lambda f: f["type"] == "contact_saved")
    victim_packet = httpx.get(
        f"{desk.url}/api/v1/agent/conversations/{victim['conversation_id']}", headers=ada
    )
    assert victim_packet.json()["contact_email"] is None
    attacker_packet = httpx.get(
        f"{desk.url}/api/v1/agent/conversations/{attacker['conversation_id']}", headers=ada
    )
    assert attacker_packet.json()["contact_email"] == "eve@evil.test"
    # The victim's reply goes to the victim's chat only: no e-mail at all.
    cid = victim["conversation_id"]
    httpx.post(f"{desk.url}/api/v1/agent/conversations/{cid}/claim", headers=ada).raise_for_status()
    httpx.post(
        f"{desk.url}/api/v1/agent/conversations/{cid}/messages",
        headers=ada,
        json={"text": "Refund on its way."},
    ).raise_for_status()
    await asyncio.sleep(1.5)
    assert inbox.messages == []
