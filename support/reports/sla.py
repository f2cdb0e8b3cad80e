"""The SLA report: per team, how many handoffs met or breached their first-reply and resolution targets.

Read live from ``handoff_record`` (one row per stay with people), which carries the team and the targets in
force when the conversation was handed off (migration 0018), so changing a team's targets does not rewrite
history. A target is *met* when the first agent reply (or the end, for resolution: resolved, returned to
the bot or closed by the customer) came within it, *breached* when it came later or has not come and the
target has passed, *pending* while it has not come and the target has not passed. Handoffs from before
targets existed (null targets) are counted as ``untracked``. Nothing here is kept in the rollup (it reads
no rollup table and adds none), so the rollup's sums are untouched.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from support.db.models import HandoffRecord, as_utc

OUTCOMES = ("met", "breached", "pending")


def verdict(queued: datetime, done: datetime | None, target_s: int | None, now: datetime) -> str | None:
    """``met``, ``breached`` or ``pending`` for one target; None without a target."""
    if not target_s:
        return None
    due = as_utc(queued).timestamp() + target_s
    if done is not None:
        return "met" if as_utc(done).timestamp() <= due else "breached"
    return "breached" if now.timestamp() > due else "pending"


@dataclass
class TeamSla:
    """One team's counts."""

    team: str
    handoffs: int = 0
    untracked: int = 0
    first_reply: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    resolution: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def to_json(self) -> dict[str, Any]:
        """Counts and the breach rate of each target (breached / decided, null when none is decided)."""

        def rate(counts: dict[str, int]) -> float | None:
            decided = counts["met"] + counts["breached"]
            return round(counts["breached"] / decided, 4) if decided else None

        return {
            "team": self.team, "handoffs": self.handoffs, "untracked": self.untracked,
            "first_reply": {**self.first_reply, "breach_rate": rate(self.first_reply)},
            "resolution": {**self.resolution, "breach_rate": rate(self.resolution)},
        }  # fmt: skip


async def sla_report(
    sessions: async_sessionmaker[AsyncSession],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Handoffs queued in ``[start, end)``, per team and in total."""
    r = HandoffRecord
    columns = (
        r.team_id,
        r.queued_at,
        r.first_response_at,
        r.ended_at,
        r.sla_first_reply_s,
        r.sla_resolution_s,
    )
    query = select(*(col(c) for c in columns))
    if start is not None:
        query = query.where(col(HandoffRecord.queued_at) >= start)
    if end is not None:
        query = query.where(col(HandoffRecord.queued_at) < end)
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    moment = now or datetime.now(UTC)
    teams: dict[str, TeamSla] = {}
    total = TeamSla(team="total")
    for row in rows:
        team_id, queued, replied, ended, first_s, resolution_s = tuple(row)
        team = teams.setdefault(team_id or "default", TeamSla(team=team_id or "default"))
        for into in (team, total):
            into.handoffs += 1
            if not first_s and not resolution_s:
                into.untracked += 1
            for counts, done, target in (
                (into.first_reply, replied, first_s),
                (into.resolution, ended, resolution_s),
            ):
                outcome = verdict(queued, done, target, moment)
                if outcome is not None:
                    counts[outcome] += 1
    return {
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "teams": [teams[k].to_json() for k in sorted(teams)],
        "total": total.to_json(),
    }


def sla_csv(report: dict[str, Any]) -> str:
    """One row per team, then ``total``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head = ["team", "handoffs", "untracked"]
    for target in ("first_reply", "resolution"):
        head += [f"{target}_{k}" for k in (*OUTCOMES, "breach_rate")]
    writer.writerow(head)
    for row in [*report["teams"], report["total"]]:
        cells = [row["team"], row["handoffs"], row["untracked"]]
        for target in ("first_reply", "resolution"):
            rate = row[target]["breach_rate"]
            cells += [*(row[target][k] for k in OUTCOMES), "" if rate is None else rate]
        writer.writerow(cells)
    return out.getvalue()
