"""Business hours and availability: pure functions, fed instants (daylight-saving changes and holidays)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from support.errors import ValidationFailed
from support.hours import available, open_at, parse_hours

BERLIN = {
    "timezone": "Europe/Berlin",
    "weekly": {"mon": ["09:00-17:00"], "tue": ["09:00-12:00", "13:00-17:00"], "sat": ["10:00-24:00"]},
    "holidays": ["2026-12-25"],
}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_open_inside_and_closed_outside_a_days_range() -> None:
    hours = parse_hours(BERLIN)
    # Monday 2026-01-05, Berlin is UTC+1 in winter
    assert open_at(utc(2026, 1, 5, 8, 0), hours)  # 09:00 local: opens
    assert not open_at(utc(2026, 1, 5, 7, 59), hours)  # 08:59 local
    assert open_at(utc(2026, 1, 5, 15, 59), hours)  # 16:59 local
    assert not open_at(utc(2026, 1, 5, 16, 0), hours)  # 17:00 local: the end is exclusive


def test_a_lunch_break_between_two_ranges_is_closed() -> None:
    hours = parse_hours(BERLIN)
    assert open_at(utc(2026, 1, 6, 10, 59), hours)  # Tuesday 11:59 local
    assert not open_at(utc(2026, 1, 6, 11, 30), hours)  # 12:30 local
    assert open_at(utc(2026, 1, 6, 12, 0), hours)  # 13:00 local


def test_days_not_named_are_closed_and_24_00_closes_at_midnight() -> None:
    hours = parse_hours(BERLIN)
    assert not open_at(utc(2026, 1, 4, 12, 0), hours)  # a Sunday
    assert open_at(utc(2026, 1, 10, 22, 59), hours)  # Saturday 23:59 local
    assert not open_at(utc(2026, 1, 10, 23, 0), hours)  # Sunday 00:00 local


def test_opening_follows_local_time_across_the_spring_daylight_saving_change() -> None:
    hours = parse_hours(BERLIN)
    # Monday 2026-03-23 (CET, UTC+1): 09:00 local is 08:00 UTC
    assert open_at(utc(2026, 3, 23, 8, 0), hours)
    assert not open_at(utc(2026, 3, 23, 7, 30), hours)
    # Clocks go forward on Sunday 2026-03-29. Monday 2026-03-30 (CEST, UTC+2): 09:00 local is 07:00 UTC
    assert open_at(utc(2026, 3, 30, 7, 0), hours)
    assert not open_at(utc(2026, 3, 30, 6, 59), hours)
    assert not open_at(utc(2026, 3, 30, 15, 0), hours)  # 17:00 local closes, an hour earlier in UTC


def test_opening_follows_local_time_across_the_autumn_change_in_another_zone() -> None:
    hours = parse_hours({"timezone": "America/New_York", "weekly": {"sun": ["01:00-02:00"]}})
    # 2026-11-01: 01:00-02:00 happens twice in New York (EDT, then EST); both are open
    assert open_at(utc(2026, 11, 1, 5, 30), hours)  # 01:30 EDT
    assert open_at(utc(2026, 11, 1, 6, 30), hours)  # 01:30 EST, an hour later
    assert not open_at(utc(2026, 11, 1, 7, 0), hours)  # 02:00 EST


def test_a_holiday_is_closed_all_day_in_the_teams_time_zone() -> None:
    hours = parse_hours({**BERLIN, "weekly": {"fri": ["00:00-24:00"]}})
    # Friday 2026-12-25 is a holiday, Friday 2026-12-18 is not
    assert open_at(utc(2026, 12, 18, 12, 0), hours)
    assert not open_at(utc(2026, 12, 25, 12, 0), hours)
    # 23:30 UTC on the 24th is already the 25th in Berlin; 23:30 UTC on the 25th is the 26th (a Saturday)
    assert not open_at(utc(2026, 12, 24, 23, 30), hours)
    assert open_at(utc(2026, 12, 18, 22, 30), hours)


def test_no_hours_means_always_open() -> None:
    assert parse_hours("") is None
    assert parse_hours("   ") is None
    assert open_at(utc(2026, 12, 25, 3, 0), None)


def test_available_needs_the_team_open_and_an_online_agent() -> None:
    hours = parse_hours(BERLIN)
    monday_noon = utc(2026, 1, 5, 11, 0)
    sunday_noon = monday_noon - timedelta(days=1)
    assert available(monday_noon, hours, {"a1": "online", "a2": "away"})
    assert not available(monday_noon, hours, {"a1": "away", "a2": "offline"})
    assert not available(monday_noon, hours, {})
    assert not available(sunday_noon, hours, {"a1": "online"})
    assert available(sunday_noon, None, ["online"])
    assert not available(sunday_noon, None, ["away"])


def test_the_json_form_round_trips() -> None:
    hours = parse_hours(BERLIN)
    assert hours is not None
    assert parse_hours(hours.to_json()) == hours
    assert hours.to_json()["weekly"]["tue"] == ["09:00-12:00", "13:00-17:00"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ({"weekly": {}}, "timezone"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"timezone": "UTC", "weekly": {"monday": ["09:00-17:00"]}}, "unknown day"),
        ({"timezone": "UTC", "weekly": {"mon": ["9-17"]}}, "HH:MM-HH:MM"),
        ({"timezone": "UTC", "weekly": {"mon": ["17:00-09:00"]}}, "ends before it starts"),
        ({"timezone": "UTC", "weekly": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "overlap"),
        ({"timezone": "UTC", "weekly": {"mon": ["24:30-24:45"]}}, "00:00-24:00"),
        ({"timezone": "UTC", "weekly": {"mon": "09:00-17:00"}}, "list"),
        ({"timezone": "UTC", "holidays": ["2026-02-30"]}, "calendar date"),
        ({"timezone": "UTC", "holidays": ["25.12.2026"]}, "YYYY-MM-DD"),
        ({"timezone": "UTC", "open": True}, "unknown business hours field"),
    ],
)
def test_bad_hours_are_refused_with_a_reason(value: object, says: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_hours(value)  # type: ignore[arg-type]
    assert says in caught.value.message


def test_the_setting_refuses_to_start_on_bad_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from support.settings import TeamSettings

    monkeypatch.setenv("SWITCHBOARD_BUSINESS_HOURS", '{"timezone": "Nowhere/City"}')
    with pytest.raises(ValidationError, match="unknown time zone"):
        TeamSettings()
    good = '{"timezone": "UTC", "weekly": {"mon": ["09:00-17:00"]}}'
    monkeypatch.setenv("SWITCHBOARD_BUSINESS_HOURS", good)
    assert parse_hours(TeamSettings().business_hours) is not None
