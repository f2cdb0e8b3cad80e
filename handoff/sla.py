"""SLA targets of a handoff: first agent reply and resolution, each counted from the handoff.

A handoff carries its team's targets as they were when it was queued (in the queue item, and in
``handoff_record`` for reports), so changing a team's targets does not turn past handoffs into breaches.
Pure functions: the clock (Redis time, one for every process) is passed in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from handoff.queue import QueueItem


def ms_of(iso: str | None) -> int | None:
    """Epoch milliseconds of an ISO 8601 time (None stays None)."""
    return None if iso is None else int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clock(
    target_s: int | None, start_ms: int | None, met_ms: int | None, now_ms: int
) -> dict[str, Any] | None:
    """One target's state: ``{"target_s", "due_at", "met_at", "left_s", "breached"}`` (``left_s`` is
    negative once overdue and frozen when met); None without a target or a start."""
    if not target_s or start_ms is None:
        return None
    due = start_ms + target_s * 1000
    at = met_ms if met_ms is not None else now_ms
    return {
        "target_s": target_s,
        "due_at": _iso(due),
        "met_at": _iso(met_ms) if met_ms is not None else None,
        "left_s": round((due - at) / 1000),
        "breached": at > due,
    }


def sla_json(item: QueueItem, now_ms: int) -> dict[str, Any]:
    """The ``sla`` object of a queue or Mine item: ``first_reply`` and ``resolution`` clocks (null: no
    target). Resolution is met only when the handoff ends, when the item leaves the queue."""
    targets = item.fields.get("sla") or {}
    start = ms_of(item.waiting_since)
    return {
        "first_reply": clock(targets.get("first_reply_s"), start, ms_of(item.first_reply_at), now_ms),
        "resolution": clock(targets.get("resolution_s"), start, None, now_ms),
    }
