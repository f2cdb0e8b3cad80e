"""Triage: classify one customer message (intent, urgency, sentiment, language, wants_human, confidence,
solved).

Triage runs on the small model before any answer is drafted, so it must be cheap and its output must be
machine-checked. The model is *forced* to call one tool, ``record_triage``, whose input schema is the
:class:`Triage` model with the configured taxonomy as an enum; the tool input is then validated by the
same pydantic model. A reply that does not validate is retried once with the validation error quoted back
to the model; a second invalid reply gives a low-confidence fallback (``fallback=True``) so the pipeline
routes the turn conservatively instead of failing it. Model *errors* (unavailable, timed out, rejected)
are not triage's to hide: they propagate and the pipeline decides.

The system prompt is short and constant: a Haiku prompt this size is below the 4096-token cache minimum,
so there is nothing to gain from caching, but a stable prompt keeps replies comparable across turns.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from anthropic.types import Message
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from support.llm.gateway import ModelGateway
from support.redaction import Redactor, merge_counts
from support.settings import DEFAULT_INTENTS

TOOL_NAME = "record_triage"
TRIAGE_MAX_TOKENS = 400  # the tool input is ~100 tokens; room for a 200-char reason in any script
MAX_ATTEMPTS = 2  # the first call plus one retry: a third rarely helps and delays the customer's turn
RECENT_TURN_CHARS = 1_000  # each recent turn is context, not the subject: keep the prompt small
SUMMARY_CHARS = 2_000
REASON_MAX_CHARS = 200
FALLBACK_REASON = "triage_invalid"
FALLBACK_LANGUAGE = "und"  # BCP-47 "undetermined"

DEFAULT_TAXONOMY: tuple[str, ...] = DEFAULT_INTENTS

Urgency = Literal["low", "normal", "high", "urgent"]
Sentiment = Literal["negative", "neutral", "positive"]

_LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Z]{2})?$"

SYSTEM_PROMPT = (
    "You triage messages sent to a retailer's customer support chat. Read the conversation context and "
    f"the new customer message, then call {TOOL_NAME} exactly once.\n"
    "- intent: the topic of the new message, from the allowed list; 'other' if none fits.\n"
    "- urgency: 'urgent' only for safety issues, fraud or money lost right now; 'high' for time-critical "
    "problems; 'low' for general questions.\n"
    "- sentiment: the customer's tone in the new message.\n"
    "- language: the language of the new message as a BCP-47 code such as en, de or pt-BR.\n"
    "- wants_human: true only if the customer asks for a person, agent or human.\n"
    "- confidence: from 0 to 1, how likely a written support policy alone can fully answer the message "
    "(low when it needs account data, a judgement call or a person).\n"
    "- solved: true only when the customer says the problem is solved or the answer worked.\n"
    f"- reason: one short sentence (at most {REASON_MAX_CHARS} characters) explaining the routing."
)


class Triage(BaseModel):
    """The verdict on one customer message; ``intent`` is checked against the taxonomy in the context."""

    model_config = ConfigDict(extra="forbid")

    intent: str = Field(description="Topic of the new message, one of the allowed intents.")
    urgency: Urgency = Field(description="How time-critical the message is.")
    sentiment: Sentiment = Field(description="The customer's tone in the new message.")
    language: str = Field(
        min_length=2,
        max_length=6,
        pattern=_LANGUAGE_PATTERN,
        description="BCP-47 code of the new message's language, e.g. en, de, pt-BR.",
    )
    wants_human: bool = Field(description="The customer asks for a person.")
    confidence: float = Field(
        ge=0.0, le=1.0, description="0..1: how likely the support policy alone answers the message."
    )
    reason: str = Field(max_length=REASON_MAX_CHARS, description="One short sentence explaining the verdict.")
    # Optional with a default: a reply without it (from before it existed) still validates. Reports count a
    # conversation as confirmed resolved by it (docs/metrics.md).
    solved: bool = Field(
        default=False,
        description="True only when the customer says the problem is solved or the answer worked.",
    )

    @field_validator("language", mode="before")
    @classmethod
    def _normalise_language(cls, value: Any) -> Any:
        """Accept trivially fixable spellings (``EN``, ``pt_br``) rather than spend a retry on them."""
        if not isinstance(value, str):
            return value
        primary, _, region = value.strip().replace("_", "-").partition("-")
        return f"{primary.lower()}-{region.upper()}" if region else primary.lower()

    @field_validator("intent")
    @classmethod
    def _intent_in_taxonomy(cls, value: str, info: ValidationInfo) -> str:
        taxonomy = (info.context or {}).get("taxonomy", DEFAULT_TAXONOMY)
        if value not in taxonomy:
            raise ValueError(f"intent must be one of {list(taxonomy)}")
        return value


@dataclass(frozen=True)
class TriageResult:
    """A triage verdict and how it was reached.

    ``fallback`` is True when the model never produced a valid verdict and ``triage`` is the conservative
    stand-in (confidence 0.0); ``attempts`` counts model calls; ``problems`` lists why attempts failed.
    """

    triage: Triage
    fallback: bool
    attempts: int
    problems: tuple[str, ...] = ()


def triage_tool(taxonomy: Sequence[str] = DEFAULT_TAXONOMY) -> dict[str, Any]:
    """The ``record_triage`` tool definition: the :class:`Triage` schema with ``intent`` as an enum.

    Built once per taxonomy (generating a JSON schema costs about a millisecond, on every customer
    message otherwise); the dict is shared, so callers must not change it.
    """
    return _triage_tool(tuple(taxonomy))


@functools.lru_cache(maxsize=16)
def _triage_tool(taxonomy: tuple[str, ...]) -> dict[str, Any]:
    schema = Triage.model_json_schema()
    schema.pop("title", None)
    schema["description"] = "The triage verdict for the new customer message."  # not the dev docstring
    intent = dict(schema["properties"]["intent"])
    intent["enum"] = list(taxonomy)
    schema["properties"]["intent"] = intent
    # The model is asked for every field, ``solved`` included; only validation lets an old reply omit it.
    schema["required"] = list(Triage.model_fields)
    return {
        "name": TOOL_NAME,
        "description": "Record the triage verdict for the new customer message.",
        "input_schema": schema,
    }


def fallback_triage(taxonomy: Sequence[str] = DEFAULT_TAXONOMY) -> Triage:
    """The verdict used when the model's output stayed invalid: nothing is claimed, confidence is 0."""
    intent = "other" if "other" in taxonomy else taxonomy[-1]
    return Triage.model_validate(
        {
            "intent": intent,
            "urgency": "normal",
            "sentiment": "neutral",
            "language": FALLBACK_LANGUAGE,
            "wants_human": False,
            "confidence": 0.0,
            "reason": FALLBACK_REASON,
        },
        context={"taxonomy": tuple(taxonomy)},
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_triage_prompt(*, message: str, summary: str, recent: Sequence[tuple[str, str]]) -> str:
    """The user turn of a triage call: context first, the message to classify last and clearly marked."""
    parts: list[str] = []
    if summary.strip():
        parts.append(f"<summary>\n{_clip(summary.strip(), SUMMARY_CHARS)}\n</summary>")
    if recent:
        lines = [f"{role}: {_clip(' '.join(text.split()), RECENT_TURN_CHARS)}" for role, text in recent]
        parts.append("<recent_turns>\n" + "\n".join(lines) + "\n</recent_turns>")
    parts.append(f"<new_message>\n{message}\n</new_message>")
    return "\n\n".join(parts)


def parse_triage(message: Message, taxonomy: Sequence[str]) -> Triage:
    """The validated verdict in a reply; ``ValueError`` (incl. ``ValidationError``) when there is none."""
    for block in message.content:
        if block.type == "tool_use" and block.name == TOOL_NAME:
            return Triage.model_validate(block.input, context={"taxonomy": tuple(taxonomy)})
    raise ValueError(f"the reply has no {TOOL_NAME} tool call (stop_reason={message.stop_reason})")


def _describe(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}" for err in exc.errors()
        )
    return str(exc)


