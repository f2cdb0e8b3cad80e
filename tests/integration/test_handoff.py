"""Human handoff end to end: two `switchboard serve` processes on one Redis and one database, the fake
model API, a real customer WebSocket, agents over the real HTTP API and agent WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.integration.test_widget_ws import (
    Client,
    connect,
    is_answer,
    is_triage,
    open_session,
    start_server,
)
from tests.servers import ServerProcess, agent_auth
from tests.servers import wait_for as servers_wait_for

UNCOVERED = "Can you engrave our names on a wedding tent?"
SIMILAR = "Could you engrave names on a tent for a wedding?"
AGENT_TEXT = "We don't engrave tents, but our partner StitchCo embroiders names on tent bags for $25."


def user_text(body: dict[str, Any]) -> str:
    """The text of the last user turn of a request (what the customer just said, plus retrieved examples)."""
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(block.get("text", "") for block in content if isinstance(block, dict))


def triage(confidence: float, *, intent: str = "product_question") -> Reply:
    return Reply(
        tool_use={
            "name": "record_triage",
            "input": {
                "intent": intent, "urgency": "normal", "sentiment": "neutral", "language": "en",
                "wants_human": False, "confidence": confidence, "reason": "test",
            },
        }
    )  # fmt: skip


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()
    # engraving is not in the policy: triage is unsure; everything else is confidently answerable
    fake.add_rule(
        lambda body: (
            (triage(0.2) if "wedding" in user_text(body) else triage(0.95)) if is_triage(body) else None
        )
    )
    fake.add_rule(lambda body: Reply(text="Engraving is something I'd check.") if is_answer(body) else None)
    return fake


def create_agent(db_url: str, data: Path, email: str, name: str, role: str = "agent") -> None:
    env = {"SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_DATA_DIR": str(data), "PATH": ""}
    out = servers.create_agent(env, data, email, "s3cret-pass", name, role)
    assert f"created {role} {email}" in out


def login(server: ServerProcess, email: str) -> dict[str, str]:
    return agent_auth(server, email, "s3cret-pass")


@pytest.fixture
def pair(tmp_path: Path, fake_api: FakeAnthropic, redis_url: str, redis_client: Any) -> Iterator[Any]:
    """Servers A and B sharing Redis and one SQLite database, with an agent, a second agent and an admin."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    create_agent(db, tmp_path, "ada@example.com", "Ada")
    create_agent(db, tmp_path, "bo@example.com", "Bo")
    create_agent(db, tmp_path, "root@example.com", "Root", role="admin")
    extra = {"SWITCHBOARD_DATABASE_URL": db, "SWITCHBOARD_HANDOFF_LEASE_S": "2"}
    a = start_server(tmp_path / "a", fake_api, redis_url, **extra)
    b = start_server(tmp_path / "b", fake_api, redis_url, **extra)
    try:
        yield a, b
    finally:
        a.kill()
        b.kill()


async def wait_for(pred: Any, timeout_s: float = 10.0) -> Any:
    return await servers_wait_for(pred, timeout_s)


async def agent_frames(ws: Any, pred: Any) -> list[dict[str, Any]]:
    seen = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
        seen.append(frame)
        if pred(frame):
            return seen


