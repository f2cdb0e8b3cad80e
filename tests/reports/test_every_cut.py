"""Every field of every report for every cut, against tables worked out by hand (issue 19), on SQLite and
PostgreSQL: the overview for each of its eight cuts, handoff reasons for each, usage and edits for each of
theirs, and the drill-down behind every count of every group.

The seed is tests/reports/seed.py; docs/metrics.md has the definitions. Each report is compared as a
whole (flattened to ``path: value``), so a field the code adds without an expected value here fails.

The eight conversations in the range, as the tables below use them (times in seconds; NOW is 11-10 12:00):

====  ======  =====  ================  ===  =====  ==========  ====  ===  ===  ===  ======  ====  ====  =====
id    chan    day    intent            pv   agent  type        bot   hum  que  res  asked?  rate  pred  cost
====  ======  =====  ================  ===  =====  ==========  ====  ===  ===  ===  ======  ====  ====  =====
c1    chat    11-02  returns_refunds   v1   -      bot conf.   2     -    -    120  yes     5     (1)   0.01
c2    chat    11-02  returns_refunds   v1   -      bot assum.  3     -    -    3    yes     -     4     0.02
c3    chat    11-03  warranty_repairs  v1   -      bot         1     -    -    -    -       -     2     0.005
c4    chat    11-03  warranty_repairs  v2   ag1    handed_off  4     45   30   600  yes     2     -     0.03
c5    ticket  11-04  -                 -    -      unanswered  -     -    -    (x)  yes     1     -     0
c6    ticket  11-09  returns_refunds   v2   ag2    human       -     20   10   300  yes     4     -     0.004
c7    chat    11-10  -                 v2   -      bot         5     -    -    -    -       -     -     0.001
c8    chat    11-04  product_question  v1   -      bot         2.5   -    -    (x)  yes     2     -     0.002
====  ======  =====  ================  ===  =====  ==========  ====  ===  ===  ===  ======  ====  ====  =====

- bot/hum/que/res: first response by the bot, by a person, queue wait, time to resolution. ``(x)``: the row
  has a resolution time but the conversation is not *resolved* (c5 unanswered; c8 a bot conversation rated
  2, so neither confirmed nor assumed): left out of ``resolution_s``.
- resolved: c1 (confirmed: rated 5), c2 (assumed: the bot's reply was last, > 24 h before NOW, unrated), c4
  and c6 (a person's conversation with ``resolved_at``). Not c3 (the customer wrote last), c7 (the bot's
  last reply is < 24 h old), c8 (rated 2).
- asked? = ``resolved_at`` set (the response rate's denominator). pred = ``predicted_score`` where unrated;
  c1's ``(1)`` does not count (it was rated). Reopened: c4 only. Handed off: c4 (low_confidence), c5
  (wants_human, twice: counts once), c6 (urgent). Weeks: 11-02 holds c1-c5 and c8; 11-09 holds c6, c7.

Percentiles are linear between closest ranks: sorted ``x0..x(n-1)``, p at position ``p * (n - 1)``; so for
two values ``[a, b]``: p50 = (a + b) / 2, p90 = a + 0.9 (b - a); for ``[a, b, c]``: p50 = b,
p90 = b + 0.8 (c - b); for four: p50 = (x1 + x2) / 2, p90 = x2 + 0.7 (x3 - x2); for five: p50 = x2,
p90 = x3 + 0.6 (x4 - x3); for six: p50 = (x2 + x3) / 2, p90 = x4 + 0.5 (x5 - x4).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from support.db.engine import session_factory
from support.reports.conversations import (
    DrillDown,
    conversations_page,
    handoff_reasons_report,
    overview_report,
)
from support.reports.usage import edits_report, usage_report
from tests.reports.seed import FROM, NOW, TO, seed

Pair = tuple[float | None, float | None]
N: Pair = (None, None)  # no values: no percentiles


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A JSON value as ``{"groups.0.resolution.bot": 5, ...}``: every leaf, so no field goes unchecked."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}{i}."))
        return out or {prefix.rstrip("."): []}
    return {prefix.rstrip("."): value}


def times(pair: Pair) -> dict[str, float | None]:
    return {"p50": pair[0], "p90": pair[1]}


def G(
    key: str | None,
    label: str,
    conversations: int,
    resolution: tuple[int, int, int, int],
    confirmed: int,
    assumed: int,
    bot_rate: float,
    reopened: int,
    resolved: int,
    handed_off: int,
    handoff_rate: float,
    bot_first: Pair,
    human_first: Pair,
    queue: Pair,
    to_resolution: Pair,
    rated: int,
    csat: float | None,
    mean_rating: float | None,
    response_rate: float | None,
    predicted: tuple[int, float | None, float | None],
    cost: tuple[str, str, str | None],
) -> dict[str, Any]:
    """One overview row, every field given by hand (the shape of protocol.md's overview row)."""
    return {
        "key": key, "label": label, "conversations": conversations,
        "resolution": dict(zip(("bot", "handed_off", "unanswered", "human"), resolution, strict=True)),
        "bot_confirmed": confirmed, "bot_assumed": assumed, "bot_resolution_rate": bot_rate,
        "reopened": reopened, "resolved": resolved, "handed_off": handed_off, "handoff_rate": handoff_rate,
        "first_response_bot_s": times(bot_first), "first_response_human_s": times(human_first),
        "queue_wait_s": times(queue), "resolution_s": times(to_resolution),
        "rated": rated, "csat": csat, "mean_rating": mean_rating, "response_rate": response_rate,
        "predicted": dict(zip(("count", "mean", "csat"), predicted, strict=True)),
        "cost_usd": cost[0], "cost_per_conversation_usd": cost[1], "cost_per_resolution_usd": cost[2],
    }  # fmt: skip


# -- the overview -----------------------------------------------------------------------------------------
# G(key, label, conversations, (bot, handed_off, unanswered, human), confirmed, assumed, bot resolution
#   rate, reopened, resolved, handed off, handoff rate, first response bot (p50, p90), first response
#   human, queue wait, time to resolution, rated, csat, mean rating, response rate,
#   predicted (count, mean, csat), cost (total, per conversation, per resolution))

TOTAL = G(
    None, "All conversations", 8, (5, 1, 1, 1), 1, 1, 0.25, 1, 4, 3, 0.375,  # 2/8 bot-resolved; 3/8 handed
    (2.75, 4.5),  # bot [1, 2, 2.5, 3, 4, 5]: (2.5 + 3) / 2; 4 + 0.5 * 1
    (32.5, 42.5),  # human [20, 45]
    (20.0, 28.0),  # queue [10, 30]
    (210.0, 510.0),  # resolved only [3, 120, 300, 600]: (120 + 300) / 2; 300 + 0.7 * 300
    5, 0.4, 2.8, 0.8333,  # rated c1 c4 c5 c6 c8: 2 of 5 are 4-5; 14 / 5; 5 rated of 6 asked
    (2, 3.0, 0.5),  # c2 (4), c3 (2)
    ("0.072", "0.009", "0.018"),  # 0.072 / 8; 0.072 / 4 resolved
)  # fmt: skip

# Single-conversation groups recur across cuts: the same values under another key and label.
C4 = (1, (0, 1, 0, 0), 0, 0, 0.0, 1, 1, 1, 1.0, (4.0, 4.0), (45.0, 45.0), (30.0, 30.0), (600.0, 600.0),
      1, 0.0, 2.0, 1.0, (0, None, None), ("0.03", "0.03", "0.03"))  # fmt: skip
C5 = (1, (0, 0, 1, 0), 0, 0, 0.0, 0, 0, 1, 1.0, N, N, N, N,  # closed, not resolved: no resolution time
      1, 0.0, 1.0, 1.0, (0, None, None), ("0", "0", None))  # fmt: skip
C6 = (1, (0, 0, 0, 1), 0, 0, 0.0, 0, 1, 1, 1.0, N, (20.0, 20.0), (10.0, 10.0), (300.0, 300.0),
      1, 1.0, 4.0, 1.0, (0, None, None), ("0.004", "0.004", "0.004"))  # fmt: skip
C3_C4 = (2, (1, 1, 0, 0), 0, 0, 0.0, 1, 1, 1, 0.5,  # c4 resolved, reopened, handed off
         (2.5, 3.7),  # bot [1, 4]: 1 + 0.9 * 3
         (45.0, 45.0), (30.0, 30.0), (600.0, 600.0),
         1, 0.0, 2.0, 1.0,  # c4 rated 2; asked: c4 only
         (1, 2.0, 0.0),  # c3 predicted 2
         ("0.035", "0.0175", "0.035"))  # fmt: skip

OVERVIEW: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "resolution": [
        G("bot", "Bot", 5, (5, 0, 0, 0), 1, 1, 0.4, 0, 2, 0, 0.0,  # c1 c2 c3 c7 c8
          (2.5, 4.2),  # [1, 2, 2.5, 3, 5]: 3 + 0.6 * 2
          N, N,
          (61.5, 108.3),  # resolved c1 c2: [3, 120]; 3 + 0.9 * 117
          2, 0.5, 3.5, 0.6667,  # rated c1 (5), c8 (2); asked c1 c2 c8, rated 2 of them
          (2, 3.0, 0.5), ("0.038", "0.0076", "0.019")),
        G("handed_off", "Handed off (a person replied)", *C4),
        G("unanswered", "Handed off, no person replied", *C5),
        G("human", "Person only", *C6),
    ],
    "intent": [
        G("product_question", "Product question", 1, (1, 0, 0, 0), 0, 0, 0.0, 0, 0, 0, 0.0,  # c8
          (2.5, 2.5), N, N, N,  # c8 is not resolved (rated 2): no resolution time
          1, 0.0, 2.0, 1.0, (0, None, None), ("0.002", "0.002", None)),
        # c1 c2 c6
        G("returns_refunds", "Returns and refunds", 3, (2, 0, 0, 1), 1, 1, 0.6667, 0, 3, 1, 0.3333,
          (2.5, 2.9),  # [2, 3]
          (20.0, 20.0), (10.0, 10.0),
          (120.0, 264.0),  # [3, 120, 300]: 120 + 0.8 * 180
          2, 1.0, 4.5, 0.6667,  # rated c1 (5), c6 (4); asked c1 c2 c6
          (1, 4.0, 1.0),  # c2 only: c1 was rated
          ("0.034", "0.011333", "0.011333")),  # 0.034 / 3, to a millionth
        G("warranty_repairs", "Warranty and repairs", *C3_C4),  # c3 c4
        G(None, "Not triaged", 2, (1, 0, 1, 0), 0, 0, 0.0, 0, 0, 1, 0.5,  # c5 c7
          (5.0, 5.0), N, N, N,
          1, 0.0, 1.0, 1.0,  # c5 rated 1, asked
          (0, None, None), ("0.001", "0.0005", None)),
    ],
    "agent": [
        G("ag1", "Sam", *C4),
        G("ag2", "Kim", *C6),
        G(None, "No agent", 6, (5, 0, 1, 0), 1, 1, 0.3333, 0, 2, 1, 0.1667,  # c1 c2 c3 c5 c7 c8
          (2.5, 4.2),  # [1, 2, 2.5, 3, 5]
          N, N, (61.5, 108.3),  # [3, 120]
          3, 0.3333, 2.667, 0.75,  # rated c1 (5), c5 (1), c8 (2): 8 / 3; asked c1 c2 c5 c8, 3 rated
          (2, 3.0, 0.5), ("0.038", "0.006333", "0.019")),  # 0.038 / 6; 0.038 / 2
    ],
    "channel": [
        G("chat", "Chat", 6, (5, 1, 0, 0), 1, 1, 0.3333, 1, 3, 1, 0.1667,  # c1 c2 c3 c4 c7 c8
          (2.75, 4.5),  # [1, 2, 2.5, 3, 4, 5]
          (45.0, 45.0), (30.0, 30.0),
          (120.0, 504.0),  # [3, 120, 600]: 120 + 0.8 * 480
          3, 0.3333, 3.0, 0.75,  # rated c1 (5), c4 (2), c8 (2); asked c1 c2 c4 c8
          (2, 3.0, 0.5), ("0.068", "0.011333", "0.022667")),  # 0.068 / 6; 0.068 / 3
        G("ticket", "Ticket", 2, (0, 0, 1, 1), 0, 0, 0.0, 0, 1, 2, 1.0,  # c5 c6
          N, (20.0, 20.0), (10.0, 10.0), (300.0, 300.0),
          2, 0.5, 2.5, 1.0,  # rated 1 and 4
          (0, None, None), ("0.004", "0.002", "0.004")),
    ],
    "day": [
        G("2026-11-02", "2026-11-02", 2, (2, 0, 0, 0), 1, 1, 1.0, 0, 2, 0, 0.0,  # c1 c2
          (2.5, 2.9), N, N, (61.5, 108.3),
          1, 1.0, 5.0, 0.5,  # both asked, c1 rated
          (1, 4.0, 1.0), ("0.03", "0.015", "0.015")),
        G("2026-11-03", "2026-11-03", *C3_C4),
        G("2026-11-04", "2026-11-04", 2, (1, 0, 1, 0), 0, 0, 0.0, 0, 0, 1, 0.5,  # c5 c8
          (2.5, 2.5), N, N, N,
          2, 0.0, 1.5, 1.0,  # rated 1 and 2, both asked
          (0, None, None), ("0.002", "0.001", None)),
        G("2026-11-09", "2026-11-09", *C6),
        G("2026-11-10", "2026-11-10", 1, (1, 0, 0, 0), 0, 0, 0.0, 0, 0, 0, 0.0,  # c7: not assumed yet
          (5.0, 5.0), N, N, N,
          0, None, None, None,  # nobody rated, nobody asked
          (0, None, None), ("0.001", "0.001", None)),
    ],
    "week": [
        G("2026-11-02", "2026-11-02", 6, (4, 1, 1, 0), 1, 1, 0.3333, 1, 3, 2, 0.3333,  # c1-c5, c8
          (2.5, 3.6),  # [1, 2, 2.5, 3, 4]: 3 + 0.6 * 1
          (45.0, 45.0), (30.0, 30.0), (120.0, 504.0),  # resolved c1 c2 c4: [3, 120, 600]
          4, 0.25, 2.5, 0.8,  # rated 5, 2, 1, 2; asked c1 c2 c4 c5 c8, 4 rated
          (2, 3.0, 0.5), ("0.067", "0.011167", "0.022333")),  # 0.067 / 6; 0.067 / 3
        G("2026-11-09", "2026-11-09", 2, (1, 0, 0, 1), 0, 0, 0.0, 0, 1, 1, 0.5,  # c6 c7
          (5.0, 5.0), (20.0, 20.0), (10.0, 10.0), (300.0, 300.0),
          1, 1.0, 4.0, 1.0, (0, None, None), ("0.005", "0.0025", "0.005")),
    ],
    "policy_version": [
        G("v1", "v1", 4, (4, 0, 0, 0), 1, 1, 0.5, 0, 2, 0, 0.0,  # c1 c2 c3 c8
          (2.25, 2.85),  # [1, 2, 2.5, 3]: (2 + 2.5) / 2; 2.5 + 0.7 * 0.5
          N, N, (61.5, 108.3),
          2, 0.5, 3.5, 0.6667,  # rated c1 (5), c8 (2); asked c1 c2 c8
          (2, 3.0, 0.5), ("0.037", "0.00925", "0.0185")),
        G("v2", "v2", 3, (1, 1, 0, 1), 0, 0, 0.0, 1, 2, 2, 0.6667,  # c4 c6 c7
          (4.5, 4.9),  # [4, 5]
          (32.5, 42.5), (20.0, 28.0),  # [20, 45]; [10, 30]
          (450.0, 570.0),  # [300, 600]
          2, 0.5, 3.0, 1.0,  # rated c4 (2), c6 (4)
          (0, None, None), ("0.035", "0.011667", "0.0175")),  # 0.035 / 3; 0.035 / 2
        G(None, "No policy version", *C5),
    ],
}  # fmt: skip


