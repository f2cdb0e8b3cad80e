"""Every field of every report for every cut, against tables worked out by hand (issue 19), on SQLite and
PostgreSQL: the overview for each of its eight cuts, handoff reasons for each, usage and edits for each of
theirs, and the drill-down behind every count of every group.

Two seeds, each with its own tables (docs/metrics.md has the definitions):

- ``facts``: tests/reports/seed.py, ``conversation_fact`` rows written directly (every report's input), so
  each value depends on the report code alone;
- ``sources``: tests/reports/seed_sources.py, the conversations themselves (events and triage verdicts in
  Redis), ratings, tickets, handoff records and ledger rows, turned into fact rows by the real fact writer;
  its table is further down.

Each report is compared as a whole (flattened to ``path: value``), so a field the code adds without an
expected value here fails. Edits come from ``example`` rows, which only the ``facts`` seed writes.

Seed 1. The eight conversations in the range, as the tables below use them (seconds; NOW is 11-10 12:00):

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from support.db.engine import make_engine, session_factory
from support.db.models import ConversationFact
from support.reports.conversations import (
    GROUP_BYS,
    DrillDown,
    conversations_page,
    handoff_reasons_report,
    overview_report,
)
from support.reports.usage import EDIT_GROUP_BYS, USAGE_GROUP_BYS, edits_report, usage_report
from tests.reports import seed_sources as sources
from tests.reports.seed import FROM, NOW, TO, fact, seed
from tests.reports.seed_sources import seed_sources

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
    bounds: tuple[datetime, datetime],
    cut: str,
    key: str | None,
    only: tuple[str, ...] = (),
    *,
    resolution: str | None = None,
    reason: str | None = None,
) -> DrillDown:
    """The drill-down behind one group of a cut (``__none__`` for the null group), narrowed by ``only``, a
    resolution type or a first handoff reason."""
    start, end = bounds
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
    return DrillDown(start=start, end=end, filters=tuple(filters), day=day, week=week, only=only)


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# == seed 2: the sources (tests/reports/seed_sources.py), through the fact writer ===========================
# The seven conversations in the range (s0 started a second before it; s9 has no customer message):
#
# id  chan    day    intent            pv  agent  type        bot  hum  que  res     asked  rate  pred  cost
# s1  chat    11-16  payments_billing  v3  -      bot conf.   4    -    -    63     -      -     2     0.0238
# s2  chat    11-16  payments_billing  v3  -      bot conf.   3    -    -    3      yes    4     (1)   0.02
# s3  chat    11-17  shipping          v4  -      bot assum.  2    -    -    2      yes    -     5     0.0055
# s4  chat    11-17  shipping          v4  ag2    handed_off  5    120  60   400    yes    1     -     0.03
# t5  ticket  11-18  shipping          -   -      unanswered  -    -    -    (x)    yes    2     -     0.001
# t6  ticket  11-23  payments_billing  v4  ag1    human       -    300  0    1200   yes    5     -     0.005
# s7  chat    11-24  -                 v3  -      bot         2    -    -    -      -      3     -     0.002
#
# Derived by hand from the sources: s1 confirmed by its second message's `solved` verdict; s2 by its
# rating of 4; s3 assumed (the bot's reply was last, on 11-17, and it is unrated); s7 is not (its reply is
# < 24 h old, and it was rated 3). A bot conversation's time to resolution is its last bot reply (s1:
# 09:01:03 - 09:00:00 = 63). s4: queued +30 s, claimed +90 (queue 60), Sam replied +150 (120), Kim
# last; resolved +400; a customer message two days later reopens it. t5: queued, never claimed, closed after
# an hour: unanswered, so not resolved (x). t6: taken straight by an agent at +600 (queue 0), who replied
# at +900 (300); resolved at +1200; its start is the ticket's filing time. Asked = closed (`resolved`
# status): s2 s3 s4 t5 t6; s7 rated without being asked. Policy: the first answer call's (s1: v3, not its
# later v4; t5 had only a triage call: none). Cost: the sum of each conversation's ledger rows
# (s1: 0.0004 + 0.012 + 0.0004 + 0.011). Predictions: s1 2, s3 5 count; s2's (1) does not, it was rated.
# Handed off: s4 wants_human, t5 urgent, t6 low_confidence.

S_TOTAL = G(
    None, "All conversations", 7, (4, 1, 1, 1), 2, 1, 0.4286, 1, 5, 3, 0.4286,  # 3/7 bot-resolved, 3/7 handed
    (3.0, 4.6),  # [2, 2, 3, 4, 5]: 4 + 0.6 * 1
    (210.0, 282.0),  # [120, 300]: 120 + 0.9 * 180
    (30.0, 54.0),  # [0, 60]
    (63.0, 880.0),  # resolved s1 s2 s3 s4 t6: [2, 3, 63, 400, 1200]: 400 + 0.6 * 800
    5, 0.4, 3.0, 0.8,  # rated 4 1 2 5 3: 15 / 5; s2 s4 t5 t6 of the 5 asked
    (2, 3.5, 0.5),  # s1 (2), s3 (5)
    ("0.0873", "0.012471", "0.01746"),  # 0.0873 / 7 = 0.0124714..; / 5
)  # fmt: skip

S4 = (1, (0, 1, 0, 0), 0, 0, 0.0, 1, 1, 1, 1.0, (5.0, 5.0), (120.0, 120.0), (60.0, 60.0), (400.0, 400.0),
      1, 0.0, 1.0, 1.0, (0, None, None), ("0.03", "0.03", "0.03"))  # fmt: skip
T5 = (1, (0, 0, 1, 0), 0, 0, 0.0, 0, 0, 1, 1.0, N, N, N, N,  # no bot reply, no claim, no person; not resolved
      1, 0.0, 2.0, 1.0, (0, None, None), ("0.001", "0.001", None))  # fmt: skip
T6 = (1, (0, 0, 0, 1), 0, 0, 0.0, 0, 1, 1, 1.0, N, (300.0, 300.0), (0.0, 0.0), (1200.0, 1200.0),
      1, 1.0, 5.0, 1.0, (0, None, None), ("0.005", "0.005", "0.005"))  # fmt: skip
S7 = (1, (1, 0, 0, 0), 0, 0, 0.0, 0, 0, 0, 0.0, (2.0, 2.0), N, N, N,
      1, 0.0, 3.0, None,  # rated 3, never asked: no response rate
      (0, None, None), ("0.002", "0.002", None))  # fmt: skip

S_OVERVIEW: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "resolution": [
        G("bot", "Bot", 4, (4, 0, 0, 0), 2, 1, 0.75, 0, 3, 0, 0.0,  # s1 s2 s3 s7
          (2.5, 3.7),  # [2, 2, 3, 4]: (2 + 3) / 2; 3 + 0.7 * 1
          N, N,
          (3.0, 51.0),  # resolved s1 s2 s3: [2, 3, 63]: 3 + 0.8 * 60
          2, 0.5, 3.5, 0.5,  # rated s2 (4), s7 (3); asked s2 s3, s2 rated
          (2, 3.5, 0.5), ("0.0513", "0.012825", "0.0171")),  # 0.0513 / 4; / 3
        G("handed_off", "Handed off (a person replied)", *S4),
        G("unanswered", "Handed off, no person replied", *T5),
        G("human", "Person only", *T6),
    ],
    "intent": [
        # s1 s2 t6
        G("payments_billing", "Payments and billing", 3, (2, 0, 0, 1), 2, 0, 0.6667, 0, 3, 1, 0.3333,
          (3.5, 3.9),  # [3, 4]
          (300.0, 300.0), (0.0, 0.0),
          (63.0, 972.6),  # [3, 63, 1200]: 63 + 0.8 * 1137
          2, 1.0, 4.5, 1.0,  # rated s2 (4), t6 (5), both asked
          (1, 2.0, 0.0),  # s1
          ("0.0488", "0.016267", "0.016267")),  # 0.0488 / 3
        # s3 s4 t5 ("Shipping": an intent without words of its own is shown as its key)
        G("shipping", "Shipping", 3, (1, 1, 1, 0), 0, 1, 0.3333, 1, 2, 2, 0.6667,
          (3.5, 4.7),  # [2, 5]: 2 + 0.9 * 3
          (120.0, 120.0), (60.0, 60.0),
          (201.0, 360.2),  # resolved s3 s4: [2, 400]: 2 + 0.9 * 398
          2, 0.0, 1.5, 0.6667,  # rated s4 (1), t5 (2); asked s3 s4 t5
          (1, 5.0, 1.0),  # s3
          ("0.0365", "0.012167", "0.01825")),  # 0.0365 / 3; / 2
        G(None, "Not triaged", *S7),
    ],
    "agent": [
        G("ag1", "Sam", *T6),
        G("ag2", "Kim", *S4),  # the last person to reply, not the one who claimed it
        G(None, "No agent", 5, (4, 0, 1, 0), 2, 1, 0.6, 0, 3, 1, 0.2,  # s1 s2 s3 t5 s7
          (2.5, 3.7), N, N, (3.0, 51.0),
          3, 0.3333, 3.0, 0.6667,  # rated s2 (4), t5 (2), s7 (3); asked s2 s3 t5
          (2, 3.5, 0.5), ("0.0523", "0.01046", "0.017433")),  # 0.0523 / 5; / 3
    ],
    "channel": [
        G("chat", "Chat", 5, (4, 1, 0, 0), 2, 1, 0.6, 1, 4, 1, 0.2,  # s1 s2 s3 s4 s7
          (3.0, 4.6),  # [2, 2, 3, 4, 5]
          (120.0, 120.0), (60.0, 60.0),
          (33.0, 298.9),  # [2, 3, 63, 400]: (3 + 63) / 2; 63 + 0.7 * 337
          3, 0.3333, 2.667, 0.6667,  # rated 4, 1, 3: 8 / 3; asked s2 s3 s4
          (2, 3.5, 0.5), ("0.0813", "0.01626", "0.020325")),  # 0.0813 / 5; / 4
        G("ticket", "Ticket", 2, (0, 0, 1, 1), 0, 0, 0.0, 0, 1, 2, 1.0,  # t5 t6
          N, (300.0, 300.0), (0.0, 0.0), (1200.0, 1200.0),
          2, 0.5, 3.5, 1.0, (0, None, None), ("0.006", "0.003", "0.006")),
    ],
    "day": [
        G("2026-11-16", "2026-11-16", 2, (2, 0, 0, 0), 2, 0, 1.0, 0, 2, 0, 0.0,  # s1 s2
          (3.5, 3.9), N, N,
          (33.0, 57.0),  # [3, 63]: 3 + 0.9 * 60
          1, 1.0, 4.0, 1.0, (1, 2.0, 0.0), ("0.0438", "0.0219", "0.0219")),
        G("2026-11-17", "2026-11-17", 2, (1, 1, 0, 0), 0, 1, 0.5, 1, 2, 1, 0.5,  # s3 s4
          (3.5, 4.7), (120.0, 120.0), (60.0, 60.0), (201.0, 360.2),
          1, 0.0, 1.0, 0.5,  # s4 rated 1; both asked
          (1, 5.0, 1.0), ("0.0355", "0.01775", "0.01775")),
        G("2026-11-18", "2026-11-18", *T5),
        G("2026-11-23", "2026-11-23", *T6),
        G("2026-11-24", "2026-11-24", *S7),
    ],
    "week": [
        G("2026-11-16", "2026-11-16", 5, (3, 1, 1, 0), 2, 1, 0.6, 1, 4, 2, 0.4,  # s1-s4, t5
          (3.5, 4.7),  # [2, 3, 4, 5]: (3 + 4) / 2; 4 + 0.7 * 1
          (120.0, 120.0), (60.0, 60.0), (33.0, 298.9),  # resolved s1-s4: [2, 3, 63, 400]
          3, 0.3333, 2.333, 0.75,  # rated 4, 1, 2: 7 / 3; asked s2 s3 s4 t5
          (2, 3.5, 0.5), ("0.0803", "0.01606", "0.020075")),  # 0.0803 / 5; / 4
        G("2026-11-23", "2026-11-23", 2, (1, 0, 0, 1), 0, 0, 0.0, 0, 1, 1, 0.5,  # t6 s7
          (2.0, 2.0), (300.0, 300.0), (0.0, 0.0), (1200.0, 1200.0),
          2, 0.5, 4.0, 1.0,  # rated 5 and 3; asked t6 only
          (0, None, None), ("0.007", "0.0035", "0.007")),
    ],
    "policy_version": [
        G("v3", "v3", 3, (3, 0, 0, 0), 2, 0, 0.6667, 0, 2, 0, 0.0,  # s1 s2 s7
          (3.0, 3.8),  # [2, 3, 4]: 3 + 0.8 * 1
          N, N, (33.0, 57.0),  # [3, 63]
          2, 0.5, 3.5, 1.0,  # rated s2 (4), s7 (3); asked s2 only
          (1, 2.0, 0.0), ("0.0458", "0.015267", "0.0229")),  # 0.0458 / 3; / 2
        G("v4", "v4", 3, (1, 1, 0, 1), 0, 1, 0.3333, 1, 3, 2, 0.6667,  # s3 s4 t6
          (3.5, 4.7), (210.0, 282.0), (30.0, 54.0),
          (400.0, 1040.0),  # [2, 400, 1200]: 400 + 0.8 * 800
          2, 0.5, 3.0, 0.6667,  # rated s4 (1), t6 (5); asked s3 s4 t6
          (1, 5.0, 1.0), ("0.0405", "0.0135", "0.0135")),
        G(None, "No policy version", *T5),
    ],
}  # fmt: skip

S_REASONS_TOTAL = R(None, "All conversations", 7, 3, LOW, URGENT, WANTS)
S_REASONS: dict[str, list[Any]] = {
    "none": [],
    "resolution": [
        R("bot", "Bot", 4, 0),
        R("handed_off", "Handed off (a person replied)", 1, 1, WANTS),
        R("unanswered", "Handed off, no person replied", 1, 1, URGENT),
        R("human", "Person only", 1, 1, LOW),
    ],
    "intent": [
        R("payments_billing", "Payments and billing", 3, 1, LOW),
        R("shipping", "Shipping", 3, 2, URGENT, WANTS),
        R(None, "Not triaged", 1, 0),
    ],
    "agent": [R("ag1", "Sam", 1, 1, LOW), R("ag2", "Kim", 1, 1, WANTS), R(None, "No agent", 5, 1, URGENT)],
    "channel": [R("chat", "Chat", 5, 1, WANTS), R("ticket", "Ticket", 2, 2, LOW, URGENT)],
    "day": [
        R("2026-11-16", "2026-11-16", 2, 0),
        R("2026-11-17", "2026-11-17", 2, 1, WANTS),
        R("2026-11-18", "2026-11-18", 1, 1, URGENT),
        R("2026-11-23", "2026-11-23", 1, 1, LOW),
        R("2026-11-24", "2026-11-24", 1, 0),
    ],
    "week": [R("2026-11-16", "2026-11-16", 5, 2, URGENT, WANTS), R("2026-11-23", "2026-11-23", 2, 1, LOW)],
    "policy_version": [
        R("v3", "v3", 3, 0),
        R("v4", "v4", 3, 2, LOW, WANTS),
        R(None, "No policy version", 1, 1, URGENT),
    ],
}

# Every ledger row created in the range, s0's too (usage counts calls, not conversations): 9 answer calls
# (one failed), 5 triage calls. Answer input: 100 + 8 * 50 (the failed call 0) = 450; cache writes s1 s3 s7
# 3 * 4000; cache reads s1 s2 s4 t6 4 * 4000; output 10 + 60 + 60 + 70 + 60 + 80 + 90 + 40 = 470.
S_USAGE_TOTAL = {
    **U("", "All model calls", 14, 1, (1550, 12000, 16000, 570), "1.0873", 0.5624),
    "key": None,
}  # 16000 / (450 + 12000 + 16000); cost: the facts' 0.0873 and s0's 1
S_USAGE: dict[str, list[dict[str, Any]]] = {
    "model_purpose": [
        U("answer/claude-sonnet-4-6", "answer · claude-sonnet-4-6", 9, 1, (450, 12000, 16000, 470), "1.0845",
          0.5624, purpose="answer", model="claude-sonnet-4-6"),
        U("triage/claude-haiku-4-5", "triage · claude-haiku-4-5", 5, 0, (1100, 0, 0, 100), "0.0028",
          None, purpose="triage", model="claude-haiku-4-5"),
    ],
    "day": [
        # s0 (at midnight), s1's four, s2's: answer input 100 + 4050 + 4050 + 4050, 8000 of it read
        U("2026-11-16", "2026-11-16", 6, 0, (650, 4000, 8000, 240), "1.0438", 0.6531),
        U("2026-11-17", "2026-11-17", 4, 1, (300, 4000, 4000, 160), "0.0355", 0.4938),  # 4000 / 8100
        U("2026-11-18", "2026-11-18", 1, 0, (300, 0, 0, 20), "0.001", None),  # t5's triage only
        U("2026-11-23", "2026-11-23", 2, 0, (250, 0, 4000, 110), "0.005", 0.9877),  # 4000 / 4050
        U("2026-11-24", "2026-11-24", 1, 0, (50, 4000, 0, 40), "0.002", 0.0),
    ],
}  # fmt: skip


# == the tests ==============================================================================================


@dataclass(frozen=True)
class Case:
    """A seed and every value worked out by hand from it."""

    seed: Callable[[AsyncEngine, Any], Awaitable[None]]
    start: datetime
    end: datetime
    now: datetime
    total: dict[str, Any]
    overview: dict[str, list[dict[str, Any]]]
    reasons_total: dict[str, Any]
    reasons: dict[str, list[Any]]
    usage_total: dict[str, Any]
    usage: dict[str, list[dict[str, Any]]]
    conversations: list[str]  # every conversation in the range


async def seed_facts(engine: AsyncEngine, redis: Any) -> None:
    await seed(engine)


CASES = {
    "facts": Case(seed_facts, FROM, TO, NOW, TOTAL, OVERVIEW, REASONS_TOTAL, REASONS, USAGE_TOTAL, USAGE,
                  [f"c{i}" for i in range(1, 9)]),
    "sources": Case(seed_sources, sources.FROM, sources.TO, sources.NOW, S_TOTAL, S_OVERVIEW,
                    S_REASONS_TOTAL, S_REASONS, S_USAGE_TOTAL, S_USAGE,
                    ["s1", "s2", "s3", "s4", "s7", "ticket-t5", "ticket-t6"]),
}  # fmt: skip


@pytest.fixture(params=list(CASES))
async def case(request: pytest.FixtureRequest, db_engine: AsyncEngine, redis_client: Any) -> Case:
    """The database seeded by one of the two seeds: fact rows written directly, or sources and the writer."""
    chosen = CASES[request.param]
    await chosen.seed(db_engine, redis_client)
    return chosen


# ranges of at most 31 days: exact percentiles (docs/metrics.md, "The daily rollup")
EXACT = {"percentiles": "exact", "percentile_error": None}


def bounds_of(case: Case) -> dict[str, Any]:
    return {"from": case.start.isoformat(), "to": case.end.isoformat()}


async def test_every_field_of_the_overview_for_every_cut(case: Case, db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    assert set(case.overview) == set(GROUP_BYS)
    for cut, groups in case.overview.items():
        report = await overview_report(sessions, start=case.start, end=case.end, group_by=cut, now=case.now)
        expected = {**bounds_of(case), "group_by": cut, "now": case.now.isoformat(), **EXACT,
                    "total": case.total, "groups": groups}  # fmt: skip
        assert flatten(report) == flatten(expected), cut


async def test_every_field_of_handoff_reasons_for_every_cut(case: Case, db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    assert set(case.reasons) == set(GROUP_BYS)
    for cut, groups in case.reasons.items():
        report = await handoff_reasons_report(sessions, start=case.start, end=case.end, group_by=cut)
        expected = {**bounds_of(case), "group_by": cut, "total": case.reasons_total, "groups": groups}
        assert flatten(report) == flatten(expected), cut


async def test_every_field_of_usage_for_every_cut(case: Case, db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    assert set(case.usage) == set(USAGE_GROUP_BYS)
    for cut, groups in case.usage.items():
        report = await usage_report(sessions, start=case.start, end=case.end, group_by=cut)
        expected = {**bounds_of(case), "group_by": cut, "total": case.usage_total, "groups": groups}
        assert flatten(report) == flatten(expected), cut


async def test_every_field_of_edits_for_every_cut(db_engine: AsyncEngine) -> None:
    await seed(db_engine)
    sessions = session_factory(db_engine)
    assert set(EDITS) == set(EDIT_GROUP_BYS)
    for cut, groups in EDITS.items():
        report = await edits_report(sessions, start=FROM, end=TO, group_by=cut)
        expected = {"from": FROM.isoformat(), "to": TO.isoformat(), "group_by": cut, "total": EDITS_TOTAL,
                    "groups": groups}  # fmt: skip
        assert flatten(report) == flatten(expected), cut


async def test_the_drill_down_lists_exactly_the_conversations_behind_every_count_of_every_group(
    case: Case, db_engine: AsyncEngine
) -> None:
    sessions = session_factory(db_engine)
    bounds = (case.start, case.end)

    async def rows(spec: DrillDown) -> list[dict[str, Any]]:
        page = await conversations_page(sessions, spec, now=case.now, limit=200)
        assert page["next_cursor"] is None
        return list(page["conversations"])

    everyone = sorted(r["conversation_id"] for r in await rows(group_spec(bounds, "none", None)))
    assert everyone == sorted(case.conversations)
    for cut, groups in {"none": [case.total], **case.overview}.items():
        if not groups:
            continue
        seen: list[str] = []
        for group in groups:
            key, flat = group["key"], flatten(group)
            specs = {name: group_spec(bounds, cut, key, o, resolution=r) for name, (o, r) in COUNTS.items()}
            specs.update({name: group_spec(bounds, cut, key, only) for name, only in RATE_SETS.items()})
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
    for cut, groups in {"none": [case.reasons_total], **case.reasons}.items():
        for group in groups:
            key = group["key"]
            handed = await rows(group_spec(bounds, cut, key, ("handed_off",)))
            assert len(handed) == group["handed_off"], (cut, key)
            for r in group["reasons"]:
                spec = group_spec(bounds, cut, key, ("handed_off",), reason=r["reason"] or "__none__")
                assert len(await rows(spec)) == r["count"], (cut, key, r["reason"])


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite has no session time zone
async def test_days_weeks_and_times_stay_utc_on_a_postgresql_server_in_another_time_zone(
    db_url: str, redis_client: Any
) -> None:
    """docs/metrics.md: days and weeks are UTC. A PostgreSQL server (or database) set to another time zone
    must not move a conversation to another day, or its times by hours: the sources seed, every cut."""
    admin = make_engine(db_url)
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        name = db_url.rsplit("/", 1)[1]
        # UTC+13 in November: s7 (11-24 11:00 UTC) is 11-25 00:00 there, s1 (11-16 09:00) is 11-16 22:00.
        await conn.execute(text(f"ALTER DATABASE \"{name}\" SET timezone = 'Pacific/Auckland'"))
    await admin.dispose()
    engine = make_engine(db_url)
    try:
        case = CASES["sources"]
        await case.seed(engine, redis_client)
        sessions = session_factory(engine)
        start, end, now = case.start, case.end, case.now
        for cut in ("none", "day", "week"):
            report = await overview_report(sessions, start=start, end=end, group_by=cut, now=now)
            expected = {**bounds_of(case), "group_by": cut, "now": case.now.isoformat(), **EXACT,
                        "total": case.total, "groups": case.overview[cut]}  # fmt: skip
            assert flatten(report) == flatten(expected), cut
        usage = await usage_report(sessions, start=case.start, end=case.end, group_by="day")
        assert [g["key"] for g in usage["groups"]] == [g["key"] for g in case.usage["day"]]
        page = await conversations_page(sessions, DrillDown(start=case.start, end=case.end), now=case.now)
        assert page["conversations"][0]["conversation_id"] == "s7"
        assert page["conversations"][0]["started_at"] == "2026-11-24T11:00:00+00:00"
    finally:
        await engine.dispose()


async def test_handoff_reasons_most_frequent_first_and_a_missing_reason_is_unknown(
    db_engine: AsyncEngine,
) -> None:
    """What neither seed has: a reason counted twice in a group, and a handoff without a reason."""
    day1, day2 = datetime(2026, 12, 1, 9, tzinfo=UTC), datetime(2026, 12, 2, 9, tzinfo=UTC)
    rows = [
        fact("h1", day1, resolution_type="unanswered", handoff_count=1, handoff_reason="urgent"),
        fact("h2", day1, channel="ticket", resolution_type="human", handoff_count=1, handoff_reason="urgent"),
        fact("h3", day2, resolution_type="unanswered", handoff_count=2),  # no reason recorded
        fact("h4", day2, resolution_type="handed_off", handoff_count=1, handoff_reason="wants_human"),
        fact("h5", day2),  # the bot's: not handed off
    ]
    async with db_engine.begin() as conn:
        await conn.execute(insert(ConversationFact.__table__), rows)  # type: ignore[attr-defined]
    sessions = session_factory(db_engine)
    start, end = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC)
    unknown = {"reason": None, "label": "Unknown", "count": 1}
    urgent_twice = {**URGENT, "count": 2}
    expected = {
        "day": [R("2026-12-01", "2026-12-01", 2, 2, urgent_twice),
                R("2026-12-02", "2026-12-02", 3, 2, WANTS, unknown)],  # a tie: by code, the unknown last
        "channel": [R("chat", "Chat", 4, 3, URGENT, WANTS, unknown), R("ticket", "Ticket", 1, 1, URGENT)],
    }  # fmt: skip
    for cut, groups in expected.items():
        report = await handoff_reasons_report(sessions, start=start, end=end, group_by=cut)
        assert flatten(report) == flatten({
            "from": start.isoformat(), "to": end.isoformat(), "group_by": cut,
            "total": R(None, "All conversations", 5, 4, urgent_twice, WANTS, unknown), "groups": groups,
        }), cut  # fmt: skip
    spec = group_spec((start, end), "day", "2026-12-02", ("handed_off",), reason="__none__")
    listed = await conversations_page(sessions, spec, now=end)
    assert [r["conversation_id"] for r in listed["conversations"]] == ["h3"]
