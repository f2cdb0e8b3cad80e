"""Personal data out of model-bound text: e-mail, phone, card, CVV, IBAN and configured patterns.

``Redactor(settings).redact(text)`` returns the text with each found value replaced by a typed
placeholder (``[EMAIL_1]``, ``[CARD_1]``, ``[PHONE_2]``) and how many of each kind it replaced. Only what
goes to the model is redacted: the conversation store keeps the original, so agents see it.

Detectors, in this order (a later one never touches what an earlier one took):

- ``email``: ``local@domain.tld``.
- ``iban``: two letters, two check digits and 11-30 letters or digits (spaces allowed), kept only when
  ``python-stdnum`` accepts the checksum and the country's length and format.
- ``card``: 13-19 digits, spaces, dashes or dots between them allowed, kept only when the Luhn check
  passes.
- ``cvv``: 3-4 digits introduced by CVV / CVC / CID / CSC / "security code" (the word stays).
- extra patterns from the settings, each its own kind.
- ``phone``: ``phonenumbers``' matcher at leniency VALID: a number must be a real, assignable number for
  its region, which rules out order numbers, dates, prices and ordinary quantities (POSSIBLE would not);
  a number right after a label such as "order" or "invoice no." is left alone even when it is also valid.

Determinism: the output is a pure function of the input (and the settings). Numbering goes by first
occurrence, the same value keeps its number, and placeholders already in the text keep theirs (a new
value never reuses a number the text already shows), so redacting twice changes nothing. The answer
prompt re-sends the conversation's history every turn and its cached prefix must stay byte-identical;
:meth:`Redactor.redact_many` numbers a sequence of texts (history first, new message last) so that each
text's result depends only on the texts before it: appending a message never changes an earlier one.

Cost: detection is cached per text (an LRU), so a history message is scanned once, not once per turn.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn

from support.settings import RedactionSettings

# Matches a placeholder this module writes; detectors skip these and numbering continues after them.
PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9_]*)_(\d{1,6})\]")
# Fewer digits than this (country code included) is no phone number outside a few small territories whose
# national numbers are 5-6 digits (Niue, St Helena...); skipping phonenumbers' matcher on such text saves
# most of the cost of redacting a short message.
MIN_PHONE_DIGITS = 7
# Characters of text whose detection is cached (least recently used dropped first): 4 M characters are
# ~20,000 messages of ~200, the windows (20-40 messages) of several hundred active conversations, in
# 4-16 MB; past that, history is re-scanned (about 0.3 ms per message).
DETECTION_CACHE_CHARS = 4_000_000
# Stand-in for a span already taken: not a word character, not a digit, same length (offsets stay put).
_MASK = "\u2588"

_EMAIL = re.compile(
    r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
# A run of digit groups separated by single spaces or dashes; the Luhn check picks the card out of it.
# Only digits bound it: "card:4111..." or "4111...exp" must not hide a card behind a letter.
_DIGIT_RUN = re.compile(r"(?<!\d)\d+(?:[ \-.\u00a0]{1,2}\d+)*(?!\d)")
_IBAN_RUN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,}(?![A-Za-z0-9])")
IBAN_MAX_CHARS = 34 + 9  # the longest IBAN (34) written in groups of four (8 spaces), and a stray one
CARD_MAX_CHARS = 19 * 3  # 19 digits, each followed by at most two separator characters
_CVV = re.compile(
    r"\b(?:cvv2?|cvc2?|cid|csc|cvn|security\s+code|card\s+verification\s+(?:code|value|number))"
    r"(?:\s*(?:is|was|number|no\.?|code|[:=#)-]))*\s*(?P<value>\d{3,4})(?!\d)",
    re.IGNORECASE,
)
# A number right after one of these labels is what the label says, even when it would also be a valid
# phone number ("order 4155552671" is an order number in the US): the bot needs to see it.
_NUMBER_LABEL = re.compile(
    r"(?:\b(?:order|invoice|ticket|tracking|ref|reference|case|sku|item|receipt)\s*(?:no\.?|nr\.?|number|id)?"
    r"|#)\s*[:#]?\s*$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(r"[ \-.\u00a0]+")


@dataclass(frozen=True)
class Redacted:
    """A redacted text and, per kind, how many values were replaced (do not mutate ``counts``)."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Values replaced, all kinds together."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class Finding:
    """One detected value: its span in the text, its kind and its normalised value."""

    start: int
    end: int
    kind: str
    value: str  # normalised: the same card written with or without spaces is one value