async def test_every_field_of_the_overview_for_every_cut(db_engine: AsyncEngine) -> None:
    await seed(db_engine)
    sessions = session_factory(db_engine)
    for cut, groups in OVERVIEW.items():
        report = await overview_report(sessions, start=FROM, end=TO, group_by=cut, now=NOW)
        expected = {
            "from": "2026-11-02T00:00:00+00:00", "to": "2026-11-11T00:00:00+00:00", "group_by": cut,
            "now": "2026-11-10T12:00:00+00:00", "total": TOTAL, "groups": groups,
        }  # fmt: skip
        assert flatten(report) == flatten(expected), cut


# -- handoff reasons --------------------------------------------------------------------------------------

LOW = {"reason": "low_confidence", "label": "Bot not confident enough to answer", "count": 1}
URGENT = {"reason": "urgent", "label": "Urgent (safety, fraud or money at stake)", "count": 1}
WANTS = {"reason": "wants_human", "label": "Customer asked for a person", "count": 1}


def R(key: str | None, label: str, conversations: int, handed_off: int, *reasons: dict[str, Any]) -> Any:
    """One handoff-reasons group: reasons most frequent first, ties by code."""
    return {"key": key, "label": label, "conversations": conversations, "handed_off": handed_off,
            "reasons": list(reasons)}  # fmt: skip


