"""Pricing arithmetic against figures computed by hand from the published per-MTok prices."""

from __future__ import annotations

from decimal import Decimal

import pytest
from anthropic.types import CacheCreation, Usage

from support.errors import UnpricedModel
from support.llm.pricing import TokenCounts, cost, resolve_model

# 1,000 input + 2,000 write-5m + 3,000 write-1h + 4,000 read + 500 output tokens
COUNTS = TokenCounts(input=1000, cache_write_5m=2000, cache_write_1h=3000, cache_read=4000, output=500)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # 1000*1 + 2000*1.25 + 3000*2 + 4000*0.10 + 500*5 = 1000+2500+6000+400+2500 = 12400 -> 0.0124
        ("claude-haiku-4-5", Decimal("0.0124")),
        ("claude-haiku-4-5-20251001", Decimal("0.0124")),
        # 1000*3 + 2000*3.75 + 3000*6 + 4000*0.30 + 500*15 = 3000+7500+18000+1200+7500 = 37200 -> 0.0372
        ("claude-sonnet-4-6", Decimal("0.0372")),
        ("claude-sonnet-4-5-20250929", Decimal("0.0372")),
        # 1000*5 + 2000*6.25 + 3000*10 + 4000*0.50 + 500*25 = 5000+12500+30000+2000+12500 = 62000 -> 0.062
        ("claude-opus-4-6", Decimal("0.062")),
        ("claude-opus-4-7", Decimal("0.062")),
    ],
)
def test_cost_matches_hand_computed_figure_for_each_model(model: str, expected: Decimal) -> None:
    assert cost(model, COUNTS) == expected


def test_batch_halves_every_token_kind() -> None:
    assert cost("claude-haiku-4-5", COUNTS, batch=True) == Decimal("0.0062")
    # one 5m write token on opus in a batch: 6.25 / 1e6 / 2, exact (no rounding)
    assert cost("claude-opus-4-6", TokenCounts(cache_write_5m=1), batch=True) == Decimal("0.000003125")


def test_sdk_usage_splits_cache_writes_by_ttl() -> None:
    usage = Usage(
        input_tokens=10,
        output_tokens=20,
        cache_creation_input_tokens=300,
        cache_read_input_tokens=1000,
        cache_creation=CacheCreation(ephemeral_5m_input_tokens=100, ephemeral_1h_input_tokens=200),
    )
    # sonnet: 10*3 + 100*3.75 + 200*6 + 1000*0.3 + 20*15 = 30+375+1200+300+300 = 2205 -> 0.002205
    assert cost("claude-sonnet-4-6", usage) == Decimal("0.002205")
    assert TokenCounts.from_usage(usage) == TokenCounts(10, 100, 200, 1000, 20)


def test_cache_writes_without_ttl_breakdown_are_priced_as_5m() -> None:
    usage = Usage(
        input_tokens=0, output_tokens=0, cache_creation_input_tokens=1000, cache_read_input_tokens=None
    )
    # haiku: 1000 * 1.25 / 1e6
    assert cost("claude-haiku-4-5", usage) == Decimal("0.00125")


def test_unlisted_dated_snapshot_resolves_to_its_family() -> None:
    assert resolve_model("claude-sonnet-4-6-20261201") == "claude-sonnet-4-6"
    assert resolve_model("claude-haiku-4-5-20260101") == "claude-haiku-4-5-20251001"


def test_unknown_model_raises_unpriced() -> None:
    with pytest.raises(UnpricedModel):
        cost("gpt-4o", COUNTS)