def merge_counts(*counts: Mapping[str, int]) -> dict[str, int]:
    """Per-kind sums of several ``Redacted.counts`` (for one model call built from several texts)."""
    total: dict[str, int] = {}
    for c in counts:
        for kind, n in c.items():
            total[kind] = total.get(kind, 0) + n
    return dict(sorted(total.items()))


def _groups_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each separator-delimited group of ``text[start:end]``."""
    spans: list[tuple[int, int]] = []
    pos = start
    for sep in _SEPARATOR.finditer(text, start, end):
        spans.append((pos, sep.start()))
        pos = sep.end()
    spans.append((pos, end))
    return spans


def _card_value(raw: str) -> str | None:
    """The card's digits if ``raw`` is 13-19 digits passing the Luhn check."""
    digits = _SEPARATOR.sub("", raw)
    if 13 <= len(digits) <= 19 and digits.isdigit() and luhn.is_valid(digits):
        return digits
    return None


def _iban_value(raw: str) -> str | None:
    """The compact IBAN if ``raw`` passes its checksum and its country's length and format."""
    compact = raw.replace(" ", "").upper()
    if not compact[:2].isalpha() or not compact[2:4].isdigit():
        return None
    return compact if stdnum_iban.is_valid(compact) else None


def _best_sub_runs(
    text: str, groups: list[tuple[int, int]], accept: Callable[[str], str | None], max_chars: int
) -> list[tuple[int, int, str]]:
    """Runs of whole groups that ``accept`` takes: longest first, left to right, not overlapping.

    A card followed by its expiry ("4111 1111 1111 1111 12"), two IBANs in a row, or an IBAN followed by
    a word are one run for the regex; trying runs of whole groups finds the values inside it. A candidate
    is at most ``max_chars`` long (separators included), which bounds the work per run.
    """
    found: list[tuple[int, int, str]] = []
    i = 0
    while i < len(groups):
        start = groups[i][0]
        j = i + 1
        while j < len(groups) and groups[j][1] - start <= max_chars:
            j += 1
        for end_group in range(j, i, -1):
            value = accept(text[start : groups[end_group - 1][1]])
            if value is not None:
                found.append((start, groups[end_group - 1][1], value))
                i = end_group
                break
        else:
            i += 1
    return found


class _DetectionCache:
    """Least-recently-used map text -> findings, bounded by the characters of text it holds."""

    def __init__(self, max_chars: int) -> None:
        self._max_chars = max_chars
        self._chars = 0
        self._items: OrderedDict[str, tuple[Finding, ...]] = OrderedDict()

    def get(self, text: str) -> tuple[Finding, ...] | None:
        found = self._items.get(text)
        if found is not None:
            self._items.move_to_end(text)
        return found

    def put(self, text: str, found: tuple[Finding, ...]) -> None:
        if len(text) > self._max_chars or text in self._items:
            return
        self._items[text] = found
        self._chars += len(text)
        while self._chars > self._max_chars:
            dropped, _ = self._items.popitem(last=False)
            self._chars -= len(dropped)