# First reasons: c4 low_confidence, c5 wants_human (handed off twice, counted once), c6 urgent.
REASONS_TOTAL = R(None, "All conversations", 8, 3, LOW, URGENT, WANTS)
REASONS: dict[str, list[Any]] = {
    "none": [],
    "resolution": [
        R("bot", "Bot", 5, 0),
        R("handed_off", "Handed off (a person replied)", 1, 1, LOW),
        R("unanswered", "Handed off, no person replied", 1, 1, WANTS),
        R("human", "Person only", 1, 1, URGENT),
    ],
    "intent": [
        R("product_question", "Product question", 1, 0),
        R("returns_refunds", "Returns and refunds", 3, 1, URGENT),
        R("warranty_repairs", "Warranty and repairs", 2, 1, LOW),
        R(None, "Not triaged", 2, 1, WANTS),
    ],
    "agent": [R("ag1", "Sam", 1, 1, LOW), R("ag2", "Kim", 1, 1, URGENT), R(None, "No agent", 6, 1, WANTS)],
    "channel": [R("chat", "Chat", 6, 1, LOW), R("ticket", "Ticket", 2, 2, URGENT, WANTS)],
    "day": [
        R("2026-11-02", "2026-11-02", 2, 0),
        R("2026-11-03", "2026-11-03", 2, 1, LOW),
        R("2026-11-04", "2026-11-04", 2, 1, WANTS),
        R("2026-11-09", "2026-11-09", 1, 1, URGENT),
        R("2026-11-10", "2026-11-10", 1, 0),
    ],
    "week": [R("2026-11-02", "2026-11-02", 6, 2, LOW, WANTS), R("2026-11-09", "2026-11-09", 2, 1, URGENT)],
    "policy_version": [
        R("v1", "v1", 4, 0),
        R("v2", "v2", 3, 2, LOW, URGENT),
        R(None, "No policy version", 1, 1, WANTS),
    ],
}


