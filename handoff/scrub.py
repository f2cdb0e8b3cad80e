"""What an agent reply may keep before it becomes an example other customers' prompts carry.

An example is shown to *other* conversations (retrieved into their answer prompts, curated into every
prompt's system block, offered as a canned reply), so it must not carry one customer's specifics. The
:class:`ExampleScrubber` replaces, in this order:

1. PII the redactor (:mod:`support.redaction`) finds: e-mail, phone, card, CVV, IBAN and its
   configured patterns -> its typed placeholders (``[EMAIL_1]``, ``[CARD_1]``);
2. the conversation's own people, from its visitor record and the agent's account: the customer's
   e-mail if the redactor missed it -> ``[EMAIL]``, the customer's name (whole, or any part of it as
   written) -> ``[NAME]``, the agent's name -> ``[AGENT_NAME]``;
3. order, ticket and reference numbers (configurable patterns, label -> regex) -> ``[<LABEL>]``.

:func:`review_flags` then says why a scrubbed example should wait for a person instead of being
approved on its own: something PII-shaped survived, it carries markup that looks like prompt tags, or
it is too short or too long to be a useful example.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

NAME_PLACEHOLDER = "[NAME]"
AGENT_NAME_PLACEHOLDER = "[AGENT_NAME]"
EMAIL_PLACEHOLDER = "[EMAIL]"
MIN_NAME_PART_CHARS = 2  # a single initial ("J.") identifies nobody, and replacing it mangles text

# Label -> pattern. A pattern with a group named ``value`` replaces only that group (the words around it
# say what the number is and stay); otherwise the whole match is replaced. Order matters: first wins.
DEFAULT_REFERENCE_PATTERNS: dict[str, str] = {
    "ORDER_NUMBER": (
        r"(?i)\border(?:\s+(?:number|no\.?|nr\.?|id))?(?:\s+is)?\s*:?\s*(?P<value>#?(?=[a-z-]*\d)[a-z0-9][a-z0-9-]{2,})"
        r"|(?<![\w#])#\d{3,}\b"
    ),
    "REFERENCE": (
        r"(?i)\b(?:ticket|case|ref(?:erence)?|invoice|tracking|confirmation|booking|rma|return)"
        r"(?:\s+(?:number|no\.?|nr\.?|code|id))?(?:\s+is)?\s*:?\s*(?P<value>#?(?=[a-z-]*\d)[a-z0-9][a-z0-9-]{2,})"
        # an upper-case code mixing letters and digits, e.g. AB12CD34 or RMA-2291-XK
        r"|\b(?=[A-Z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z0-9][A-Z0-9-]{4,}[A-Z0-9]\b"
    ),
    "NUMBER": r"(?<![\w.,])\d(?:[ -]?\d){4,}(?![\w.,]\d)",  # any other run of five or more digits
}

# What review_flags treats as "PII-shaped" after scrubbing: five or more digits in a row (spaces and dashes
# allowed between them: phone numbers, account numbers), and anything that looks like an e-mail address.
_DIGIT_RUN_RE = re.compile(r"\d(?:[ -]?\d){4,}")
_EMAIL_SHAPE_RE = re.compile(r"[^\s@<>]+@[^\s@<>]+\.[A-Za-z]{2,}")
# Markup that could pose as prompt structure: any tag-like <name ...> or </name>, and role labels at the
# start of a line ("Human:", "Assistant:") as in raw-completion transcripts.
_TAG_RE = re.compile(r"<\s*/?\s*[A-Za-z!?_][^<>]*>?")
_ROLE_MARKER_RE = re.compile(r"(?im)^\s*(?:human|assistant|system|user)\s*:")
_WORD_RE = re.compile(r"\w+")


class Redacted(Protocol):
    """The redactor's result (``support.redaction.Redacted``)."""

    @property
    def text(self) -> str: ...

    @property
    def counts(self) -> Mapping[str, int]: ...


class TextRedactor(Protocol):
    """Finds PII in text and replaces it with typed placeholders (``support.redaction.Redactor``)."""

    def redact(self, text: str) -> Redacted: ...


@dataclass(frozen=True)
class People:
    """Who the example's conversation was between (from the visitor record and the agent's account)."""

    customer_name: str | None = None
    customer_email: str | None = None
    agent_name: str | None = None


NOBODY = People()  # no known people: only the redactor and the reference patterns apply


@dataclass
class Scrubbed:
    """A scrubbed text and how many of each placeholder were put in."""

    text: str
    counts: Counter[str] = field(default_factory=Counter)


