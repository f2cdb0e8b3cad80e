"""Search, customer profiles, labels and durable notes over the real agent HTTP API (an in-process app on
real Redis and a real SQLite or PostgreSQL database): newest-first results with highlighted snippets over
live and archived messages, notes, tickets and customers; the label filter; queries that are FTS syntax
or malformed get a 400 or safe results; erasure takes a customer out of the index."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import keys
from support.conversation.archive import archive_conversation
from support.db.models import Rating
from support.privacy.customer_data import CustomerRef
from support.runtime import Runtime, open_runtime
from support.settings import JobSettings
from support.testing.fake_anthropic import FakeAnthropic
from support.tickets.service import TicketIn
from tests.ticket_filing import ticket_settings

PASSWORD = "s3cret-pass-1"
# An hour ago: the indexer reads conversations active in the last day (as live ones are).
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)


def at(minutes: int) -> str:
    """The API's timestamp of ``minutes`` after T0."""
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


@dataclass
class Desk:
    """The app under test, its runtime, and an agent's authorised HTTP client."""

    http: httpx.AsyncClient
    runtime: Runtime
    auth: dict[str, str]

    async def get(self, path: str, **params: Any) -> Any:
        return await self.http.get(path, params=params, headers=self.auth)


@pytest.fixture
async def desk(
    tmp_path: Path, fake: FakeAnthropic, redis_url: str, redis_client: Any, db_url: str
) -> AsyncIterator[Desk]:
    settings = ticket_settings(tmp_path, fake, redis_url, db_url, jobs=JobSettings(in_process=False))
    # The app is built in this process: the newest Litestar warns, while importing and building it, about
    # how the app's handlers declare ``runtime``, ``data``, headers and query parameters (the server
    # processes other tests start are not under pytest's warnings-as-errors). Those warnings are the whole
    # app's; requests stay strict.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from support.app import create_app  # importing it warns too (see above)

        app = create_app(settings, own_runtime=False)
    async with open_runtime(settings) as runtime:
        app.state.runtime = runtime
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://desk.test") as http:
            await runtime.agents.create(email="ada@example.com", password=PASSWORD, name="Ada")
            creds = {"email": "ada@example.com", "password": PASSWORD}
            login = await http.post("/api/v1/agent/login", json=creds)
            assert login.status_code == 200, login.text
            yield Desk(http, runtime, {"Authorization": f"Bearer {login.json()['token']}"})


async def chat(
    runtime: Runtime, cid: str, visitor: dict[str, Any], lines: list[tuple[str, str, int]]
) -> None:
    """A conversation with ``(role, text, minutes after T0)`` messages."""
    start = T0 + timedelta(minutes=lines[0][2])
    await runtime.store.create_conversation(cid, widget_key="wk", visitor=visitor, now=start)
    for role, body, minutes in lines:
        await runtime.store.append_event(
            cid, type="message", role=role, text=body, now=T0 + timedelta(minutes=minutes)
        )


ANA = {"id": "v-ana", "name": "Ana Lopez", "email": "ana@example.com"}
BO = {"id": "v-bo", "name": "Bo Berg"}


async def seed(d: Desk) -> None:
    rt = d.runtime
    await chat(rt, "c-old", ANA, [("customer", "Where is my refund for the lantern?", 0)])
    await rt.search_index.index_conversations(["c-old"])  # as the archiver does just before archiving
    await archive_conversation(rt.store, rt.sessions, "c-old")
    await d.runtime.redis.delete(*keys.conversation_all_keys("c-old"))  # archived and expired from Redis
    async with rt.sessions() as session, session.begin():
        session.add(Rating(conversation_id="c-old", score=4, comment="fine", resolution="agent"))
    await chat(
        rt, "c-ana", ANA,
        [("customer", "My refund for the tent has not arrived", 10),
         ("agent", "Your refund was sent today", 11)],
    )  # fmt: skip
    await chat(rt, "c-bo", BO, [("customer", "Refunds please, the <b>stove</b> is broken", 20)])
    await rt.tickets.create(
        TicketIn(subject="Broken zipper on my tent", body="The zipper broke on day one.",
                 customer_email="ana@example.com", customer_name="Ana Lopez", channel="email"),
        key_id=None, idempotency_key=None,
    )  # fmt: skip
    note = await d.http.post(
        "/api/v1/agent/conversations/c-ana/notes", json={"text": "Escalated to payments team"}, headers=d.auth
    )
    assert note.status_code == 201, note.text
    labels = await d.http.put(
        "/api/v1/agent/conversations/c-ana/labels", json={"labels": ["Billing", " vip ", "billing"]},
        headers=d.auth,
    )  # fmt: skip
    assert labels.json() == {"labels": ["billing", "vip"]}
    assert await rt.search_index.index_changed() > 0


