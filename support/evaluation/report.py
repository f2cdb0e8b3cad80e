"""The evaluation report: summary metrics, ``report.json`` (docs/protocol.md shape, plus added fields),
a readable ``report.md``, the ``--compare`` diff and the ``--fail-under`` gate. Pure but for the writes.

Metrics (docs/evaluation.md):

- ``handoff_precision``: among cases whose ``expect.handoff`` is set, the handed-off cases that expected a
  handoff divided by all handed-off cases; None when none of them was handed off.
- ``handoff_recall``: among the same cases, the handed-off cases that expected a handoff divided by the
  cases that expected one; None when none expected one.
- ``judge_pass_rate``: passed verdicts divided by graded cases (the answered ones); None when none was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from support.evaluation.cases import Case
from support.evaluation.runner import CaseResult

METRICS = ("handoff_precision", "handoff_recall", "judge_pass_rate")
COST_DIGITS = Decimal("0.000001")


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def summarize(cases: list[Case], results: list[CaseResult]) -> dict[str, Any]:
    """The ``summary`` object of report.json."""
    expected = [(c, r) for c, r in zip(cases, results, strict=True) if c.expect.handoff is not None]
    handed = [(c, r) for c, r in expected if r.outcome == "handed_off"]
    right = [c for c, _ in handed if c.expect.handoff]
    wanted = [c for c, _ in expected if c.expect.handoff]
    graded = [r for r in results if r.judge is not None]
    cost = sum((r.cost_usd for r in results), Decimal(0))
    return {
        "cases": len(results),
        "answered": sum(r.outcome == "answered" for r in results),
        "handed_off": sum(r.outcome == "handed_off" for r in results),
        "handoff_precision": _ratio(len(right), len(handed)),
        "handoff_recall": _ratio(len(right), len(wanted)),
        "judge_pass_rate": _ratio(sum(r.judge.passed for r in graded if r.judge), len(graded)),
        "cost_usd": float(cost.quantize(COST_DIGITS)),
        # Added fields: the counts behind the ratios, so a reader can check them.
        "with_handoff_expectation": len(expected),
        "expected_handoffs": len(wanted),
        "correct_handoffs": len(right),
        "judged": len(graded),
        "judge_passed": sum(r.judge.passed for r in graded if r.judge),
    }


def case_json(result: CaseResult) -> dict[str, Any]:
    out: dict[str, Any] = {"id": result.id, "outcome": result.outcome}
    if result.reason is not None:
        out["reason"] = result.reason
    out["replies"] = result.replies
    # Added field: per reply, the knowledge sections it cites ({"document", "section", "cited_text", "url"?}).
    out["sources"] = result.sources
    if result.judge is not None:
        out["judge"] = result.judge.to_json()
    out["cost_usd"] = float(result.cost_usd.quantize(COST_DIGITS))
    out["intent"] = result.intent
    return out


def compare(base: list[CaseResult], other: list[CaseResult]) -> list[dict[str, Any]]:
    """Cases whose outcome or judge verdict differs between two runs of the same cases (same order)."""
    changed = []
    for a, b in zip(base, other, strict=True):
        verdict_a = a.judge.passed if a.judge else None
        verdict_b = b.judge.passed if b.judge else None
        if a.outcome != b.outcome or verdict_a != verdict_b:
            changed.append({
                "id": a.id,
                "outcome": a.outcome, "other_outcome": b.outcome,
                "reason": a.reason, "other_reason": b.reason,
                "judge_pass": verdict_a, "other_judge_pass": verdict_b,
                "other_judge_reason": b.judge.reason if b.judge else None,
            })  # fmt: skip
    return changed


@dataclass
class Report:
    """A finished evaluation: what report.json holds."""

    cases: list[Case]
    results: list[CaseResult]
    knowledge_version: str
    batch: bool
    compare_version: str | None = None
    compare_results: list[CaseResult] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cases": [case_json(r) for r in self.results],
            "summary": summarize(self.cases, self.results),
            "knowledge_version": self.knowledge_version,
            "batch": self.batch,
        }
        if self.compare_results is not None:
            out["compare"] = {
                "knowledge_version": self.compare_version,
                "summary": summarize(self.cases, self.compare_results),
                "changed": compare(self.results, self.compare_results),
            }
        return out


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "pass" if value else "fail"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value < 1 or value != int(value) else str(int(value))
    return str(value)


def to_markdown(data: dict[str, Any]) -> str:
    """The readable report (Markdown) of a report.json object."""
    s = data["summary"]
    how = "Message Batches" if data["batch"] else "streaming turn pipeline"
    lines = [
        "# Evaluation report",
        "",
        f"Knowledge version `{data['knowledge_version']}`, {how}.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    keys = ("cases", "answered", "handed_off", "handoff_precision", "handoff_recall", "judge_pass_rate")
    lines += [f"| {key} | {_fmt(s[key])} |" for key in keys]
    lines.append(f"| cost_usd | {s['cost_usd']:.6f} |")
    lines += [
        "",
        f"Handoffs: {s['correct_handoffs']} correct of {s['handed_off']} handed off "
        f"({s['with_handoff_expectation']} cases state an expectation, "
        f"{s['expected_handoffs']} expect a handoff). "
        f"Judge: {s['judge_passed']} of {s['judged']} answered cases pass.",
        "",
    ]
    if "compare" in data:
        cmp_ = data["compare"]
        lines += [f"## Compared with version `{cmp_['knowledge_version']}`", ""]
        lines.append("| metric | this version | other version |")
        lines.append("|---|---|---|")
        for key in ("answered", "handed_off", *METRICS, "cost_usd"):
            lines.append(f"| {key} | {_fmt(s[key])} | {_fmt(cmp_['summary'][key])} |")
        lines += ["", f"Cases changed: {len(cmp_['changed'])}.", ""]
        if cmp_["changed"]:
            lines += ["| case | outcome | other outcome | judge | other judge |", "|---|---|---|---|---|"]
            for c in cmp_["changed"]:
                lines.append(
                    f"| {_cell(c['id'], 60)} | {c['outcome']} {c['reason'] or ''} | "
                    f"{c['other_outcome']} {c['other_reason'] or ''} | {_fmt(c['judge_pass'])} | "
                    f"{_fmt(c['other_judge_pass'])} |"
                )
            lines.append("")
    lines += ["## Cases", "", "| case | outcome | judge | reason | first reply | sources | cost (USD) |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in data["cases"]:
        judge = c.get("judge")
        verdict = "—" if judge is None else ("pass" if judge["pass"] else "**fail**")
        why = judge["reason"] if judge else (c.get("reason") or "")
        reply = c["replies"][0] if c["replies"] else ""
        first_sources = (c.get("sources") or [[]])[0]
        cited = "; ".join(f"{s['document']} › {s['section']}" for s in first_sources)
        lines.append(
            f"| {_cell(c['id'], 60)} | {c['outcome']} | {verdict} | {_cell(why)} | {_cell(reply)} | "
            f"{_cell(cited)} | {c['cost_usd']:.6f} |"
        )
    return "\n".join(lines) + "\n"


def write(report: Report, out_dir: Path) -> dict[str, Any]:
    """Write DIR/report.json and DIR/report.md; the JSON object written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = report.to_json()
    (out_dir / "report.json").write_text(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out_dir / "report.md").write_text(to_markdown(data), encoding="utf-8")
    return data


def parse_threshold(text: str) -> tuple[str, float]:
    """``METRIC=VALUE`` of ``--fail-under``; ``ValueError`` naming what is wrong."""
    name, sep, value = text.partition("=")
    if not sep or name not in METRICS:
        raise ValueError(
            f"--fail-under {text!r}: expected METRIC=VALUE with METRIC one of {', '.join(METRICS)}"
        )
    try:
        number = float(value)
    except ValueError as exc:
        raise ValueError(f"--fail-under {text!r}: {value!r} is not a number") from exc
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"--fail-under {text!r}: the value must be between 0 and 1")
    return name, number


def below(summary: dict[str, Any], thresholds: list[tuple[str, float]]) -> list[str]:
    """The thresholds a summary misses (an undefined metric misses its threshold: nothing was shown)."""
    misses = []
    for name, minimum in thresholds:
        value = summary.get(name)
        if value is None or value < minimum:
            misses.append(f"{name} = {_fmt(value)} < {minimum}")
    return misses
