"""Business hours and holidays, and whether anybody can answer: pure functions, no I/O, no clock.

A team's hours are a time zone, weekly opening ranges and holiday dates. They are written as JSON (the
``SWITCHBOARD_BUSINESS_HOURS`` setting and the admin API take the same object, see docs/configuration.md)::

    {"timezone": "Europe/Berlin",
     "weekly": {"mon": ["09:00-17:00"], "tue": ["09:00-12:00", "13:00-17:00"], "sat": ["10:00-14:00"]},
     "holidays": ["2026-12-24", "2026-12-25"]}

Ranges are local wall-clock times in the team's time zone, so opening at 09:00 stays 09:00 across a
daylight-saving change; ``24:00`` closes at midnight; a range never spans midnight (write it as two). A
day not named is closed; a holiday is closed all day. No hours at all (an empty setting) means always open:
then only presence decides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from support.errors import ValidationFailed

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
MINUTES_PER_DAY = 24 * 60
MAX_RANGES_PER_DAY = 8  # split shifts; more is a typo, not a schedule
MAX_HOLIDAYS = 500  # a few years of public holidays in several regions
MAX_TIMEZONE_CHARS = 64  # the longest IANA name is about 32
_RANGE = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
# The presence an agent chooses (``away`` is also what a closed console turns into).
PRESENCE_STATES = ("online", "away", "offline")


@dataclass(frozen=True)
class BusinessHours:
    """One team's opening hours: ``weekly[d]`` holds ``(start, end)`` minutes after local midnight for
    weekday ``d`` (0 = Monday), end exclusive."""

    timezone: str
    weekly: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[date]

    def to_json(self) -> dict[str, Any]:
        """The JSON form :func:`parse_hours` reads (what the admin API shows)."""
        return {
            "timezone": self.timezone,
            "weekly": {
                DAYS[d]: [f"{_hhmm(start)}-{_hhmm(end)}" for start, end in ranges]
                for d, ranges in enumerate(self.weekly)
                if ranges
            },
            "holidays": sorted(day.isoformat() for day in self.holidays),
        }


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_hours(value: str | Mapping[str, Any] | None) -> BusinessHours | None:
    """Business hours from their JSON text or object; None for no hours (always open).

    :class:`ValidationFailed` says what is wrong (an unknown time zone or day, a range that ends before it
    starts or overlaps another, a malformed date), so a bad setting stops the start and a bad admin request
    gets a 400.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValidationFailed(f"business hours are not JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise ValidationFailed("business hours must be a JSON object with timezone, weekly and holidays")
    unknown = set(value) - {"timezone", "weekly", "holidays"}
    if unknown:
        raise ValidationFailed(f"unknown business hours field(s): {', '.join(sorted(map(str, unknown)))}")
    zone = value.get("timezone")
    if not isinstance(zone, str) or not zone or len(zone) > MAX_TIMEZONE_CHARS:
        raise ValidationFailed("`timezone` must be an IANA time zone name such as Europe/Berlin")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(f"unknown time zone {zone!r}") from None
    weekly_in = value.get("weekly", {})
    if not isinstance(weekly_in, Mapping):
        raise ValidationFailed("`weekly` must map days (mon ... sun) to lists of HH:MM-HH:MM ranges")
    weekly: list[tuple[tuple[int, int], ...]] = [() for _ in DAYS]
    for day, ranges in weekly_in.items():
        if day not in DAYS:
            raise ValidationFailed(f"unknown day {day!r} in `weekly` (use {', '.join(DAYS)})")
        weekly[DAYS.index(day)] = _ranges(day, ranges)
    holidays_in = value.get("holidays", [])
    if not isinstance(holidays_in, list) or len(holidays_in) > MAX_HOLIDAYS:
        raise ValidationFailed(f"`holidays` must be a list of at most {MAX_HOLIDAYS} YYYY-MM-DD dates")
    holidays = set()
    for item in holidays_in:
        if not isinstance(item, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", item):
            raise ValidationFailed(f"holiday {item!r} is not a YYYY-MM-DD date")
        try:
            holidays.add(date.fromisoformat(item))
        except ValueError:
            raise ValidationFailed(f"holiday {item!r} is not a calendar date") from None
    return BusinessHours(timezone=zone, weekly=tuple(weekly), holidays=frozenset(holidays))


def _ranges(day: str, ranges: Any) -> tuple[tuple[int, int], ...]:
    if not isinstance(ranges, list) or len(ranges) > MAX_RANGES_PER_DAY:
        raise ValidationFailed(f"`weekly.{day}` must be a list of at most {MAX_RANGES_PER_DAY} ranges")
    out = []
    for item in ranges:
        match = _RANGE.match(item) if isinstance(item, str) else None
        if match is None:
            raise ValidationFailed(f"`weekly.{day}`: {item!r} is not an HH:MM-HH:MM range")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start >= MINUTES_PER_DAY or end > MINUTES_PER_DAY or (h2 == 24 and m2):
            raise ValidationFailed(f"`weekly.{day}`: {item!r} is outside 00:00-24:00")
        if end <= start:
            raise ValidationFailed(
                f"`weekly.{day}`: {item!r} ends before it starts (split a range across midnight in two)"
            )
        out.append((start, end))
    out.sort()
    for (_s1, e1), (s2, _e2) in pairwise(out):
        if s2 < e1:
            raise ValidationFailed(f"`weekly.{day}`: ranges overlap")
    return tuple(out)


def open_at(now: datetime, hours: BusinessHours | None) -> bool:
    """Whether ``hours`` are open at the aware instant ``now`` (no hours: always open)."""
    if hours is None:
        return True
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    local = now.astimezone(ZoneInfo(hours.timezone))
    if local.date() in hours.holidays:
        return False
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in hours.weekly[local.weekday()])


def available(
    now: datetime, hours: BusinessHours | None, presence: Mapping[str, str] | Iterable[str]
) -> bool:
    """Whether somebody can answer now: the team is open and at least one agent is ``online``.

    ``presence`` holds the agents' effective presence (agent id -> state, or just the states); ``away``
    and ``offline`` agents do not count.
    """
    states = presence.values() if isinstance(presence, Mapping) else presence
    return open_at(now, hours) and any(state == "online" for state in states)