class Redactor:
    """Finds personal data in text and replaces it with typed placeholders; safe to share (no state but
    a detection cache)."""

    def __init__(self, settings: RedactionSettings | None = None) -> None:
        self.settings = settings or RedactionSettings()
        self.enabled = self.settings.enabled
        self.kinds = frozenset(self.settings.kinds)
        self.region = self.settings.phone_region
        self.patterns = [(name.lower(), re.compile(p)) for name, p in self.settings.patterns.items()]
        self._cache = _DetectionCache(DETECTION_CACHE_CHARS)

    # -- public ------------------------------------------------------------------------------------

    def with_patterns(self, patterns: Mapping[str, str]) -> Redactor:
        """A redactor that also takes these extra patterns (name -> regex, validated like the setting),
        e.g. order numbers for text that is kept and shown to other customers' prompts."""
        merged = {**self.settings.patterns, **patterns}
        return Redactor(RedactionSettings(**{**self.settings.model_dump(), "patterns": merged}))

    def redact(self, text: str) -> Redacted:
        """``text`` with every detected value replaced; the same text always gives the same bytes."""
        return self.redact_many([text])[0]

    def redact_many(self, texts: Sequence[str]) -> list[Redacted]:
        """Redact texts that go into one prompt, in prompt order, numbering across them.

        A value keeps its placeholder across the texts (the customer's e-mail is ``[EMAIL_1]`` in every
        message), and each result depends only on the texts before it, so a prompt that grows by
        appending stays byte-identical in what it had.
        """
        if not self.enabled:
            return [Redacted(t) for t in texts]
        numbers: dict[tuple[str, str], int] = {}
        highest: dict[str, int] = {}
        results: list[Redacted] = []
        for text in texts:
            found = self.detect(text)
            for existing in PLACEHOLDER.finditer(text):
                kind = existing.group(1).lower()
                highest[kind] = max(highest.get(kind, 0), int(existing.group(2)))
            if not found:
                results.append(Redacted(text))
                continue
            parts: list[str] = []
            counts: dict[str, int] = {}
            pos = 0
            for f in found:
                key = (f.kind, f.value)
                number = numbers.get(key)
                if number is None:
                    number = highest.get(f.kind, 0) + 1
                    highest[f.kind] = number
                    numbers[key] = number
                parts.append(text[pos : f.start])
                parts.append(f"[{f.kind.upper()}_{number}]")
                pos = f.end
                counts[f.kind] = counts.get(f.kind, 0) + 1
            parts.append(text[pos:])
            results.append(Redacted("".join(parts), dict(sorted(counts.items()))))
        return results

    def detect(self, text: str) -> tuple[Finding, ...]:
        """The values found in ``text``, in order, not overlapping (cached per text)."""
        if not self.enabled or not text:
            return ()
        found = self._cache.get(text)
        if found is None:
            found = self._detect(text)
            self._cache.put(text, found)
        return found

    # -- detection ---------------------------------------------------------------------------------

    def _detect(self, text: str) -> tuple[Finding, ...]:
        found: list[Finding] = []
        masked = PLACEHOLDER.sub(lambda m: _MASK * len(m.group(0)), text)

        def take(start: int, end: int, kind: str, value: str) -> None:
            nonlocal masked
            found.append(Finding(start, end, kind, value))
            masked = masked[:start] + _MASK * (end - start) + masked[end:]

        has_digit = any(c.isdigit() for c in text)
        if "email" in self.kinds and "@" in text:
            for m in list(_EMAIL.finditer(masked)):
                take(m.start(), m.end(), "email", m.group(0).lower())
        if "iban" in self.kinds and has_digit:
            for m in list(_IBAN_RUN.finditer(masked)):
                groups = _groups_spans(masked, m.start(), m.end())
                # IBANs are written in groups of four; a run that swallowed the next word is cut back.
                for s, e, value in _best_sub_runs(masked, groups, _iban_value, IBAN_MAX_CHARS):
                    take(s, e, "iban", value)
        if "card" in self.kinds and has_digit:
            for m in list(_DIGIT_RUN.finditer(masked)):
                if sum(c.isdigit() for c in m.group(0)) < 13:
                    continue
                groups = _groups_spans(masked, m.start(), m.end())
                for s, e, value in _best_sub_runs(masked, groups, _card_value, CARD_MAX_CHARS):
                    take(s, e, "card", value)
        if "cvv" in self.kinds and has_digit:
            for m in list(_CVV.finditer(masked)):
                take(m.start("value"), m.end("value"), "cvv", m.group("value"))
        for name, pattern in self.patterns:
            for m in list(pattern.finditer(masked)):
                if m.end() > m.start() and _MASK not in m.group(0):
                    take(m.start(), m.end(), name, m.group(0))
        if "phone" in self.kinds and sum(c.isdigit() for c in masked) >= MIN_PHONE_DIGITS:
            for pm in phonenumbers.PhoneNumberMatcher(masked, self.region, phonenumbers.Leniency.VALID):
                if _MASK in masked[pm.start : pm.end] or _NUMBER_LABEL.search(
                    masked, max(0, pm.start - 40), pm.start
                ):
                    continue
                value = phonenumbers.format_number(pm.number, phonenumbers.PhoneNumberFormat.E164)
                take(pm.start, pm.end, "phone", value)
        return tuple(sorted(found, key=lambda f: f.start))


def redact_texts(redactor: Redactor | None, texts: Iterable[str]) -> list[Redacted]:
    """``redactor.redact_many(texts)``, or the texts unchanged when there is no redactor."""
    items = list(texts)
    if redactor is None:
        return [Redacted(t) for t in items]
    return redactor.redact_many(items)
