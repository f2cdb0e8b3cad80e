"""Rolling conversation summaries, written by the small model.

Long conversations are folded: older turns are replaced by a summary so the answer prompt stays bounded.
The summary becomes the first block of the cached history, so it is rewritten only when turns are folded
in (each rewrite invalidates the history cache once). What it must keep is what an agent or the answer
model would otherwise lose: order and ticket numbers, names, promises made, what was already tried.
"""

from __future__ import annotations

from collections.abc import Sequence

from support.llm.gateway import ModelGateway
from support.redaction import merge_counts

SUMMARY_MAX_TOKENS = 600  # ~400 words: enough for the facts, small enough to sit in every answer prompt

SYSTEM_PROMPT = """You maintain the running summary of a customer support chat.
Merge the previous summary and the new turns into one updated summary of at most 250 words.
Keep every concrete fact exactly as written: order, ticket, tracking and invoice numbers, product names, \
amounts, dates, the customer's name and contact preferences. Keep what the customer wants, what has \
been tried or checked already and with what result, and every promise or commitment made to the \
customer (what, by whom, by when). Drop greetings and small talk. Write neutral third-person notes, \
not a reply to the customer. Bracketed placeholders such as [EMAIL_1] or [CARD_1] stand for personal \
data that was removed: copy them as they are, never guess what they stand for. Output only the summary \
text."""


def build_summary_prompt(previous_summary: str, turns: Sequence[tuple[str, str]]) -> str:
    """The user turn: the previous summary (or a note that there is none) and the turns to fold in."""
    previous = previous_summary.strip() or "(none yet)"
    transcript = "\n".join(f"{role}: {text.strip()}" for role, text in turns if text.strip())
    return (
        f"<previous_summary>\n{previous}\n</previous_summary>\n\n"
        f"<new_turns>\n{transcript or '(no new turns)'}\n</new_turns>"
    )


async def summarize(
    gateway: ModelGateway,
    *,
    model: str,
    previous_summary: str,
    turns: Sequence[tuple[str, str]],
    conversation_id: str | None = None,
) -> str:
    """The updated summary (non-streaming, purpose ``summary``); model errors propagate.

    With no non-blank turns there is nothing to fold in and no call is made. An empty reply keeps the
    previous summary: losing recorded facts is worse than a stale summary. The turns (and the previous
    summary) are redacted first, so the summary the model writes holds placeholders, not personal data.
    """
    if not any(text.strip() for _, text in turns):
        return previous_summary
    redacted = gateway.redactor.redact_many([previous_summary, *(text for _, text in turns)])
    prompt = build_summary_prompt(
        redacted[0].text, [(role, r.text) for (role, _), r in zip(turns, redacted[1:], strict=True)]
    )
    reply = await gateway.create(
        purpose="summary",
        model=model,
        conversation_id=conversation_id,
        redactions=merge_counts(*(r.counts for r in redacted)),
        max_tokens=SUMMARY_MAX_TOKENS,
        system=SYSTEM_PROMPT,
        messages=[{"role": "user", "content": prompt}],
    )
    text = "".join(block.text for block in reply.content if block.type == "text").strip()
    return text or previous_summary
