"""Sliding-window summarisation: keep the verbatim window under a token budget.

After a turn, if summary + window exceed ``window_tokens`` (estimated locally, with the estimate
calibrated against the token counts the API reports for real answer calls), the oldest messages are
folded into the running summary by the triage model. It runs after the reply is delivered (never on the
customer's path), under a per-conversation lock taken without waiting (so at most one fold per slide),
and commits with a compare-and-set on the summary version (a lost race changes nothing). The event log
keeps every message: only the window start moves.

Folding slides the window by a chunk (down to half the budget), not one message per turn, so the cached
history prefix stays stable between slides.
"""

from __future__ import annotations

import logging

from support.conversation.store import ConversationStore, Event
from support.errors import ModelError
from support.llm.gateway import ModelGateway
from support.llm.summarize import summarize
from support.llm.tokens import TokenEstimator

log = logging.getLogger(__name__)

SUMMARY_LOCK_TTL_MS = 60_000  # longer than any summary call (its timeout is 20 s by default)
KEEP_RECENT_MESSAGES = 4  # the last exchanges stay verbatim whatever the budget: they carry the thread


def role_of(event: Event) -> str:
    """The model-facing role of a stored message."""
    return "user" if event.role == "customer" else "assistant"


def window_tokens(estimator: TokenEstimator, summary: str, window: list[Event]) -> int:
    """Estimated tokens of what the answer prompt carries of this conversation."""
    return estimator.estimate(summary) + sum(estimator.estimate(ev.text) + 4 for ev in window)


def split_for_fold(estimator: TokenEstimator, summary: str, window: list[Event], budget: int) -> list[Event]:
    """The oldest messages to fold so that what stays fits in half the budget (pure)."""
    if window_tokens(estimator, summary, window) <= budget:
        return []
    target = budget // 2
    fold: list[Event] = []
    rest = list(window)
    while len(rest) > KEEP_RECENT_MESSAGES and window_tokens(estimator, summary, rest) > target:
        fold.append(rest.pop(0))
    return fold


async def maybe_fold(
    store: ConversationStore,
    gateway: ModelGateway,
    estimator: TokenEstimator,
    *,
    conversation_id: str,
    model: str,
    budget_tokens: int,
) -> bool:
    """Fold the oldest messages into the summary if the window is over budget; True when it folded."""
    summary, _upto, window = await store.window(conversation_id)
    if not split_for_fold(estimator, summary, window, budget_tokens):
        return False
    token = await store.acquire_lock("summary", conversation_id, SUMMARY_LOCK_TTL_MS)
    if token is None:
        return False  # another process is folding this slide
    try:
        state = await store.get_state(conversation_id)
        if state is None:
            return False
        summary, _upto, window = await store.window(conversation_id)  # re-read under the lock
        fold = split_for_fold(estimator, summary, window, budget_tokens)
        if not fold:
            return False
        try:
            new_summary = await summarize(
                gateway,
                model=model,
                previous_summary=summary,
                turns=[(role_of(ev), ev.text) for ev in fold],
                conversation_id=conversation_id,
            )
        except ModelError as exc:
            log.warning("summary for %s failed (%s); the window stays as it is", conversation_id, exc.code)
            return False
        folded = await store.fold_summary(
            conversation_id,
            new_summary=new_summary,
            upto_seq=fold[-1].seq,
            expected_summary_version=state.summary_version,
        )
        if folded:
            log.info("folded %d messages of %s into the summary", len(fold), conversation_id)
        return folded
    finally:
        await store.release_lock(token)
