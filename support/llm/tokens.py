"""A local, calibrated token estimate: no network, no tokenizer.

Callers need a token count before a call (to budget a prompt, to decide when to summarise a conversation)
where asking the API (``count_tokens``) per decision would cost a round trip. The raw estimate is the
usual ~4 characters per token; :class:`TokenEstimator` corrects it with an exponential moving ratio of
actual/estimated tokens, fed from ``count_tokens`` results or from the ``usage`` of real calls, so the
estimate tracks the real tokenizer on this deployment's language mix. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 4.0  # the common rule of thumb for English prose; the ratio corrects the rest
DEFAULT_SMOOTHING = 0.2  # weight of one observation: ~5 observations to mostly follow a change
MIN_RATIO = 0.25  # bounds keep one absurd observation (e.g. a mis-attributed usage) from wrecking it
MAX_RATIO = 4.0


def estimate_tokens(text: str) -> int:
    """The uncalibrated estimate: ``ceil(chars / 4)`` (0 for empty text)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class TokenEstimator:
    """``estimate(text) = ceil(chars / 4 * ratio)``, with ``ratio`` learnt by :meth:`observe`."""

    def __init__(self, *, ratio: float = 1.0, smoothing: float = DEFAULT_SMOOTHING) -> None:
        if not 0.0 < smoothing <= 1.0:
            raise ValueError("smoothing must be in (0, 1]")
        if ratio <= 0:
            raise ValueError("ratio must be positive")
        self._ratio = min(max(ratio, MIN_RATIO), MAX_RATIO)
        self._smoothing = smoothing
        self.observations = 0

    @property
    def ratio(self) -> float:
        """Actual tokens per locally estimated token, as learnt so far (1.0 before any observation)."""
        return self._ratio

    def observe(self, local_estimate: int, actual_tokens: int) -> None:
        """Fold one (local estimate, actual count) pair into the ratio; empty or bogus pairs are ignored.

        ``local_estimate`` must be the *uncalibrated* :func:`estimate_tokens` of the same text the API
        counted, otherwise the ratio would correct its own correction.
        """
        if local_estimate <= 0 or actual_tokens <= 0:
            return
        sample = min(max(actual_tokens / local_estimate, MIN_RATIO), MAX_RATIO)
        if self.observations == 0:
            self._ratio = sample  # the first real measurement beats the 1.0 prior outright
        else:
            self._ratio += self._smoothing * (sample - self._ratio)
        self.observations += 1

    def estimate(self, text: str) -> int:
        """The calibrated estimate of ``text``'s tokens."""
        if not text:
            return 0
        return math.ceil(len(text) / CHARS_PER_TOKEN * self._ratio)
