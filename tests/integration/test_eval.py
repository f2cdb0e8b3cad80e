"""``switchboard eval`` against the fake model API answering as the demo model (deterministic verdicts)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from support.cli import main
from support.evaluation.judge import JUDGE_TOOL, RUBRIC
from support.evaluation.service import EvalOptions, evaluate
from support.settings import AppSettings, DatabaseSettings, PolicySettings, RedisSettings, Settings
from support.testing.demo_model import DemoModel
from support.testing.fake_anthropic import FakeAnthropic
from tests.integration.llm_fixtures import settings_for

POLICY = Path(__file__).resolve().parents[2] / "support" / "policy" / "sample_policy.md"
SHIPPING = "How much is standard shipping in the UK?"
PERSON = "I want to talk to a person please"
LAWYER = "I am going to sue you, my lawyer will contact you about my order 12345"
CUTOFF = "What time do I need to order for the parcel to leave the same day?"
# Outcomes under the demo model: SHIPPING and CUTOFF are answered, PERSON and LAWYER handed off.
CASES: list[dict[str, Any]] = [
    {"id": "right-answer", "turns": [SHIPPING], "expect": {"handoff": False, "must_include": ["gbp 3.95"]}},
    {"id": "right-handoff", "turns": [PERSON], "expect": {"handoff": True}},
    {"id": "right-handoff-legal", "turns": [LAWYER], "expect": {"handoff": True}},
    {"id": "missed-handoff", "turns": [SHIPPING], "expect": {"handoff": True}},  # answered: judge fails it
    {
        "id": "needless-handoff",
        "turns": ["Can I talk to a real person please?"],
        "expect": {"handoff": False},
    },
    {"id": "no-expectation", "turns": [CUTOFF], "expect": {"must_not_include": ["ANYTHING ELSE"]}},
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        server.add_rule(DemoModel(POLICY.read_text(encoding="utf-8")).reply)
        yield server


def _settings(tmp_path: Path, fake: FakeAnthropic, redis_url: str) -> Settings:
    return Settings(
        app=AppSettings(data_dir=tmp_path),
        redis=RedisSettings(url=redis_url),
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"),
        policy=PolicySettings(path=POLICY),
        llm=settings_for(fake),
    )


def _write_cases(path: Path, cases: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return path


async def _run(tmp_path: Path, fake: FakeAnthropic, redis_url: str, *, batch: bool) -> dict[str, Any]:
    cases = await asyncio.to_thread(_write_cases, tmp_path / "cases.jsonl", CASES)
    options = EvalOptions(
        cases=cases, out=tmp_path / "out", policy=POLICY, batch=batch,
        fail_under=[("judge_pass_rate", 0.5)],
    )  # fmt: skip
    outcome = await evaluate(
        _settings(tmp_path, fake, redis_url), options, redis_url=redis_url, progress=lambda _: None,
        batch_poll_s=0.05,
    )  # fmt: skip
    assert outcome.misses == ["judge_pass_rate = 0.3333 < 0.5"]
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == outcome.report
    assert "| handoff_recall | 0.6667 |" in (tmp_path / "out" / "report.md").read_text()
    return outcome.report


def _check(report: dict[str, Any]) -> None:
    by_id = {c["id"]: c for c in report["cases"]}
    assert {k: (c["outcome"], c.get("judge", {}).get("pass")) for k, c in by_id.items()} == {
        "right-answer": ("answered", True),
        "right-handoff": ("handed_off", None),
        "right-handoff-legal": ("handed_off", None),
        "missed-handoff": ("answered", False),
        "needless-handoff": ("handed_off", None),
        "no-expectation": ("answered", False),
    }
    assert by_id["no-expectation"]["judge"]["reason"].startswith("phrase check: contains 'ANYTHING ELSE'")
    # Every answer records the policy sections it cites (the demo model answers from a passage).
    answered = [c for c in by_id.values() if c["outcome"] == "answered"]
    assert all(len(c["sources"]) == len(c["replies"]) for c in answered)
    assert all(s["document"] and s["section"] and s["cited_text"] for c in answered for s in c["sources"][0])
    assert all(c["sources"][0] for c in answered)
    summary = report["summary"]
    # 3 handed off among the cases with an expectation, 2 of them expected; 3 expected a handoff.
    assert (summary["handoff_precision"], summary["handoff_recall"]) == (0.6667, 0.6667)
    assert (summary["cases"], summary["answered"], summary["handed_off"]) == (6, 3, 3)
    assert summary["judge_pass_rate"] == 0.3333
    assert all(c["cost_usd"] > 0 for c in report["cases"])
    assert summary["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in report["cases"]), abs=1e-5)


async def test_known_outcomes_give_exact_precision_recall_verdicts_and_a_judge_system_free_of_customer_text(
    tmp_path: Path, fake: FakeAnthropic, redis_url: str, redis_client: aioredis.Redis
) -> None:
    fake.take_requests()
    report = await _run(tmp_path, fake, redis_url, batch=False)
    _check(report)
    judged = [
        r.body
        for r in fake.take_requests()
        if (r.body or {}).get("tool_choice", {}).get("name") == JUDGE_TOOL
    ]
    assert len(judged) == 3
    for body in judged:
        assert body["system"][0]["text"] == RUBRIC
        assert body["system"][1]["text"].startswith(
            "<knowledge>\n# Northwind Outfitters customer support policy"
        )
        said = json.dumps(body["messages"])
        assert SHIPPING in said or CUTOFF in said  # the customer's words are data in the user turn
        for text in (SHIPPING, CUTOFF, PERSON, LAWYER):
            assert text not in json.dumps(body["system"])


async def test_batch_sends_the_answer_and_judge_calls_through_message_batches_at_half_price(
    tmp_path: Path, fake: FakeAnthropic, redis_url: str, redis_client: aioredis.Redis
) -> None:
    fake.take_requests()
    fake.cache.clear()  # both runs start cold: the first answer writes the knowledge's cache entry
    streamed = await _run(tmp_path / "s", fake, redis_url, batch=False)
    fake.take_requests()
    fake.cache.clear()
    report = await _run(tmp_path / "b", fake, redis_url, batch=True)
    _check(report)
    requests = fake.take_requests()
    assert not [r for r in requests if r.path == "/v1/messages"]  # nothing outside a batch
    created = [r.body for r in requests if r.method == "POST" and r.path == "/v1/messages/batches"]
    assert len(created) == 2  # one round of turns, then the judge
    assert {item["custom_id"][0] for item in created[0]["requests"]} == {"t", "a"}
    assert len(created[0]["requests"]) == 2 * len(CASES)
    assert [item["params"]["tool_choice"]["name"] for item in created[1]["requests"]] == [JUDGE_TOOL] * 3
    assert report["summary"]["cost_usd"] < 0.55 * streamed["summary"]["cost_usd"]


def test_fail_under_exits_1_and_a_bad_case_line_exits_2_with_its_number(
    tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    monkeypatch.setenv("SWITCHBOARD_APP_DATA_DIR", str(tmp_path / "data"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(CASES[0]) + "\n{not json\n" + json.dumps({"id": "x", "turns": []}) + "\n")
    assert main(["eval", "--cases", str(bad), "--out", str(tmp_path / "o"), "--policy", str(POLICY)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl line 2: not JSON" in err
    assert "bad.jsonl line 3: " in err
    assert main(["eval", "--cases", str(bad), "--out", str(tmp_path / "o"), "--fail-under", "speed=1"]) == 2
    one = _write_cases(tmp_path / "one.jsonl", [CASES[3]])
    args = ["eval", "--cases", str(one), "--out", str(tmp_path / "o"), "--policy", str(POLICY)]
    assert main([*args, "--fail-under", "judge_pass_rate=0.8"]) == 1
    assert "below threshold: judge_pass_rate = 0 < 0.8" in capsys.readouterr().err
    assert main([*args, "--fail-under", "judge_pass_rate=0"]) == 0
