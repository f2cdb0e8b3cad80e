"""The benchmark's model-calls-only baselines (benchmarks/model_calls.py), against the real fake model API:
the paced pattern makes a turn's two requests per tagged turn, and its overhead is what is left of a turn's
time once the model's own time is taken out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks import harness as h
from benchmarks import model_calls
from benchmarks.suite import Bench
from support.testing.fake_anthropic import FakeAnthropic

LATENCY = h.LatencyModel(triage_ttft_s=0.03, triage_tps=2000.0, answer_ttft_s=0.08, answer_tps=1000.0)


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    fake = h.start_fake(LATENCY)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.mark.serial
async def test_paced_turns_make_both_calls_per_tag_and_leave_a_small_positive_overhead(
    fake: FakeAnthropic,
) -> None:
    results = await model_calls.paced(fake.url, conversations=3, turns=2, think_s=0.05)
    waits = h.model_wait_by_tag(fake.take_requests())

    assert sorted(r.tag for r in results) == [f"m3-{i}.{t}" for i in range(3) for t in range(2)]
    assert all(r.error is None and r.done is not None for r in results)
    # The warm-up turns reached the fake but are not measured.
    assert sum(tag.startswith("mwarm-") for tag in waits) == model_calls.WARM_UP_TURNS
    for r in results:
        w = waits[r.tag]
        assert w["requests"] == 2  # triage and the streamed answer
        assert w["answer_ttft_s"] >= LATENCY.answer_ttft_s
        assert r.done is not None
        overhead = r.done - r.sent - w["model_wait_s"]
        # The model's time (the answer's TTFT at least) is inside the turn and taken out of it.
        assert r.done - r.sent > LATENCY.answer_ttft_s
        assert overhead >= 0  # "small" is judged on the median below: one scheduler hiccup is not a finding

    row = Bench._overhead_row(3, results, waits, 0.0)
    assert row["measured_turns"] == 6
    assert 0 < row["overhead_ms"]["p50"] < LATENCY.answer_ttft_s * 1000


async def test_ceiling_runs_every_turn(fake: FakeAnthropic) -> None:
    await model_calls.ceiling(fake.url, turns=12, concurrency=4)
    tags = {h.request_tag(record) for record in fake.take_requests()}
    assert tags == {f"c{i}" for i in range(12)}
