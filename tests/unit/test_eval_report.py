"""The evaluation report's pure parts: case parsing, metrics, the comparison and the gate."""

from __future__ import annotations

from decimal import Decimal

import pytest

from support.evaluation.cases import CasesInvalid, parse_cases
from support.evaluation.judge import Verdict
from support.evaluation.report import below, compare, parse_threshold, summarize
from support.evaluation.runner import CaseResult

CASES = parse_cases(
    '{"id": "a", "turns": ["hi"], "expect": {"handoff": true}}\n'
    "\n"
    '{"id": "b", "turns": ["hi"], "expect": {"handoff": false}}\n'
    '{"id": "c", "turns": ["hi"]}\n'
)


def test_metrics_are_none_when_undefined_and_exact_otherwise() -> None:
    answered = [CaseResult(id=c.id, judge=Verdict(True, "ok"), cost_usd=Decimal("0.01")) for c in CASES]
    summary = summarize(CASES, answered)
    assert (summary["handoff_precision"], summary["handoff_recall"], summary["judge_pass_rate"]) == (
        None,
        0.0,
        1.0,
    )
    assert summary["cost_usd"] == 0.03
    handed = [CaseResult(id=c.id, outcome="handed_off", reason="low_confidence") for c in CASES]
    summary = summarize(CASES, handed)
    # c has no expectation: not counted; a and b handed off, only a expected it.
    assert (summary["handoff_precision"], summary["handoff_recall"], summary["judge_pass_rate"]) == (
        0.5,
        1.0,
        None,
    )
    assert below(summary, [("judge_pass_rate", 0.0), ("handoff_recall", 1.0)]) == [
        "judge_pass_rate = n/a < 0.0"
    ]


def test_compare_lists_only_the_cases_whose_outcome_or_verdict_changed() -> None:
    base = [
        CaseResult(id="a", judge=Verdict(True, "ok")),
        CaseResult(id="b", outcome="handed_off", reason="low_confidence"),
        CaseResult(id="c", judge=Verdict(True, "ok")),
    ]
    other = [
        CaseResult(id="a", judge=Verdict(False, "invented a fee")),
        CaseResult(id="b", outcome="handed_off", reason="wants_human"),
        CaseResult(id="c", judge=Verdict(True, "still ok")),
    ]
    changed = compare(base, other)
    assert [(c["id"], c["judge_pass"], c["other_judge_pass"]) for c in changed] == [("a", True, False)]


def test_bad_lines_and_thresholds_are_named() -> None:
    with pytest.raises(CasesInvalid) as caught:
        parse_cases(
            '{"id": "a", "turns": ["x"]}\n{"id": "a", "turns": ["y"]}\n{"id": "b", "turns": ["z"], "x": 1}\n'
        )
    assert caught.value.problems == [
        "cases line 2: id 'a' already used on line 1",
        "cases line 3: unknown field(s) ['x']",
    ]
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_threshold("judge_pass_rate=80")
