"""The conversation reports over known facts, on SQLite and PostgreSQL: every metric of the overview against
hand-computed values for every cut, handoff reasons, usage, edits, and the drill-down (each number's filter
returns exactly the conversations behind it, keyset paging)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.db.engine import session_factory
from support.errors import ValidationFailed
from support.reports.conversations import (
    DrillDown,
    all_conversations,
    conversations_page,
    handoff_reasons_report,
    overview_report,
)
from support.reports.usage import edits_report, usage_report
from tests.reports.seed import FROM, NOW, TO, seed

NO_TIMES = {"p50": None, "p90": None}

TOTAL = {
    "key": None, "label": "All conversations", "conversations": 8,
    "resolution": {"bot": 5, "handed_off": 1, "unanswered": 1, "human": 1},
    "bot_confirmed": 1, "bot_assumed": 1, "bot_resolution_rate": 0.25, "reopened": 1, "resolved": 4,
    "handed_off": 3, "handoff_rate": 0.375,
    "first_response_bot_s": {"p50": 2.75, "p90": 4.5},  # [1, 2, 2.5, 3, 4, 5]
    "first_response_human_s": {"p50": 32.5, "p90": 42.5},  # [20, 45]
    "queue_wait_s": {"p50": 20.0, "p90": 28.0},  # [10, 30]
    "resolution_s": {"p50": 210.0, "p90": 510.0},  # resolved only: [3, 120, 300, 600]
    "rated": 5, "csat": 0.4, "mean_rating": 2.8, "response_rate": 0.8333,  # 5 rated of 6 asked
    "predicted": {"count": 2, "mean": 3.0, "csat": 0.5},  # c2 (4), c3 (2); c1 was rated
    "cost_usd": "0.072", "cost_per_conversation_usd": "0.009", "cost_per_resolution_usd": "0.018",
}  # fmt: skip

BY_RESOLUTION = [
    {
        "key": "bot", "label": "Bot", "conversations": 5,
        "resolution": {"bot": 5, "handed_off": 0, "unanswered": 0, "human": 0},
        "bot_confirmed": 1, "bot_assumed": 1, "bot_resolution_rate": 0.4, "reopened": 0, "resolved": 2,
        "handed_off": 0, "handoff_rate": 0.0,
        "first_response_bot_s": {"p50": 2.5, "p90": 4.2}, "first_response_human_s": NO_TIMES,
        "queue_wait_s": NO_TIMES, "resolution_s": {"p50": 61.5, "p90": 108.3},
        "rated": 2, "csat": 0.5, "mean_rating": 3.5, "response_rate": 0.6667,
        "predicted": {"count": 2, "mean": 3.0, "csat": 0.5},
        "cost_usd": "0.038", "cost_per_conversation_usd": "0.0076", "cost_per_resolution_usd": "0.019",
    },
    {
        "key": "handed_off", "label": "Handed off (a person replied)", "conversations": 1,
        "resolution": {"bot": 0, "handed_off": 1, "unanswered": 0, "human": 0},
        "bot_confirmed": 0, "bot_assumed": 0, "bot_resolution_rate": 0.0, "reopened": 1, "resolved": 1,
        "handed_off": 1, "handoff_rate": 1.0,
        "first_response_bot_s": {"p50": 4.0, "p90": 4.0},
        "first_response_human_s": {"p50": 45.0, "p90": 45.0},
        "queue_wait_s": {"p50": 30.0, "p90": 30.0}, "resolution_s": {"p50": 600.0, "p90": 600.0},
        "rated": 1, "csat": 0.0, "mean_rating": 2.0, "response_rate": 1.0,
        "predicted": {"count": 0, "mean": None, "csat": None},
        "cost_usd": "0.03", "cost_per_conversation_usd": "0.03", "cost_per_resolution_usd": "0.03",
    },
    {
        "key": "unanswered", "label": "Handed off, no person replied", "conversations": 1,
        "resolution": {"bot": 0, "handed_off": 0, "unanswered": 1, "human": 0},
        "bot_confirmed": 0, "bot_assumed": 0, "bot_resolution_rate": 0.0, "reopened": 0, "resolved": 0,
        "handed_off": 1, "handoff_rate": 1.0,
        "first_response_bot_s": NO_TIMES, "first_response_human_s": NO_TIMES, "queue_wait_s": NO_TIMES,
        "resolution_s": NO_TIMES,  # closed, but not resolved: an unanswered conversation never is
        "rated": 1, "csat": 0.0, "mean_rating": 1.0, "response_rate": 1.0,
        "predicted": {"count": 0, "mean": None, "csat": None},
        "cost_usd": "0", "cost_per_conversation_usd": "0", "cost_per_resolution_usd": None,
    },
    {
        "key": "human", "label": "Person only", "conversations": 1,
        "resolution": {"bot": 0, "handed_off": 0, "unanswered": 0, "human": 1},
        "bot_confirmed": 0, "bot_assumed": 0, "bot_resolution_rate": 0.0, "reopened": 0, "resolved": 1,
        "handed_off": 1, "handoff_rate": 1.0,
        "first_response_bot_s": NO_TIMES, "first_response_human_s": {"p50": 20.0, "p90": 20.0},
        "queue_wait_s": {"p50": 10.0, "p90": 10.0}, "resolution_s": {"p50": 300.0, "p90": 300.0},
        "rated": 1, "csat": 1.0, "mean_rating": 4.0, "response_rate": 1.0,
        "predicted": {"count": 0, "mean": None, "csat": None},
        "cost_usd": "0.004", "cost_per_conversation_usd": "0.004", "cost_per_resolution_usd": "0.004",
    },
]  # fmt: skip

# (key, label, conversations, confirmed, assumed, resolved, handed off, rated, csat, mean rating, cost,
#  cost per resolution, bot first response p50, resolution p50)
SUMMARY_FIELDS = ("key", "label", "conversations", "bot_confirmed", "bot_assumed", "resolved", "handed_off",
                  "rated", "csat", "mean_rating", "cost_usd", "cost_per_resolution_usd")  # fmt: skip
CUTS: dict[str, list[tuple[Any, ...]]] = {
    "intent": [
        ("product_question", "Product question", 1, 0, 0, 0, 0, 1, 0.0, 2.0, "0.002", None, 2.5, None),
        ("returns_refunds", "Returns and refunds", 3, 1, 1, 3, 1, 2, 1.0, 4.5, "0.034", "0.011333", 2.5,
         120.0),
        ("warranty_repairs", "Warranty and repairs", 2, 0, 0, 1, 1, 1, 0.0, 2.0, "0.035", "0.035", 2.5,
         600.0),
        (None, "Not triaged", 2, 0, 0, 0, 1, 1, 0.0, 1.0, "0.001", None, 5.0, None),
    ],
    "agent": [
        ("ag1", "Sam", 1, 0, 0, 1, 1, 1, 0.0, 2.0, "0.03", "0.03", 4.0, 600.0),
        ("ag2", "Kim", 1, 0, 0, 1, 1, 1, 1.0, 4.0, "0.004", "0.004", None, 300.0),
        (None, "No agent", 6, 1, 1, 2, 1, 3, 0.3333, 2.667, "0.038", "0.019", 2.5, 61.5),
    ],
    "channel": [
        ("chat", "Chat", 6, 1, 1, 3, 1, 3, 0.3333, 3.0, "0.068", "0.022667", 2.75, 120.0),
        ("ticket", "Ticket", 2, 0, 0, 1, 2, 2, 0.5, 2.5, "0.004", "0.004", None, 300.0),
    ],
    "day": [
        ("2026-11-02", "2026-11-02", 2, 1, 1, 2, 0, 1, 1.0, 5.0, "0.03", "0.015", 2.5, 61.5),
        ("2026-11-03", "2026-11-03", 2, 0, 0, 1, 1, 1, 0.0, 2.0, "0.035", "0.035", 2.5, 600.0),
        ("2026-11-04", "2026-11-04", 2, 0, 0, 0, 1, 2, 0.0, 1.5, "0.002", None, 2.5, None),
        ("2026-11-09", "2026-11-09", 1, 0, 0, 1, 1, 1, 1.0, 4.0, "0.004", "0.004", None, 300.0),
        ("2026-11-10", "2026-11-10", 1, 0, 0, 0, 0, 0, None, None, "0.001", None, 5.0, None),
    ],
    "week": [
        ("2026-11-02", "2026-11-02", 6, 1, 1, 3, 2, 4, 0.25, 2.5, "0.067", "0.022333", 2.5, 120.0),
        ("2026-11-09", "2026-11-09", 2, 0, 0, 1, 1, 1, 1.0, 4.0, "0.005", "0.005", 5.0, 300.0),
    ],
    "policy_version": [
        ("v1", "v1", 4, 1, 1, 2, 0, 2, 0.5, 3.5, "0.037", "0.0185", 2.25, 61.5),
        ("v2", "v2", 3, 0, 0, 2, 2, 2, 0.5, 3.0, "0.035", "0.0175", 4.5, 450.0),
        (None, "No policy version", 1, 0, 0, 0, 1, 1, 0.0, 1.0, "0", None, None, None),
    ],
}  # fmt: skip


def summary(row: dict[str, Any]) -> tuple[Any, ...]:
    return (*(row[f] for f in SUMMARY_FIELDS), row["first_response_bot_s"]["p50"], row["resolution_s"]["p50"])


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["conversation_id"] for r in rows]


async def test_the_overview_matches_hand_computed_values_for_every_cut(db_engine: AsyncEngine) -> None:
    await seed(db_engine)
    sessions = session_factory(db_engine)
    plain = await overview_report(sessions, start=FROM, end=TO, group_by="none", now=NOW)
    assert plain["total"] == TOTAL
    assert plain["groups"] == []
    assert (plain["from"], plain["to"], plain["now"]) == (
        "2026-11-02T00:00:00+00:00", "2026-11-11T00:00:00+00:00", "2026-11-10T12:00:00+00:00"
    )  # fmt: skip
    by_resolution = await overview_report(sessions, start=FROM, end=TO, group_by="resolution", now=NOW)
    assert by_resolution["total"] == TOTAL
    assert by_resolution["groups"] == BY_RESOLUTION
    for cut, expected in CUTS.items():
        report = await overview_report(sessions, start=FROM, end=TO, group_by=cut, now=NOW)
        assert report["total"] == TOTAL, cut
        assert [summary(g) for g in report["groups"]] == expected, cut
    # A day later c7's last bot reply is over 24 h old: it becomes assumed.
    later = await overview_report(sessions, start=FROM, end=TO, now=NOW.replace(day=11, hour=13))
    assert (later["total"]["bot_assumed"], later["total"]["resolved"]) == (2, 5)
    # No bounds: the old conversation too.
    everything = await overview_report(sessions, start=None, end=None, now=NOW)
    assert (everything["total"]["conversations"], everything["total"]["cost_usd"]) == (9, "7.072")
    # "old" was rated but never asked (no resolved_at): not in the response rate, which stays <= 100 %.
    assert everything["total"]["response_rate"] == 0.8333
    with pytest.raises(ValidationFailed):
        await overview_report(sessions, start=FROM, end=TO, group_by="colour", now=NOW)
    with pytest.raises(ValidationFailed):
        await overview_report(sessions, start=TO, end=FROM, now=NOW)


async def test_handoff_reasons_count_first_reasons_per_cut(db_engine: AsyncEngine) -> None:
    await seed(db_engine)
    sessions = session_factory(db_engine)
    report = await handoff_reasons_report(sessions, start=FROM, end=TO, group_by="channel")
    assert report["total"] == {
        "key": None, "label": "All conversations", "conversations": 8, "handed_off": 3,
        "reasons": [
            {"reason": "low_confidence", "label": "Bot not confident enough to answer", "count": 1},
            {"reason": "urgent", "label": "Urgent (safety, fraud or money at stake)", "count": 1},
            {"reason": "wants_human", "label": "Customer asked for a person", "count": 1},
        ],
    }  # fmt: skip
    assert [(g["key"], g["conversations"], g["handed_off"], [(r["reason"], r["count"]) for r in g["reasons"]])
            for g in report["groups"]] == [
        ("chat", 6, 1, [("low_confidence", 1)]),
        ("ticket", 2, 2, [("urgent", 1), ("wants_human", 1)]),
    ]  # fmt: skip


async def test_usage_and_edits_match_hand_computed_values(db_engine: AsyncEngine) -> None:
    await seed(db_engine)
    sessions = session_factory(db_engine)
    by_model = await usage_report(sessions, start=FROM, end=TO, group_by="model_purpose")
    assert by_model["total"] == {
        "key": None, "label": "All model calls", "calls": 4, "errors": 1, "input_tokens": 500,
        "cache_write_tokens": 9000, "cache_read_tokens": 9000, "output_tokens": 200, "cost_usd": "0.04",
        "cache_hit_ratio": 0.4945,  # 9000 / (100 + 9000 + 100 + 9000), answer calls only
    }  # fmt: skip
    assert by_model["groups"] == [
        {"key": "answer/claude-sonnet-4-6", "label": "answer · claude-sonnet-4-6", "purpose": "answer",
         "model": "claude-sonnet-4-6", "calls": 3, "errors": 1, "input_tokens": 200,
         "cache_write_tokens": 9000, "cache_read_tokens": 9000, "output_tokens": 160, "cost_usd": "0.0395",
         "cache_hit_ratio": 0.4945},
        {"key": "triage/claude-haiku-4-5", "label": "triage · claude-haiku-4-5", "purpose": "triage",
         "model": "claude-haiku-4-5", "calls": 1, "errors": 0, "input_tokens": 300, "cache_write_tokens": 0,
         "cache_read_tokens": 0, "output_tokens": 40, "cost_usd": "0.0005", "cache_hit_ratio": None},
    ]  # fmt: skip
    by_day = await usage_report(sessions, start=FROM, end=TO, group_by="day")
    day_fields = ("key", "calls", "errors", "cost_usd", "cache_hit_ratio")
    assert [tuple(g[f] for f in day_fields) for g in by_day["groups"]] == [
        ("2026-11-02", 2, 0, "0.0358", 0.0),
        ("2026-11-03", 2, 1, "0.0042", 0.989),
    ]  # fmt: skip
    by_intent = await edits_report(sessions, start=FROM, end=TO, group_by="intent")
    fields = ("key", "label", "agent_replies", "from_draft", "edited", "edited_share", "mean_edit_ratio")
    assert tuple(by_intent["total"][f] for f in fields) == (None, "All agent replies", 5, 4, 3, 0.75, 0.2)
    assert [tuple(g[f] for f in fields) for g in by_intent["groups"]] == [
        ("returns_refunds", "Returns and refunds", 2, 2, 1, 0.5, 0.25),
        ("warranty_repairs", "Warranty and repairs", 2, 1, 1, 1.0, 0.2),
        (None, "Not triaged", 1, 1, 1, 1.0, 0.1),
    ]
    by_agent = await edits_report(sessions, start=FROM, end=TO, group_by="agent")
    assert [tuple(g[f] for f in fields) for g in by_agent["groups"]] == [
        ("ag1", "Sam", 3, 3, 2, 0.6667, 0.2),
        ("ag2", "Kim", 2, 1, 1, 1.0, 0.2),
    ]
    with pytest.raises(ValidationFailed):
        await usage_report(sessions, start=FROM, end=TO, group_by="intent")
    with pytest.raises(ValidationFailed):
        await edits_report(sessions, start=FROM, end=TO, group_by="day")


async def page(sessions: Any, **kw: Any) -> list[str]:
    only = kw.pop("only", ())
    filters = tuple(kw.pop("filters", ()))
    spec = DrillDown(start=FROM, end=TO, filters=filters, only=tuple(only), **kw)
    return ids((await conversations_page(sessions, spec, now=NOW, limit=200))["conversations"])


async def test_the_drill_down_returns_exactly_the_conversations_behind_each_number(
    db_engine: AsyncEngine,
) -> None:
    await seed(db_engine)
    sessions = session_factory(db_engine)
    assert await page(sessions, only=["bot_resolved"]) == ["c2", "c1"]
    assert await page(sessions, filters=[("resolution", "bot")], only=["bot_assumed"]) == ["c2"]
    assert await page(sessions, only=["resolved"]) == ["c6", "c4", "c2", "c1"]
    assert await page(sessions, filters=[("intent", "__none__")]) == ["c7", "c5"]
    assert await page(sessions, filters=[("channel", "ticket")], only=["handed_off"]) == ["c6", "c5"]
    assert await page(sessions, week="2026-11-02", only=["rated"]) == ["c8", "c5", "c4", "c1"]
    assert await page(sessions, day="2026-11-03") == ["c4", "c3"]
    assert await page(sessions, only=["predicted"]) == ["c3", "c2"]
    assert await page(sessions, only=["dissatisfied"]) == ["c8", "c5", "c4"]
    assert await page(sessions, filters=[("agent", "ag1")], only=["reopened"]) == ["c4"]
    assert await page(sessions, only=["asked"]) == ["c6", "c8", "c5", "c4", "c2", "c1"]
    assert await page(sessions, only=["predicted_satisfied"]) == ["c2"]  # c1: predicted 1, then rated
    # Each handoff reason's count is the conversations a drill-down by that reason returns.
    reasons = await handoff_reasons_report(sessions, start=FROM, end=TO, group_by="channel")
    for group in reasons["groups"]:
        for r in group["reasons"]:
            filters = [("channel", group["key"]), ("handoff_reason", r["reason"] or "__none__")]
            assert len(await page(sessions, filters=filters, only=["handed_off"])) == r["count"]
    assert await page(sessions, filters=[("handoff_reason", "wants_human")]) == ["c5"]
    # Every count of every group equals the number of conversations its filters return.
    counts = {"conversations": [], "bot_confirmed": ["bot_confirmed"], "bot_assumed": ["bot_assumed"],
              "resolved": ["resolved"], "reopened": ["reopened"], "handed_off": ["handed_off"],
              "rated": ["rated"]}  # fmt: skip
    report = await overview_report(sessions, start=FROM, end=TO, group_by="intent", now=NOW)
    for group in report["groups"]:
        for number, only in counts.items():
            got = await page(sessions, filters=[("intent", group["key"] or "__none__")], only=only)
            assert len(got) == group[number], (group["key"], number)
        satisfied = await page(sessions, filters=[("intent", group["key"] or "__none__")], only=["satisfied"])
        assert len(satisfied) == round((group["csat"] or 0) * group["rated"])
    spec = DrillDown(start=FROM, end=TO)
    first = await conversations_page(sessions, spec, now=NOW, limit=3)
    row = first["conversations"][0]
    assert row == {
        "conversation_id": "c7", "channel": "chat", "started_at": "2026-11-10T11:30:00+00:00",
        "resolution_type": "bot", "bot_resolution": None, "intent": None, "intent_label": "Not triaged",
        "agent_id": None, "agent_name": None, "handoff_reason": None, "rating": None, "predicted_score": None,
        "predicted_reason": None, "confirmed": False, "reopened": False, "resolved_at": None,
        "bot_first_response_s": 5.0, "human_first_response_s": None, "queue_wait_s": None,
        "resolution_s": None,
        "cost_usd": "0.001", "policy_version": "v2",
    }  # fmt: skip
    second = await conversations_page(sessions, spec, now=NOW, limit=3, cursor=first["next_cursor"])
    third = await conversations_page(sessions, spec, now=NOW, limit=3, cursor=second["next_cursor"])
    assert [ids(p["conversations"]) for p in (first, second, third)] == [
        ["c7", "c6", "c8"],
        ["c5", "c4", "c3"],
        ["c2", "c1"],
    ]
    assert third["next_cursor"] is None
    exported = [r async for r in all_conversations(sessions, spec, now=NOW, chunk=3)]
    assert exported == first["conversations"] + second["conversations"] + third["conversations"]
    assert [r["bot_resolution"] for r in exported if r["bot_resolution"]] == ["assumed", "confirmed"]
    c4 = next(r for r in exported if r["conversation_id"] == "c4")
    assert (c4["agent_name"], c4["intent_label"], c4["handoff_reason"]) == (
        "Sam",
        "Warranty and repairs",
        "low_confidence",
    )
    for bad in (DrillDown(only=("everything",)), DrillDown(week="2026-11-03"), DrillDown(day="soon")):
        with pytest.raises(ValidationFailed):
            await conversations_page(sessions, bad, now=NOW)
    with pytest.raises(ValidationFailed):
        await conversations_page(sessions, spec, now=NOW, limit=201)
    with pytest.raises(ValidationFailed):
        await conversations_page(sessions, spec, now=NOW, cursor="not-a-cursor")