def redacted_triage_prompt(
    redactor: Redactor, *, message: str, summary: str, recent: Sequence[tuple[str, str]]
) -> tuple[str, dict[str, int]]:
    """The triage prompt with personal data redacted, and the redaction counts (for the ledger)."""
    redacted = redactor.redact_many([summary, *(text for _, text in recent), message])
    prompt = build_triage_prompt(
        message=redacted[-1].text,
        summary=redacted[0].text,
        recent=[(role, r.text) for (role, _), r in zip(recent, redacted[1:-1], strict=True)],
    )
    return prompt, merge_counts(*(r.counts for r in redacted))


def triage_params(prompt: str, taxonomy: Sequence[str]) -> dict[str, Any]:
    """The Messages parameters of a triage call on ``prompt`` (less the model): a forced tool."""
    return {
        "max_tokens": TRIAGE_MAX_TOKENS,
        "system": SYSTEM_PROMPT,
        "tools": [triage_tool(taxonomy)],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
        "messages": [{"role": "user", "content": prompt}],
    }


async def triage(
    gateway: ModelGateway,
    *,
    model: str,
    message: str,
    summary: str,
    recent: Sequence[tuple[str, str]],
    taxonomy: Sequence[str] = DEFAULT_TAXONOMY,
    conversation_id: str | None = None,
    policy_version: str | None = None,
    ticket_id: str | None = None,
) -> TriageResult:
    """Classify ``message`` with a forced ``record_triage`` call; one retry on invalid output, then fallback.

    Personal data in the message, summary and recent turns is redacted (the gateway's redactor) before
    the prompt is built, so that clipping a long turn cannot cut a value in two and leave half of it.
    ``ModelError`` subclasses from the gateway propagate unchanged.
    """
    if not taxonomy:
        raise ValueError("the triage taxonomy is empty")
    tool = triage_tool(taxonomy)
    prompt, redactions = redacted_triage_prompt(
        gateway.redactor, message=message, summary=summary, recent=recent
    )
    problems: list[str] = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        content = prompt
        if problems:
            # Quote the error back: the API has no sampling knobs any more, so an identical retry could
            # well produce the identical invalid reply.
            content += (
                f"\n\nYour previous {TOOL_NAME} call was invalid ({problems[-1]}). "
                "Call it again with input that follows the schema exactly."
            )
        reply = await gateway.create(
            purpose="triage",
            model=model,
            conversation_id=conversation_id,
            ticket_id=ticket_id,
            policy_version=policy_version,
            redactions=redactions,
            max_tokens=TRIAGE_MAX_TOKENS,
            system=SYSTEM_PROMPT,
            tools=[tool],
            tool_choice={"type": "tool", "name": TOOL_NAME},
            messages=[{"role": "user", "content": content}],
        )
        try:
            verdict = parse_triage(reply, taxonomy)
        except ValueError as exc:
            problems.append(_clip(_describe(exc), 500))
            continue
        return TriageResult(triage=verdict, fallback=False, attempts=attempt, problems=tuple(problems))
    return TriageResult(
        triage=fallback_triage(taxonomy), fallback=True, attempts=MAX_ATTEMPTS, problems=tuple(problems)
    )
