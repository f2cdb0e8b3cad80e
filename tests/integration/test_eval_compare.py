"""``switchboard eval --compare`` from the command line, through the real SDK and the fake model API
answering as the demo model: two stored knowledge versions, known cases whose outcome or verdict changes
between them, and the exact list of changed cases in report.json and report.md."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import keys
from support.cli import main
from support.db.engine import make_engine, session_factory
from support.db.migrate import upgrade_to_head
from support.knowledge.render import Document, render
from support.knowledge.service import DocumentIn, KnowledgeService
from support.redis_client import RedisClient
from support.settings import KnowledgeSettings
from support.testing.demo_model import DemoModel
from support.testing.fake_anthropic import FakeAnthropic
from tests.redis_cluster import redis_client_for

# The active version: returns and rentals. The draft: rentals cheaper, and an article on gift wrapping.
POLICY_V1 = """# Trailhead Outfitters support policy

## Returns

Unused items can be returned within 30 days of delivery for a full refund.

## Tent rentals

Tents can be rented for 15 EUR a day, with a deposit of 100 EUR.
"""
POLICY_V2 = POLICY_V1.replace("15 EUR a day", "12 EUR a day")
GIFT_WRAPPING = "## Gift wrapping\n\nWe gift wrap any order for 4 EUR: choose gift wrapping at checkout.\n"
CASES: list[dict[str, Any]] = [
    {"id": "returns-window", "turns": ["How many days do I have to return unused items?"],
     "expect": {"handoff": False, "must_include": ["30 days"]}},
    {"id": "gift-wrap", "turns": ["Can you gift wrap my order?"], "expect": {"handoff": False}},
    {"id": "rental-price", "turns": ["How much is a tent rental a day?"],
     "expect": {"handoff": False, "must_include": ["12 EUR"]}},
    {"id": "person", "turns": ["I want to talk to a person please"], "expect": {"handoff": True}},
    {"id": "gift-wrap-cost", "turns": ["How much is gift wrapping?"], "expect": {"handoff": False}},
]  # fmt: skip


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    # Triage scores a message against the draft's knowledge (its request carries no policy); each answer
    # request carries its own version's knowledge, and the demo model answers from that one only.
    draft = render(
        [Document("policy", "policy", POLICY_V2), Document("Gift wrapping", "article", GIFT_WRAPPING)]
    )
    with FakeAnthropic() as server:
        server.add_rule(DemoModel(draft).reply)
        yield server


async def _versions(db_url: str, redis: RedisClient) -> tuple[str, str]:
    """The active version (policy v1) and the draft (policy v2 + the gift wrapping article)."""
    await upgrade_to_head(db_url)
    engine = make_engine(db_url)
    try:
        knowledge = KnowledgeService(session_factory(engine), redis, KnowledgeSettings())
        active = await knowledge.save(DocumentIn("policy", POLICY_V1, "policy"))
        await knowledge.activate(active.version.id)
        draft = await knowledge.import_documents(
            [DocumentIn("policy", POLICY_V2, "policy"), DocumentIn("Gift wrapping", GIFT_WRAPPING, "article")]
        )
        return active.version.id, draft.version.id
    finally:
        await engine.dispose()


def test_compare_lists_exactly_the_cases_whose_outcome_or_verdict_changed(
    tmp_path: Path,
    fake: FakeAnthropic,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"

    async def setup() -> tuple[str, str]:
        client = redis_client_for(redis_url, decode_responses=False)
        try:
            await client.delete(keys.knowledge_active())
            return await _versions(db_url, client)
        finally:
            await client.aclose()

    active, draft = asyncio.run(setup())
    assert active != draft
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps(c) + "\n" for c in CASES), encoding="utf-8")
    for name, value in {
        "ANTHROPIC_API_KEY": "sk-test", "ANTHROPIC_BASE_URL": fake.url, "SWITCHBOARD_DATABASE_URL": db_url,
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    code = main([
        "eval", "--cases", str(cases), "--knowledge-version", draft, "--compare", active, "--out", str(out),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert (report["knowledge_version"], report["compare"]["knowledge_version"]) == (draft, active)

    changed = [
        (c["id"], c["outcome"], c["other_outcome"], c["other_reason"], c["judge_pass"], c["other_judge_pass"])
        for c in report["compare"]["changed"]
    ]
    assert changed == [
        # The draft knows gift wrapping; the active version does not, so its answer model declines.
        ("gift-wrap", "answered", "handed_off", "draft_declined", True, None),
        # Both answer, but the active version's price fails the phrase check.
        ("rental-price", "answered", "answered", None, True, False),
        ("gift-wrap-cost", "answered", "handed_off", "draft_declined", True, None),
    ]
    assert report["compare"]["changed"][1]["other_judge_reason"].startswith("phrase check: missing '12 EUR'")
    # The unchanged ones, as run against each version
    by_id = {c["id"]: c["outcome"] for c in report["cases"]}
    assert (by_id["returns-window"], by_id["person"]) == ("answered", "handed_off")
    assert report["summary"]["answered"] == 4
    assert report["compare"]["summary"]["answered"] == 2
    assert report["compare"]["summary"]["cost_usd"] > 0

    readable = (out / "report.md").read_text(encoding="utf-8")
    assert f"## Compared with version `{active}`" in readable
    assert "Cases changed: 3." in readable
    rows = [line.split("|")[1].strip() for line in readable.split("Cases changed: 3.")[1].split("## Cases")[0]
            .splitlines() if line.startswith("| ") and not line.startswith("| case ")]  # fmt: skip
    assert rows == ["gift-wrap", "rental-price", "gift-wrap-cost"]
    assert "| handed_off | 1 | 3 |" in readable