async def conversations(d: Desk, q: str, **params: Any) -> list[str]:
    """The conversation of each result of ``q``, in order."""
    return [r["conversation_id"] for r in (await d.get("/api/v1/agent/search", q=q, **params)).json()]


def marked(result: dict[str, Any]) -> list[str]:
    return [result["snippet"][a:b] for a, b in result["highlights"]]


async def test_search_finds_live_and_archived_messages_notes_tickets_and_customers_newest_first(
    desk: Desk,
) -> None:
    await seed(desk)
    found = (await desk.get("/api/v1/agent/search", q="refund")).json()
    assert [(r["conversation_id"], r["kind"], r["at"]) for r in found] == [
        ("c-bo", "message", at(20)),
        ("c-ana", "message", at(11)),
        ("c-ana", "message", at(10)),
        ("c-old", "message", at(0)),
    ]
    # Plain text, as written: the console escapes it.
    assert found[0]["snippet"] == "Refunds please, the <b>stove</b> is broken"
    assert marked(found[0]) == ["Refunds"]
    assert marked(found[1]) == ["refund"]
    assert found[1]["labels"] == ["billing", "vip"]
    assert found[1]["visitor_id"] == "v-ana"
    assert found[3]["labels"] == []

    billing = (await desk.get("/api/v1/agent/search", q="refund", label="billing")).json()
    assert [r["at"] for r in billing] == [at(11), at(10)]
    # The label as an agent may type it is the label stored, as in the profile.
    assert (await desk.get("/api/v1/agent/search", q="refund", label=" Billing ")).json() == billing

    notes = (await desk.get("/api/v1/agent/search", q="payments")).json()
    assert [(r["kind"], r["conversation_id"], r["snippet"]) for r in notes] == [
        ("note", "c-ana", "Escalated to payments team")
    ]
    zipper = (await desk.get("/api/v1/agent/search", q='"broken zipper"')).json()
    assert [r["kind"] for r in zipper] == ["ticket"]  # its first message is the ticket: indexed once
    assert zipper[0]["ticket_id"] is not None
    assert marked(zipper[0]) == ["Broken", "zipper", "zipper"]
    people = (await desk.get("/api/v1/agent/search", q="lopez")).json()
    assert {r["kind"] for r in people} == {"customer"}
    ids = {r["conversation_id"] for r in people}
    assert {i for i in ids if not i.startswith("ticket-")} == {"c-old", "c-ana"}
    assert len(ids) == 3, ids  # and the conversation of the ticket Ana Lopez filed
    # Excluded words and OR mean the same on both databases.
    assert await conversations(desk, "refund -tent") == ["c-bo", "c-ana", "c-old"]
    either = (await desk.get("/api/v1/agent/search", q="lantern OR stove")).json()
    assert [r["conversation_id"] for r in either] == ["c-bo", "c-old"]
    assert len((await desk.get("/api/v1/agent/search", q="refund", limit=2)).json()) == 2


async def test_fts_syntax_and_malformed_queries_get_a_400_or_safe_results_and_tokens_are_required(
    desk: Desk,
) -> None:
    await seed(desk)
    for q in ['"', "*", "-", '"refund', "", "   ", "x" * 201, "ab " * 13, "the and", "()", "-refund"]:
        resp = await desk.get("/api/v1/agent/search", q=q)
        assert resp.status_code == 400, (q, resp.text)
        assert resp.json()["error"]["code"] == "invalid_request"
    for q in [
        "refund*",
        "refund)",
        "the refund",
        "(refund",
        "refund' OR 1=1 --",
        "refund:",
        "refund AND",
        "^refund",
    ]:
        resp = await desk.get("/api/v1/agent/search", q=q)
        assert resp.status_code == 200, (q, resp.text)
        assert resp.json(), q
        assert all(marked(r)[0].lower().startswith("refund") for r in resp.json()), q
    near = await desk.get("/api/v1/agent/search", q="NEAR(")  # just the word "near": found nowhere
    assert (near.status_code, near.json()) == (200, [])
    assert (await desk.get("/api/v1/agent/search", q="refund", limit=0)).status_code == 400
    assert (await desk.get("/api/v1/agent/search", q="refund", limit=101)).status_code == 400
    for label in ("x" * 33, "no spaces", "-lead"):  # labels no conversation could carry
        refused = await desk.get("/api/v1/agent/search", q="refund", label=label)
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_request"), label
    # Every workspace route needs an agent token.
    for method, path in [
        ("GET", "/api/v1/agent/search?q=refund"), ("GET", "/api/v1/agent/customers/v-ana"),
        ("GET", "/api/v1/agent/conversations/c-ana/labels"),
        ("PUT", "/api/v1/agent/conversations/c-ana/labels"),
    ]:  # fmt: skip
        resp = await desk.http.request(method, path, json={"labels": []} if method == "PUT" else None)
        assert resp.status_code == 401, path
        assert resp.json()["error"]["code"] == "unauthorized"
        forged = await desk.http.request(method, path, headers={"Authorization": "Bearer forged.token.x"})
        assert forged.status_code == 401, path


