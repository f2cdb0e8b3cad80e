"""The reports API served: admin only, JSON and CSV of every report, typed 400s for bad parameters, the
drill-down's pages and its CSV export agree, and one conversation opens read-only (from Redis, else from
the archive)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from support.conversation.store import ConversationStore
from support.db.engine import make_engine
from support.db.models import ArchivedConversation, ArchivedMessage, Ticket
from tests.redis_cluster import redis_client_for
from tests.reports.seed import at, seed
from tests.servers import ServerProcess, create_agent

NO_REFRESH = "1000000000"
RANGE = {"from": "2026-11-02", "to": "2026-11-10"}


async def prepare(database_url: str, redis_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await seed(engine)
        async with engine.begin() as conn:
            await conn.execute(
                insert(ArchivedConversation.__table__),  # type: ignore[attr-defined]
                [{"id": "c4", "widget_key": "pk_test", "visitor": "{}", "state": "resolved", "summary": "",
                  "created_at": at(1, 12), "last_activity": at(1, 13), "archived_at": at(2)}],
            )  # fmt: skip
            await conn.execute(
                insert(ArchivedMessage.__table__),  # type: ignore[attr-defined]
                [
                    {"conversation_id": "c4", "seq": 1, "event_id": "e1", "type": "message",
                     "role": "customer", "text": "My tent pole snapped", "created_at": at(1, 12),
                     "author": None, "extra": "{}"},
                    {"conversation_id": "c4", "seq": 2, "event_id": "e2", "type": "status", "role": "system",
                     "text": "", "created_at": at(1, 12), "author": None, "extra": '{"state": "queued"}'},
                    {"conversation_id": "c4", "seq": 3, "event_id": "e3", "type": "message", "role": "agent",
                     "text": "A new pole is on its way.", "created_at": at(1, 12, 45),
                     "author": '{"id": "ag1", "name": "Sam"}', "extra": "{}"},
                ],
            )  # fmt: skip
            await conn.execute(
                insert(Ticket.__table__),  # type: ignore[attr-defined]
                [{"id": "t6", "conversation_id": "c6", "subject": "Refund", "body": "Please refund",
                  "customer_email": "ann@example.test", "channel": "email", "metadata": {},
                  "status": "resolved", "urgent": True, "created_at": at(7, 10), "updated_at": at(7, 10)}],
            )  # fmt: skip
    finally:
        await engine.dispose()
    client = redis_client_for(redis_url, decode_responses=False)
    try:
        store = ConversationStore(client)
        now = datetime(2026, 11, 2, 10, tzinfo=UTC)
        await store.create_conversation("c1", widget_key="pk_test", visitor={}, now=now)
        await store.append_customer_message("c1", "m-1", "Where is my refund?", now=now)
        await store.append_event("c1", type="message", role="assistant", text="It is on its way.", now=now)
    finally:
        await client.aclose()


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_the_reports_api(tmp_path: Path, redis_url: str, redis_client: Any) -> None:
    data = tmp_path / "srv"
    database_url = f"sqlite+aiosqlite:///{data / 'db.sqlite3'}"
    # The seeded fact rows are the whole truth here. The periodic refresh of report facts would recompute c1
    # from its ledger rows (one of them outside the range) if its slot came round during the test, and so
    # would the archiver, which refreshes an idle conversation's facts before archiving it (c1's last
    # activity is weeks old); periodic jobs run at whole multiples of their interval, so with 10^9 s the next
    # slot of either is years away.
    proc = ServerProcess(
        data,
        env={
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_DATABASE_URL": database_url,
            "SWITCHBOARD_REPORTS_REFRESH_S": NO_REFRESH,
            "SWITCHBOARD_ARCHIVE_INTERVAL_S": NO_REFRESH,
        },
    )
    proc.start()
    try:
        await prepare(database_url, redis_url)
        tokens = {}
        for role in ("admin", "agent"):
            await asyncio.to_thread(
                create_agent,
                proc.env,
                data,
                f"{role}@example.test",
                "long enough password",
                role.title(),
                role,
            )
            login = httpx.post(
                f"{proc.url}/api/v1/agent/login",
                json={"email": f"{role}@example.test", "password": "long enough password"},
            )
            tokens[role] = {"Authorization": f"Bearer {login.json()['token']}"}
        admin = tokens["admin"]
        base = f"{proc.url}/api/v1/reports"
        async with httpx.AsyncClient(base_url=base, headers=admin, timeout=30) as client:
            for path in (
                "/overview",
                "/handoff-reasons",
                "/usage",
                "/edits",
                "/conversations",
                "/conversations/c1",
            ):
                assert (await client.get(path, headers={"Authorization": ""})).status_code == 401, path
                assert (await client.get(path, headers=tokens["agent"])).status_code == 403, path
            bad = [
                ("/overview", {"group_by": "colour"}), ("/overview", {"format": "xml"}),
                ("/overview", {"from": "2026-11-10", "to": "2026-11-02"}),
                ("/overview", {"from": "yesterday"}),
                ("/handoff-reasons", {"group_by": "model"}), ("/usage", {"group_by": "intent"}),
                ("/edits", {"group_by": "week"}), ("/conversations", {"limit": "500"}),
                ("/conversations", {"limit": "many"}), ("/conversations", {"only": "everything"}),
                ("/conversations", {"cursor": "xyz"}), ("/conversations", {"week": "2026-11-03"}),
                ("/conversations", {"day": "monday"}), ("/conversations", {"only": "nope", "format": "csv"}),
                ("/operations", {"format": "pdf"}),
            ]  # fmt: skip
            for path, params in bad:
                response = await client.get(path, params=params)
                assert response.status_code == 400, (path, params, response.text)
                assert response.json()["error"]["code"] == "invalid_request"
            assert (await client.get("/conversations/nobody")).status_code == 404

            overview = (await client.get("/overview", params={**RANGE, "group_by": "channel"})).json()
            assert (overview["group_by"], overview["total"]["conversations"]) == ("channel", 8)
            assert [(g["key"], g["conversations"]) for g in overview["groups"]] == [
                ("chat", 6),
                ("ticket", 2),
            ]
            overview_csv = await client.get(
                "/overview", params={**RANGE, "group_by": "channel", "format": "csv"}
            )
            assert overview_csv.headers["content-type"].startswith("text/csv")
            assert 'filename="overview.csv"' in overview_csv.headers["content-disposition"]
            rows = parse_csv(overview_csv.text)
            assert [r["channel"] for r in rows] == ["chat", "ticket", "total"]
            total = rows[2]
            assert (total["conversations"], total["resolution_bot"], total["cost_per_resolution_usd"]) == (
                "8", "5", "0.0144"  # served now: c7's last reply is days old, so it is assumed resolved too
            )  # fmt: skip
            assert rows[2]["first_response_bot_s_p50"] == "2.75"
            assert rows[1]["predicted_mean"] == ""

            reasons = await client.get("/handoff-reasons", params={**RANGE, "format": "csv"})
            assert parse_csv(reasons.text)[0]["reason"] == "low_confidence"
            usage = await client.get("/usage", params={**RANGE, "format": "csv"})
            assert [r["model_purpose"] for r in parse_csv(usage.text)] == [
                "answer/claude-sonnet-4-6", "triage/claude-haiku-4-5", "total"
            ]  # fmt: skip
            edits = (await client.get("/edits", params={**RANGE, "group_by": "agent"})).json()
            assert [g["label"] for g in edits["groups"]] == ["Sam", "Kim"]
            operations = await client.get("/operations", params={**RANGE, "format": "csv"})
            assert operations.headers["content-type"].startswith("text/csv")
            ops = {(r["section"], r["key"], r["field"]): r["value"] for r in parse_csv(operations.text)}
            assert ops[("total", "", "handoff_rate")] == "0.375"
            assert ops[("model", "answer/claude-sonnet-4-6", "calls")] == "3"
            assert (await client.get("/operations", params=RANGE)).json()["handoff_rate"] == 0.375

            pages: list[list[str]] = []
            json_rows: list[dict[str, Any]] = []
            cursor: str | None = None
            while True:
                params = {**RANGE, "limit": "3", **({"cursor": cursor} if cursor else {})}
                body = (await client.get("/conversations", params=params)).json()
                pages.append([r["conversation_id"] for r in body["conversations"]])
                json_rows += body["conversations"]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert pages == [["c7", "c6", "c8"], ["c5", "c4", "c3"], ["c2", "c1"]]
            export = await client.get("/conversations", params={**RANGE, "format": "csv"})
            assert 'filename="conversations.csv"' in export.headers["content-disposition"]
            exported = parse_csv(export.text)
            assert [r["conversation_id"] for r in exported] == [r["conversation_id"] for r in json_rows]
            as_text = {"True": "true", "False": "false", "None": ""}
            for got, want in zip(exported, json_rows, strict=True):
                assert got == {k: as_text.get(str(v), str(v)) for k, v in want.items()}
            filtered = await client.get(
                "/conversations", params={**RANGE, "only": "rated,satisfied", "intent": "__none__"}
            )
            assert filtered.json()["conversations"] == []
            satisfied = await client.get("/conversations", params={**RANGE, "only": "satisfied"})
            assert [r["conversation_id"] for r in satisfied.json()["conversations"]] == ["c6", "c1"]

            live = (await client.get("/conversations/c1")).json()
            assert live["facts"]["bot_resolution"] == "confirmed"
            assert [(m["seq"], m["role"], m["text"]) for m in live["transcript"]] == [
                (1, "customer", "Where is my refund?"), (2, "assistant", "It is on its way.")
            ]  # fmt: skip
            assert "ticket" not in live
            archived = (await client.get("/conversations/c4")).json()
            assert [(m["seq"], m["role"], m.get("author")) for m in archived["transcript"]] == [
                (1, "customer", None), (3, "agent", {"id": "ag1", "name": "Sam"})
            ]  # fmt: skip
            ticket = (await client.get("/conversations/c6")).json()
            assert (ticket["ticket"]["id"], ticket["ticket"]["subject"], ticket["transcript"]) == (
                "t6",
                "Refund",
                [],
            )

            schema = (await client.get(f"{proc.url}/schema/openapi.json")).json()
            for path in ("overview", "handoff-reasons", "usage", "edits", "conversations", "operations"):
                content = schema["paths"][f"/api/v1/reports/{path}"]["get"]["responses"]["200"]["content"]
                assert "text/csv" in content, path
    finally:
        proc.kill()