async def test_handoff_claim_edit_send_learn(pair: Any, fake_api: FakeAnthropic) -> None:
    a, b = pair
    ada = login(b, "ada@example.com")
    admin = login(b, "root@example.com")
    session = open_session(a)
    cid = session["conversation_id"]
    agent_ws_url = f"ws://127.0.0.1:{b.port}/api/v1/agent/ws?token={ada['Authorization'][7:]}"
    async with websockets.connect(agent_ws_url) as agent_ws:
        first = json.loads(await asyncio.wait_for(agent_ws.recv(), 15))
        assert first == {"type": "queue", "items": []}
        async for customer in connect(a, session["token"]):
            # 1. the customer on A asks what the policy does not cover -> queued, with the reason
            await customer.send({"type": "message", "client_id": "m1", "text": UNCOVERED})
            frames = await customer.until(lambda f: f["type"] == "status")
            assert frames[-1]["state"] == "queued"
            assert frames[-1]["queue_position"] == 1
            assert frames[-1]["agents_online"] is True  # Ada's console is connected
            assert not [f for f in frames if f["type"] == "delta"], (
                "the unsure draft never reaches the customer"
            )
            queue_frames = await agent_frames(agent_ws, lambda f: f["type"] == "queue" and f["items"])
            item = queue_frames[-1]["items"][0]
            assert (item["conversation_id"], item["reason"], item["position"]) == (cid, "low_confidence", 1)
            assert item["preview"] == UNCOVERED
            assert item["customer"] == {"name": "Ada"}

            # 2. agent Ada on B: the packet explains why; claim; the draft is there to edit
            packet = await wait_for(
                lambda: (
                    (p := httpx.get(f"{b.url}/api/v1/agent/conversations/{cid}", headers=ada).json())
                    and p["draft"]
                    and p
                )
            )
            assert packet["reason"] == "low_confidence"
            assert packet["state"] == "queued"
            assert packet["triage"]["confidence"] == 0.2
            assert packet["triage"]["intent"] == "product_question"
            assert [m["text"] for m in packet["transcript"] if m.get("role") == "customer"] == [UNCOVERED]
            assert packet["draft"]["text"] == "Engraving is something I'd check."
            claimed = httpx.post(f"{b.url}/api/v1/agent/conversations/{cid}/claim", headers=ada)
            assert claimed.status_code == 200, claimed.text
            status = await customer.until(lambda f: f["type"] == "status" and f["state"] == "agent")
            assert status[-1]["agent"] == {"name": "Ada"}
            await agent_frames(agent_ws, lambda f: f["type"] == "assigned" and f["conversation_id"] == cid)

            # 3. the agent edits the draft and sends it; the customer on A gets it live
            httpx.post(f"{b.url}/api/v1/agent/conversations/{cid}/typing", headers=ada)
            sent = httpx.post(
                f"{b.url}/api/v1/agent/conversations/{cid}/messages",
                json={"text": AGENT_TEXT, "draft_id": packet["draft"]["id"]}, headers=ada,
            )  # fmt: skip
            assert sent.status_code == 201, sent.text
            got = await customer.until(lambda f: f["type"] == "message" and f["role"] == "agent")
            assert any(f["type"] == "typing" and f["role"] == "agent" for f in got)
            assert got[-1]["text"] == AGENT_TEXT
            assert got[-1]["author"] == {"name": "Ada"}

            # 4. while Ada owns it the bot is silent; the customer's message reaches Ada's console live
            calls_before = len(fake_api.requests)
            await customer.send({"type": "typing"})
            await customer.send({"type": "message", "client_id": "m2", "text": "Great, how do I order that?"})
            live = await agent_frames(
                agent_ws, lambda f: f["type"] == "event" and f["event"].get("role") == "customer"
            )
            assert live[-1]["event"]["text"] == "Great, how do I order that?"
            assert any(f["type"] == "typing" and f["role"] == "customer" for f in live)
            await asyncio.sleep(1.0)
            assert len(fake_api.requests) == calls_before, (
                "no model call while an agent owns the conversation"
            )

            # 5. notes stay internal; resolve asks the customer for a rating
            note = httpx.post(
                f"{b.url}/api/v1/agent/conversations/{cid}/notes", json={"text": "VIP"}, headers=ada
            )
            assert note.status_code == 201
            resolved = httpx.post(f"{b.url}/api/v1/agent/conversations/{cid}/resolve", headers=ada)
            assert resolved.status_code == 200, resolved.text
            tail = await customer.until(lambda f: f["type"] == "rating_request")
            assert [f["state"] for f in tail if f["type"] == "status"] == ["resolved"]
            assert not [f for f in tail if "VIP" in json.dumps(f)]

    # 6. the reply became an example, with the draft it edited
    examples = httpx.get(f"{b.url}/api/v1/admin/examples", headers=admin).json()
    assert len(examples) == 1
    example = examples[0]
    assert example["customer_message"] == UNCOVERED
    assert example["agent_text"] == AGENT_TEXT
    assert example["bot_draft"] == "Engraving is something I'd check."
    assert example["edit_distance"] > 0
    assert example["intent"] == "product_question"
    assert example["status"] == "approved"
    rates = httpx.get(f"{b.url}/api/v1/admin/examples/edit-rates", headers=admin).json()
    assert rates == [
        {"intent": "product_question", "examples": 1, "with_draft": 1, "edited": 1, "edit_rate": 1.0,
         "mean_edit_ratio": example["edit_ratio"]}
    ]  # fmt: skip

    # 7. a later, similar question (confidently answerable) carries that example in its answer request
    later = open_session(a)
    async for customer in connect(a, later["token"]):
        await customer.send({"type": "message", "client_id": "q", "text": "Do you engrave names on tents?"})
        await customer.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
    answer_bodies = [r.body for r in fake_api.requests if r.body and is_answer(r.body)]
    assert AGENT_TEXT in user_text(answer_bodies[-1])
    assert AGENT_TEXT not in json.dumps(answer_bodies[-1]["system"]), "retrieved examples sit after the cache"

    # 8. the operations report has the handoff, its claim and first reply, and the ledger's cost
    ops = httpx.get(f"{b.url}/api/v1/reports/operations", headers=admin)
    assert ops.status_code == 200, ops.text
    report = ops.json()
    assert report["handoffs"] == 1
    assert report["handoff_reasons"] == {"low_confidence": 1}
    assert report["handoff_outcomes"] == {"resolved": 1}
    assert report["claim_wait_s_p50"] > 0
    assert report["first_response_s_p50"] >= report["claim_wait_s_p50"]
    assert report["conversations"] == 2
    assert report["handoff_rate"] == 0.5
    assert float(report["cost_usd"]) > 0
    assert report["queue_waiting"] == 0
    assert httpx.get(f"{b.url}/api/v1/reports/operations", headers=ada).status_code == 403
    bad = httpx.get(f"{b.url}/api/v1/reports/operations?from=2026-02-02&to=2026-01-01", headers=admin)
    assert bad.status_code == 400

    # 9. an admin retires it: the next answer request no longer has it
    patched = httpx.patch(
        f"{b.url}/api/v1/admin/examples/{example['id']}", json={"status": "retired"}, headers=admin
    )
    assert patched.status_code == 200
    assert patched.json()["status"] == "retired"
    async for customer in connect(a, later["token"]):
        await customer.send(
            {"type": "message", "client_id": "q2", "text": SIMILAR.replace("wedding", "party")}
        )
        await customer.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
    answer_bodies = [r.body for r in fake_api.requests if r.body and is_answer(r.body)]
    assert AGENT_TEXT not in json.dumps(answer_bodies[-1])


