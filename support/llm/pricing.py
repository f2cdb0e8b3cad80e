"""The price table of every model Switchboard may call, and the one function that costs a call.

Prices are list prices in USD per million tokens (MTok), kept per model because newer models may use
other cache multipliers than today's 1.25x (5 min write), 2x (1 h write) and 0.1x (read).

Costs are exact :class:`~decimal.Decimal` arithmetic: token counts are integers and prices have at most
two decimals, so ``tokens * price / 1_000_000`` never rounds. (The ledger column keeps 8 decimals; only
batch rows with odd counts of tokens priced at x.x5 can carry a 9th decimal, which the column rounds.)

An unknown model raises :class:`~support.errors.UnpricedModel`: silently costing it at zero would make
the reports lie. The gateway catches it, records the row with cost 0 and logs an error, because the
answer itself must still reach the customer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from support.errors import UnpricedModel

TOKENS_PER_MTOK = Decimal(1_000_000)  # prices are quoted per million tokens
BATCH_DISCOUNT = Decimal("0.5")  # Message Batches: 50% off


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """USD per million tokens for each kind of token one model bills."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal


def _prices(input_: str, output: str, write_5m: str, write_1h: str, read: str) -> ModelPrices:
    return ModelPrices(Decimal(input_), Decimal(output), Decimal(write_5m), Decimal(write_1h), Decimal(read))


_HAIKU_4_5 = _prices("1", "5", "1.25", "2", "0.10")
_SONNET_4 = _prices("3", "15", "3.75", "6", "0.30")
_OPUS_4_6 = _prices("5", "25", "6.25", "10", "0.50")

#: Canonical model id -> prices. The ONE place prices live (docs/ANTHROPIC_API.md, Nov 2026).
PRICES: dict[str, ModelPrices] = {
    "claude-haiku-4-5-20251001": _HAIKU_4_5,
    "claude-sonnet-4-6": _SONNET_4,
    "claude-sonnet-4-5-20250929": _SONNET_4,
    "claude-opus-4-6": _OPUS_4_6,
    "claude-opus-4-7": _OPUS_4_6,
}

#: Alias -> canonical id, for the ids the API accepts besides the canonical one.
ALIASES: dict[str, str] = {
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
}

# A dated snapshot id ends in -YYYYMMDD; a snapshot we have not listed is priced as its family alias.
_DATE_SUFFIX = re.compile(r"-\d{8}$")


def resolve_model(model: str) -> str:
    """The canonical id whose prices apply to ``model`` (exact id, alias, or undated family of a snapshot).

    Raises :class:`UnpricedModel` when none applies.
    """
    if model in PRICES:
        return model
    if model in ALIASES:
        return ALIASES[model]
    undated = _DATE_SUFFIX.sub("", model)
    if undated != model:
        if undated in PRICES:
            return undated
        if undated in ALIASES:
            return ALIASES[undated]
    raise UnpricedModel(f"no prices for model {model!r}")


def prices_for(model: str) -> ModelPrices:
    """Prices of ``model`` after resolving aliases; raises :class:`UnpricedModel`."""
    return PRICES[resolve_model(model)]


class _CacheCreationLike(Protocol):
    @property
    def ephemeral_5m_input_tokens(self) -> int: ...
    @property
    def ephemeral_1h_input_tokens(self) -> int: ...


class UsageLike(Protocol):
    """The fields of the SDK's ``anthropic.types.Usage`` that pricing reads."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_creation_input_tokens(self) -> int | None: ...
    @property
    def cache_read_input_tokens(self) -> int | None: ...
    @property
    def cache_creation(self) -> _CacheCreationLike | None: ...


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Billed tokens of one call, split the way they are priced (and the way the ledger stores them)."""

    input: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output: int = 0

    @classmethod
    def from_usage(cls, usage: UsageLike | None) -> TokenCounts:
        """Split an SDK ``Usage``; writes without a TTL breakdown are 5-minute writes (the API default)."""
        if usage is None:
            return cls()
        written = usage.cache_creation_input_tokens or 0
        split = usage.cache_creation
        if split is not None:
            write_5m, write_1h = split.ephemeral_5m_input_tokens, split.ephemeral_1h_input_tokens
        else:
            write_5m, write_1h = written, 0
        return cls(
            input=usage.input_tokens or 0,
            cache_write_5m=write_5m,
            cache_write_1h=write_1h,
            cache_read=usage.cache_read_input_tokens or 0,
            output=usage.output_tokens or 0,
        )

    @property
    def total_input(self) -> int:
        """Every input token of the prompt, cached or not."""
        return self.input + self.cache_write_5m + self.cache_write_1h + self.cache_read


def cost(model: str, usage: UsageLike | TokenCounts | None, *, batch: bool = False) -> Decimal:
    """Exact USD cost of one call.

    ``batch=True`` halves every token kind (input, cache writes, cache reads and output): the batch
    discount applies to the whole bill and stacks with the cache multipliers, so halving the sum of the
    parts equals halving each part and no kind is treated differently.
    """
    prices = prices_for(model)
    counts = usage if isinstance(usage, TokenCounts) else TokenCounts.from_usage(usage)
    total = (
        counts.input * prices.input
        + counts.cache_write_5m * prices.cache_write_5m
        + counts.cache_write_1h * prices.cache_write_1h
        + counts.cache_read * prices.cache_read
        + counts.output * prices.output
    ) / TOKENS_PER_MTOK
    if batch:
        total *= BATCH_DISCOUNT
    return total