async def test_every_field_of_handoff_reasons_for_every_cut(db_engine: AsyncEngine) -> None:
    await seed(db_engine)
    sessions = session_factory(db_engine)
    for cut, groups in REASONS.items():
        report = await handoff_reasons_report(sessions, start=FROM, end=TO, group_by=cut)
        expected = {
            "from": "2026-11-02T00:00:00+00:00", "to": "2026-11-11T00:00:00+00:00", "group_by": cut,
            "total": REASONS_TOTAL, "groups": groups,
        }  # fmt: skip
        assert flatten(report) == flatten(expected), cut


# -- usage and edits --------------------------------------------------------------------------------------
# Ledger rows in the range: triage 11-02 (300 in, 40 out, $0.0005); answer 11-02 (100 in, 9000 cache
# writes, 80 out, $0.0353); answer 11-03 (100 in, 9000 cache reads, 80 out, $0.0042); answer 11-03 failed
# (error:overloaded, nothing else). The one from 30 days before is outside.


def U(
    key: str,
    label: str,
    calls: int,
    errors: int,
    tokens: tuple[int, int, int, int],
    cost: str,
    hit: float | None,
    **extra: str,
) -> dict[str, Any]:
    """One usage row: tokens are (input, cache write, cache read, output)."""
    names = ("input_tokens", "cache_write_tokens", "cache_read_tokens", "output_tokens")
    return {"key": key, "label": label, **extra, "calls": calls, "errors": errors,
            **dict(zip(names, tokens, strict=True)), "cost_usd": cost, "cache_hit_ratio": hit}  # fmt: skip