async def handed_off(server: ServerProcess) -> tuple[str, Client, Any]:
    session = open_session(server)
    ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={session['token']}")
    customer = Client(ws)
    await customer.send({"type": "request_human"})
    await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
    return session["conversation_id"], customer, ws


async def test_two_agents_racing_on_two_processes_exactly_one_wins(pair: Any) -> None:
    a, b = pair
    cid, _customer, ws = await handed_off(a)
    try:
        ada, bo = login(a, "ada@example.com"), login(b, "bo@example.com")
        urls = [(a, ada), (b, bo)] * 4

        def claim(target: tuple[ServerProcess, dict[str, str]]) -> int:
            server, headers = target
            return httpx.post(
                f"{server.url}/api/v1/agent/conversations/{cid}/claim", headers=headers
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(claim, urls))
        # the winner's own repeats are idempotent 200s; the loser gets only 409s
        by_agent = {"ada": codes[0::2], "bo": codes[1::2]}
        winners = [name for name, got in by_agent.items() if 200 in got]
        assert len(winners) == 1, codes
        loser = "bo" if winners == ["ada"] else "ada"
        assert set(by_agent[loser]) == {409}
        queue = httpx.get(f"{a.url}/api/v1/agent/queue", headers=ada).json()
        assert queue == []
    finally:
        await ws.close()


async def test_a_lapsed_lease_requeues_and_the_customer_is_told(pair: Any) -> None:
    a, b = pair
    cid, customer, ws = await handed_off(a)
    try:
        ada = login(b, "ada@example.com")
        assert httpx.post(f"{b.url}/api/v1/agent/conversations/{cid}/claim", headers=ada).status_code == 200
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "agent")
        # Ada has no console open and does nothing: after the 2 s lease it goes back to the queue
        started = time.monotonic()
        frames = await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
        assert 1.0 < time.monotonic() - started < 8
        assert frames[-1]["queue_position"] == 1
        queue = httpx.get(f"{b.url}/api/v1/agent/queue", headers=ada).json()
        assert [i["conversation_id"] for i in queue] == [cid]
        assert queue[0]["reason"] == "customer_request"
        packet = httpx.get(f"{b.url}/api/v1/agent/conversations/{cid}", headers=ada).json()
        assert packet["lapsed_from"] is not None
        assert packet["assignee"] is None
        # and Ada can no longer write to that customer
        late = httpx.post(
            f"{b.url}/api/v1/agent/conversations/{cid}/messages", json={"text": "hello?"}, headers=ada
        )
        assert late.status_code == 409
    finally:
        await ws.close()


