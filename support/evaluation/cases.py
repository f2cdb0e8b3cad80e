"""The evaluation case file: one JSON object per line (docs/protocol.md, "Knowledge and evaluation").

Parsing is strict and reports every bad line by its number, so a CI gate that points at a broken file
says where it is broken instead of evaluating half of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.errors import ValidationFailed

MAX_CASES = 10_000  # a case file is a test suite, not a data set; its report must stay readable
MAX_TURNS = 20  # the pipeline's bot hands off long before (SWITCHBOARD_HANDOFF_MAX_BOT_TURNS)
MAX_TEXT_CHARS = 8_000  # what the widget accepts in one customer message


class CasesInvalid(ValidationFailed):
    """The case file cannot be read or a line is not a valid case (``switchboard eval`` exits 2; an
    uploaded case file is refused with 400)."""

    code = "cases_invalid"

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "; ".join(problems[:20]) + (f" (and {len(problems) - 20} more)" if len(problems) > 20 else "")
        )
        self.problems = problems


@dataclass(frozen=True)
class Expect:
    """What a case expects; every field optional (no expectation: not counted in precision or recall)."""

    handoff: bool | None = None
    intent: str | None = None
    must_include: tuple[str, ...] = ()
    must_not_include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    """One case: an id, the customer's turns in order, its expectations, and optionally a reference reply
    (what a person answered: the judge reads it as an example of a good answer, not as words to match)."""

    id: str
    turns: tuple[str, ...]
    expect: Expect = field(default_factory=Expect)
    reference: str | None = None


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{what} must be a list of non-empty strings")
    return tuple(value)


def parse_case(raw: Any) -> Case:
    """One case from its decoded JSON; ``ValueError`` with a plain reason when it is not one."""
    if not isinstance(raw, dict):
        raise ValueError("a case is a JSON object")
    unknown = set(raw) - {"id", "turns", "expect", "reference"}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}")
    case_id = raw.get("id")
    if not isinstance(case_id, str) or not case_id.strip() or len(case_id) > 200:
        raise ValueError('"id" must be a non-empty string (at most 200 characters)')
    turns = _strings(raw.get("turns"), '"turns"')
    if not turns or len(turns) > MAX_TURNS:
        raise ValueError(f'"turns" must hold 1 to {MAX_TURNS} customer messages')
    if any(len(t) > MAX_TEXT_CHARS for t in turns):
        raise ValueError(f"a turn is longer than {MAX_TEXT_CHARS} characters")
    expect_raw = raw.get("expect", {})
    if not isinstance(expect_raw, dict):
        raise ValueError('"expect" must be an object')
    unknown = set(expect_raw) - {"handoff", "intent", "must_include", "must_not_include"}
    if unknown:
        raise ValueError(f'unknown "expect" field(s) {sorted(unknown)}')
    handoff = expect_raw.get("handoff")
    if handoff is not None and not isinstance(handoff, bool):
        raise ValueError('"expect.handoff" must be true or false')
    intent = expect_raw.get("intent")
    if intent is not None and not isinstance(intent, str):
        raise ValueError('"expect.intent" must be a string')
    expect = Expect(
        handoff=handoff,
        intent=intent,
        must_include=_strings(expect_raw.get("must_include", []), '"expect.must_include"'),
        must_not_include=_strings(expect_raw.get("must_not_include", []), '"expect.must_not_include"'),
    )
    reference = raw.get("reference")
    if reference is not None and (
        not isinstance(reference, str) or not reference.strip() or len(reference) > MAX_TEXT_CHARS
    ):
        raise ValueError(f'"reference" must be a non-empty string of at most {MAX_TEXT_CHARS} characters')
    return Case(id=case_id, turns=turns, expect=expect, reference=reference)


def parse_cases(text: str, *, source: str = "cases") -> list[Case]:
    """Every case of a JSONL text (blank lines skipped); :class:`CasesInvalid` naming each bad line."""
    cases: list[Case] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = parse_case(json.loads(line))
        except json.JSONDecodeError as exc:
            problems.append(f"{source} line {number}: not JSON ({exc.msg}, column {exc.colno})")
            continue
        except ValueError as exc:
            problems.append(f"{source} line {number}: {exc}")
            continue
        if case.id in seen:
            problems.append(f"{source} line {number}: id {case.id!r} already used on line {seen[case.id]}")
            continue
        seen[case.id] = number
        cases.append(case)
    if not problems and not cases:
        problems.append(f"{source}: no cases")
    if len(cases) > MAX_CASES:
        problems.append(f"{source}: {len(cases)} cases, more than {MAX_CASES}")
    if problems:
        raise CasesInvalid(problems)
    return cases


def load_cases(path: Path) -> list[Case]:
    """The cases of a JSONL file; :class:`CasesInvalid` when it is unreadable or a line is bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CasesInvalid([f"cannot read {path}: {exc}"]) from exc
    return parse_cases(text, source=str(path))