USAGE_TOTAL = {
    **U("", "All model calls", 4, 1, (500, 9000, 9000, 200), "0.04", 0.4945),
    "key": None,
}  # 9000 read / (100 + 9000 + 100 + 9000 + 0) input of answer calls; the triage call's tokens are not
USAGE: dict[str, list[dict[str, Any]]] = {
    "model_purpose": [
        U("answer/claude-sonnet-4-6", "answer · claude-sonnet-4-6", 3, 1, (200, 9000, 9000, 160), "0.0395",
          0.4945, purpose="answer", model="claude-sonnet-4-6"),
        U("triage/claude-haiku-4-5", "triage · claude-haiku-4-5", 1, 0, (300, 0, 0, 40), "0.0005",
          None, purpose="triage", model="claude-haiku-4-5"),  # no answer call: no ratio
    ],
    "day": [
        U("2026-11-02", "2026-11-02", 2, 0, (400, 9000, 0, 120), "0.0358", 0.0),  # 0 / 9100
        U("2026-11-03", "2026-11-03", 2, 1, (100, 0, 9000, 80), "0.0042", 0.989),  # 9000 / 9100
    ],
}  # fmt: skip

# Agent replies in the range (intent, agent, from a draft, edit ratio): returns_refunds ag1 0.0;
# returns_refunds ag1 0.5; warranty_repairs ag2 0.2; warranty_repairs ag2 no draft; not triaged ag1 0.1.
EDITS_TOTAL = {"key": None, "label": "All agent replies", "agent_replies": 5, "from_draft": 4, "edited": 3,
               "edited_share": 0.75, "mean_edit_ratio": 0.2}  # (0 + 0.5 + 0.2 + 0.1) / 4  # fmt: skip