def _name_patterns(name: str | None) -> list[re.Pattern[str]]:
    """The whole name (any case), then each of its parts as written (longest first)."""
    if not name or not name.strip():
        return []
    whole = " ".join(name.split())
    parts = {p.strip(".") for p in re.split(r"[\s,]+", whole)}
    parts = {p for p in parts if len(p) >= MIN_NAME_PART_CHARS}
    return [re.compile(rf"(?<!\w){re.escape(whole)}(?!\w)", re.IGNORECASE)] + [
        re.compile(rf"(?<!\w){re.escape(part)}(?!\w)") for part in sorted(parts, key=len, reverse=True)
    ]


def compile_reference_patterns(patterns: Mapping[str, str]) -> list[tuple[str, re.Pattern[str]]]:
    """Label -> regex compiled, in order; a bad pattern raises ``ValueError`` naming its label."""
    compiled = []
    for label, pattern in patterns.items():
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", label):
            raise ValueError(f"reference label {label!r} must be UPPER_SNAKE_CASE")
        try:
            compiled.append((label, re.compile(pattern)))
        except re.error as exc:
            raise ValueError(f"reference pattern {label} is not a valid regex: {exc}") from exc
    return compiled


class ExampleScrubber:
    """Replaces a conversation's specifics with placeholders (see the module docstring)."""

    def __init__(
        self,
        redactor: TextRedactor | None = None,
        reference_patterns: Mapping[str, str] = DEFAULT_REFERENCE_PATTERNS,
    ) -> None:
        self._redactor = redactor
        self._references = compile_reference_patterns(reference_patterns)

    def scrub(self, text: str, people: People = NOBODY) -> Scrubbed:
        """``text`` with the people, PII and reference numbers replaced by placeholders."""
        out = Scrubbed(text)
        if self._redactor is not None:
            redacted = self._redactor.redact(out.text)
            out.text = redacted.text
            out.counts.update({k.upper(): v for k, v in redacted.counts.items() if v})
        if people.customer_email and people.customer_email.strip():
            email = re.compile(re.escape(people.customer_email.strip()), re.IGNORECASE)
            self._sub(out, email, EMAIL_PLACEHOLDER)
        for pattern in _name_patterns(people.customer_name):
            self._sub(out, pattern, NAME_PLACEHOLDER)
        for pattern in _name_patterns(people.agent_name):
            self._sub(out, pattern, AGENT_NAME_PLACEHOLDER)
        for label, pattern in self._references:
            self._sub(out, pattern, f"[{label}]", group="value")
        return out

    @staticmethod
    def _sub(out: Scrubbed, pattern: re.Pattern[str], placeholder: str, group: str | None = None) -> None:
        def replace(match: re.Match[str]) -> str:
            out.counts[placeholder.strip("[]")] += 1
            if group is not None and group in pattern.groupindex and match.group(group) is not None:
                start, end = match.span(group)
                whole_start = match.start()
                text = match.group(0)
                return text[: start - whole_start] + placeholder + text[end - whole_start :]
            return placeholder

        out.text = pattern.sub(replace, out.text)


@dataclass(frozen=True)
class ReviewLimits:
    """Bounds an example must keep to be approved without a person looking at it."""

    min_question_chars: int = 8
    min_reply_chars: int = 20
    min_reply_words: int = 4
    max_chars: int = 4000


DEFAULT_LIMITS = ReviewLimits()


def review_flags(
    scrubber: ExampleScrubber,
    *,
    question: str,
    reply: str,
    context: str = "",
    original_lengths: Sequence[int] = (),
    limits: ReviewLimits = DEFAULT_LIMITS,
) -> list[str]:
    """Why a scrubbed example must wait for review (empty: it may be approved on its own).

    ``original_lengths`` are the lengths before scrubbing and truncation (``too_long`` is judged on them).
    """
    flags: list[str] = []
    texts = (question, reply, context)
    # Scrubbing is idempotent on clean text: if a second pass still finds something, the first one
    # left PII or a reference it only partly replaced.
    if any(scrubber.scrub(t).text != t for t in texts) or any(
        _DIGIT_RUN_RE.search(t) or _EMAIL_SHAPE_RE.search(t) for t in texts
    ):
        flags.append("pii_shaped")
    if any(_TAG_RE.search(t) or _ROLE_MARKER_RE.search(t) for t in (question, reply)):
        flags.append("markup")
    if (
        len(question.strip()) < limits.min_question_chars
        or len(reply.strip()) < limits.min_reply_chars
        or len(_WORD_RE.findall(reply)) < limits.min_reply_words
    ):
        flags.append("too_short")
    if any(n > limits.max_chars for n in (*original_lengths, len(question), len(reply))):
        flags.append("too_long")
    return flags


def flags_text(flags: Iterable[str]) -> str:
    """Flags as stored (comma-separated)."""
    return ",".join(flags)


def flags_list(stored: str | None) -> list[str]:
    """Flags as the API returns them."""
    return [f for f in (stored or "").split(",") if f]