async def test_the_profile_lists_every_conversation_ticket_and_rating_and_labels_are_validated(
    desk: Desk,
) -> None:
    await seed(desk)
    profile = (await desk.get("/api/v1/agent/customers/v-ana")).json()
    assert (profile["name"], profile["email"]) == ("Ana Lopez", "ana@example.com")
    assert [(c["conversation_id"], c["labels"]) for c in profile["conversations"]] == [
        ("c-ana", ["billing", "vip"]), ("c-old", []),
    ]  # fmt: skip
    assert profile["conversations"][1]["rating"]["score"] == 4
    assert profile["conversations"][0]["rating"] is None
    assert [t["subject"] for t in profile["tickets"]] == ["Broken zipper on my tent"]
    assert [(r["conversation_id"], r["score"]) for r in profile["ratings"]] == [("c-old", 4)]
    vip = (await desk.get("/api/v1/agent/customers/v-ana", label="vip")).json()
    assert [c["conversation_id"] for c in vip["conversations"]] == ["c-ana"]
    assert (await desk.get("/api/v1/agent/customers/v-nobody")).status_code == 404
    assert (await desk.get("/api/v1/agent/customers/v-ana", label="no spaces")).status_code == 400
    rows = await desk.http.get(
        "/api/v1/agent/labels", params=[("conversation_id", "c-ana"), ("conversation_id", "c-bo")],
        headers=desk.auth,
    )  # fmt: skip
    assert rows.json() == {"c-ana": ["billing", "vip"]}
    too_many = [("conversation_id", f"c{i}") for i in range(101)]
    assert (
        await desk.http.get("/api/v1/agent/labels", params=too_many, headers=desk.auth)
    ).status_code == 400
    # Bad labels are refused and change nothing.
    for bad in [["has space"], ["x" * 33], [""], ["<script>"], [f"l{i}" for i in range(11)], [7]]:
        resp = await desk.http.put(
            "/api/v1/agent/conversations/c-ana/labels", json={"labels": bad}, headers=desk.auth
        )
        assert resp.status_code == 400, (bad, resp.text)
    kept = await desk.get("/api/v1/agent/conversations/c-ana/labels")
    assert kept.json() == {"labels": ["billing", "vip"]}
    missing = await desk.http.put(
        "/api/v1/agent/conversations/c-nope/labels", json={"labels": ["a"]}, headers=desk.auth
    )
    assert missing.status_code == 404
    # An archived conversation (gone from Redis) can still be labelled.
    archived = await desk.http.put(
        "/api/v1/agent/conversations/c-old/labels", json={"labels": ["lost-item"]}, headers=desk.auth
    )
    assert archived.json() == {"labels": ["lost-item"]}
    assert await conversations(desk, "refund", label="lost-item") == ["c-old"]


async def test_erasing_a_customer_takes_their_messages_notes_and_name_out_of_the_index(desk: Desk) -> None:
    await seed(desk)
    exported = await desk.runtime.customers.export(CustomerRef.parse("v-ana", None))
    assert [n["text"] for n in exported["notes"]] == ["Escalated to payments team"]
    assert sorted(label["label"] for label in exported["labels"]) == ["billing", "vip"]
    counts = await desk.runtime.customers.erase(CustomerRef.parse("v-ana", None))
    assert (counts["notes"], counts["labels"]) == (1, 2)
    await desk.runtime.customers.erase(CustomerRef.parse(None, "ana@example.com"))  # and her ticket
    assert await conversations(desk, "refund") == ["c-bo"]
    for q in ["payments", "lopez", "lantern"]:
        assert (await desk.get("/api/v1/agent/search", q=q)).json() == [], q
    # A later indexing pass finds the erased conversations in the active set and writes nothing back.
    await desk.runtime.redis.delete(keys.search_index_watermark())
    await desk.runtime.search_index.index_changed()
    assert await conversations(desk, "refund") == ["c-bo"]
    assert (await desk.get("/api/v1/agent/customers/v-ana")).status_code == 404