def E(key: str | None, label: str, replies: int, drafted: int, edited: int, share: float, mean: float) -> Any:
    return {"key": key, "label": label, "agent_replies": replies, "from_draft": drafted, "edited": edited,
            "edited_share": share, "mean_edit_ratio": mean}  # fmt: skip


EDITS: dict[str, list[Any]] = {
    "intent": [
        E("returns_refunds", "Returns and refunds", 2, 2, 1, 0.5, 0.25),  # ratios 0 and 0.5
        E("warranty_repairs", "Warranty and repairs", 2, 1, 1, 1.0, 0.2),  # the undrafted one not counted
        E(None, "Not triaged", 1, 1, 1, 1.0, 0.1),
    ],
    "agent": [
        E("ag1", "Sam", 3, 3, 2, 0.6667, 0.2),  # ratios 0, 0.5, 0.1
        E("ag2", "Kim", 2, 1, 1, 1.0, 0.2),
    ],
}


async def test_every_field_of_usage_and_edits_for_every_cut(db_engine: AsyncEngine) -> None:
    await seed(db_engine)
    sessions = session_factory(db_engine)
    bounds = {"from": "2026-11-02T00:00:00+00:00", "to": "2026-11-11T00:00:00+00:00"}
    for cut, groups in USAGE.items():
        usage = await usage_report(sessions, start=FROM, end=TO, group_by=cut)
        expected = {**bounds, "group_by": cut, "total": USAGE_TOTAL, "groups": groups}
        assert flatten(usage) == flatten(expected), cut
    for cut, groups in EDITS.items():
        edits = await edits_report(sessions, start=FROM, end=TO, group_by=cut)
        expected = {**bounds, "group_by": cut, "total": EDITS_TOTAL, "groups": groups}
        assert flatten(edits) == flatten(expected), cut


# -- the drill-down ---------------------------------------------------------------------------------------

# Each count of an overview row and the drill-down filters (``only``, and a resolution filter) that list
# the conversations behind it. Every counted leaf of a row is here or among the rates checked below.
COUNTS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "conversations": ((), None),
    "resolution.bot": ((), "bot"),
    "resolution.handed_off": ((), "handed_off"),
    "resolution.unanswered": (("unanswered",), None),  # the `unanswered` shortcut
    "resolution.human": ((), "human"),
    "bot_confirmed": (("bot_confirmed",), None),
    "bot_assumed": (("bot_assumed",), None),
    "reopened": (("reopened",), None),
    "resolved": (("resolved",), None),
    "handed_off": (("handed_off",), None),
    "rated": (("rated",), None),
    "predicted.count": (("predicted",), None),
}