async def test_auth_and_roles_are_enforced(pair: Any) -> None:
    a, _b = pair
    assert httpx.get(f"{a.url}/api/v1/agent/queue").status_code == 401
    assert (
        httpx.get(f"{a.url}/api/v1/agent/queue", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    wrong = httpx.post(f"{a.url}/api/v1/agent/login", json={"email": "ada@example.com", "password": "x" * 9})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"
    ada = login(a, "ada@example.com")
    assert httpx.get(f"{a.url}/api/v1/admin/examples", headers=ada).status_code == 403
    widget = open_session(a)["token"]
    assert (
        httpx.get(f"{a.url}/api/v1/agent/queue", headers={"Authorization": f"Bearer {widget}"}).status_code
        == 401
    ), "a customer's widget token is not an agent token"
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"ws://127.0.0.1:{a.port}/api/v1/agent/ws?token=bad"):
            pass
    # bad input changes nothing
    cid, _customer, ws = await handed_off(a)
    try:
        assert httpx.post(f"{a.url}/api/v1/agent/conversations/{cid}/claim", headers=ada).status_code == 200
        bad = httpx.post(
            f"{a.url}/api/v1/agent/conversations/{cid}/messages", json={"text": "hi", "draft_id": "d999"},
            headers=ada,
        )  # fmt: skip
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_request"
        empty = httpx.post(
            f"{a.url}/api/v1/agent/conversations/{cid}/messages", json={"text": " "}, headers=ada
        )
        assert empty.status_code == 400
        packet = httpx.get(f"{a.url}/api/v1/agent/conversations/{cid}", headers=ada).json()
        assert not [m for m in packet["transcript"] if m.get("role") == "agent"]
    finally:
        await ws.close()


async def test_offline_mode_answers_from_what_an_agent_wrote(
    tmp_path: Path, redis_url: str, redis_client: Any
) -> None:
    """No API key: an uncovered question goes to a person; the same question later is answered from the
    agent's reply (labelled as automatic), with no model anywhere."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'offline.sqlite3'}"
    create_agent(db, tmp_path, "ada@example.com", "Ada")
    env = {
        "SWITCHBOARD_REDIS_URL": redis_url, "SWITCHBOARD_DATABASE_URL": db,
        "SWITCHBOARD_WIDGET_KEYS": json.dumps({"pk_test": ["http://shop.test"]}),
    }  # fmt: skip
    server = ServerProcess(tmp_path / "offline", env=env).start()
    try:
        question = "Do you sell gift cards for the climbing wall?"
        answer = "Yes: climbing wall gift cards are sold at the front desk of every store, from $20."
        first = open_session(server)
        async for customer in connect(server, first["token"]):
            await customer.send({"type": "message", "client_id": "g1", "text": question})
            await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
        ada = login(server, "ada@example.com")
        cid = first["conversation_id"]
        assert (
            httpx.post(f"{server.url}/api/v1/agent/conversations/{cid}/claim", headers=ada).status_code == 200
        )
        sent = httpx.post(
            f"{server.url}/api/v1/agent/conversations/{cid}/messages", json={"text": answer}, headers=ada
        )
        assert sent.status_code == 201
        later = open_session(server)
        async for customer in connect(server, later["token"]):
            await customer.send(
                {"type": "message", "client_id": "g2", "text": "Do you sell climbing wall gift cards?"}
            )
            frames = await customer.until(lambda f: f["type"] == "message" and f["role"] != "customer")
        reply = frames[-1]
        assert reply["role"] == "assistant"
        assert answer in reply["text"], "the agent's words..."
        assert reply["text"] != answer, "...labelled as an automatic answer"
    finally:
        server.kill()


async def test_waiting_customers_see_their_position_move_up(pair: Any) -> None:
    a, b = pair
    first, _c1, ws1 = await handed_off(a)
    session = open_session(a)
    ws2 = await websockets.connect(f"ws://127.0.0.1:{a.port}/api/v1/widget/ws?token={session['token']}")
    try:
        second = Client(ws2)
        await second.send({"type": "request_human"})
        queued = (await second.until(lambda f: f["type"] == "status" and f["state"] == "queued"))[-1]
        assert queued["queue_position"] == 2
        ada = login(b, "ada@example.com")
        assert httpx.post(f"{b.url}/api/v1/agent/conversations/{first}/claim", headers=ada).status_code == 200
        update = (await second.until(lambda f: f["type"] == "status"))[-1]
        # an update of the same persisted event, not a new one; it says again who can answer (nobody: no
        # console is open), without offering e-mail (none is configured)
        assert update == {
            "type": "status", "seq": queued["seq"], "state": "queued", "queue_position": 1,
            "agents_online": False, "agents_available": False,
        }  # fmt: skip
    finally:
        await ws1.close()
        await ws2.close()