# The other sets behind the rates: csat = satisfied / rated, response rate = asked and rated / asked, the
# predicted csat = predicted 4-5 / predicted, bot resolution rate = bot resolved / conversations.
RATE_SETS: dict[str, tuple[str, ...]] = {
    "satisfied": ("satisfied",),
    "dissatisfied": ("dissatisfied",),
    "asked": ("asked",),
    "asked_rated": ("asked", "rated"),
    "predicted_satisfied": ("predicted_satisfied",),
    "bot_resolved": ("bot_resolved",),
}


def group_spec(
    cut: str,
    key: str | None,
    only: tuple[str, ...] = (),
    *,
    resolution: str | None = None,
    reason: str | None = None,
) -> DrillDown:
    """The drill-down behind one group of a cut (``__none__`` for the null group), narrowed by ``only``, a
    resolution type or a first handoff reason."""
    filters: list[tuple[str, str]] = []
    day = week = None
    if cut == "day":
        day = key
    elif cut == "week":
        week = key
    elif cut != "none":
        filters.append((cut, key or "__none__"))
    if resolution is not None:
        filters.append(("resolution", resolution))
    if reason is not None:
        filters.append(("handoff_reason", reason))
    return DrillDown(start=FROM, end=TO, filters=tuple(filters), day=day, week=week, only=only)  # fmt: skip


async def test_the_drill_down_lists_exactly_the_conversations_behind_every_count_of_every_group(
    db_engine: AsyncEngine,
) -> None:
    await seed(db_engine)
    sessions = session_factory(db_engine)

    async def rows(spec: DrillDown) -> list[dict[str, Any]]:
        page = await conversations_page(sessions, spec, now=NOW, limit=200)
        assert page["next_cursor"] is None
        return list(page["conversations"])

    everyone = sorted(r["conversation_id"] for r in await rows(group_spec("none", None)))
    assert everyone == [f"c{i}" for i in range(1, 9)]
    for cut, groups in {"none": [TOTAL], **{c: g for c, g in OVERVIEW.items() if c != "none"}}.items():
        seen: list[str] = []
        for group in groups:
            key, flat = group["key"], flatten(group)
            specs = {number: group_spec(cut, key, only, resolution=r) for number, (only, r) in COUNTS.items()}
            specs.update({name: group_spec(cut, key, only) for name, only in RATE_SETS.items()})
            found = dict(zip(specs, await asyncio.gather(*map(rows, specs.values())), strict=True))
            n = {name: len(listed) for name, listed in found.items()}
            for number in COUNTS:
                assert n[number] == flat[number], (cut, key, number)
            assert n["satisfied"] + n["dissatisfied"] == n["rated"], (cut, key)
            assert n["bot_resolved"] == n["bot_confirmed"] + n["bot_assumed"], (cut, key)
            rates = {
                "bot_resolution_rate": ratio(n["bot_resolved"], n["conversations"]),
                "handoff_rate": ratio(n["handed_off"], n["conversations"]),
                "csat": ratio(n["satisfied"], n["rated"]),
                "response_rate": ratio(n["asked_rated"], n["asked"]),
                "predicted.csat": ratio(n["predicted_satisfied"], n["predicted.count"]),
            }
            assert rates == {name: flat[name] for name in rates}, (cut, key)
            # The listed conversations' own values add up to the group's money and mean rating.
            listed = found["conversations"]
            assert sum((Decimal(r["cost_usd"]) for r in listed), Decimal(0)) == Decimal(group["cost_usd"])
            scores = [r["rating"] for r in listed if r["rating"] is not None]
            mean = round(sum(scores) / len(scores), 3) if scores else None
            assert mean == group["mean_rating"], (cut, key)
            seen += [r["conversation_id"] for r in listed]
        # The groups of a cut split the conversations: each exactly once.
        assert sorted(seen) == everyone, cut

    # Each handoff reason's count is the conversations a drill-down by that reason lists.
    for cut, groups in {"none": [REASONS_TOTAL], **{c: g for c, g in REASONS.items() if c != "none"}}.items():
        for group in groups:
            key = group["key"]
            assert len(await rows(group_spec(cut, key, ("handed_off",)))) == group["handed_off"], (cut, key)
            for r in group["reasons"]:
                spec = group_spec(cut, key, ("handed_off",), reason=r["reason"])
                assert len(await rows(spec)) == r["count"], (cut, key, r["reason"])


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
