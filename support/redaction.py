"""Personal data out of model-bound text: e-mail, phone, card, CVV, IBAN and configured patterns.

``Redactor(settings).redact(text)`` returns the text with each found value replaced by a typed
placeholder (``[EMAIL_1]``, ``[CARD_1]``, ``[PHONE_2]``) and how many of each kind it replaced. Only what
goes to the model is redacted: the conversation store keeps the original, so agents see it.

Detectors, in this order (a later one never touches what an earlier one took):

- ``email``: ``local@domain.tld``.
- ``iban``: two letters, two check digits and 11 or more letters or digits (spaces allowed), kept only when
  ``python-stdnum`` accepts the checksum and the country's length and format.
- ``card``: 13-19 digits in groups of at least 3 (the last may be shorter) separated by spaces, dashes or
  dots, or compact; kept only when the Luhn check passes.
- ``cvv``: 3-4 digits introduced by CVV / CVC / CID / CSC / "security code" (the word stays).
- extra patterns from the settings, each its own kind.
- ``phone``: ``phonenumbers``' matcher at leniency VALID: a number must be a real, assignable number for
  its region, which rules out order numbers, dates, prices and ordinary quantities (POSSIBLE would not);
  dates, times, prices and numbers right after a label such as "order" or "invoice no." are masked
  before it runs, so they are never taken (and cost it nothing).

Determinism: the output is a pure function of the input (and the settings). Numbering goes by first
occurrence, the same value keeps its number, and placeholders already in the text keep theirs (a new
value never reuses a number the text already shows), so redacting twice changes nothing. The answer
prompt re-sends the conversation's history every turn and its cached prefix must stay byte-identical;
:meth:`Redactor.redact_many` numbers a sequence of texts (history first, new message last) so that each
text's result depends only on the texts before it: appending a message never changes an earlier one.

Cost: what was found in a text is cached (least recently used dropped first, bounded by characters held),
so a history message is scanned once, not once per turn.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
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
    r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z])"
)
# A run of digit groups separated by one or two spaces, dashes or dots; the Luhn check picks the card out.
# Only digits bound it: "card:4111..." or "4111...exp" must not hide a card behind a letter.
_DIGIT_RUN = re.compile(r"(?<!\d)\d+(?:[ \-.\u00a0]{1,2}\d+)*(?!\d)")
_IBAN_RUN = re.compile(r"(?<![A-Za-z])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,}(?![A-Za-z0-9])")
IBAN_MIN_CHARS, IBAN_MAX_CHARS = 15, 34  # Norway's and the longest IBANs, without spaces
CARD_MIN_DIGITS, CARD_MAX_DIGITS = 13, 19  # payment card numbers (ISO/IEC 7812)
CARD_MIN_GROUP_DIGITS = 3  # every group of a written card but its last (4-4-4-4, 4-6-5, 4-6-4)
_CVV = re.compile(
    r"(?<![A-Za-z])(?:cvv2?|cvc2?|cid|csc|cvn|security\s+code|card\s+verification\s+(?:code|value|number))"
    r"(?:\s*(?:is|was|number|no\.?|code|[:=#)-]))*\s*(?P<value>\d{3,4})(?!\d)",
    re.IGNORECASE,
)
# What the phone detector must not read as a phone number, masked before it runs: a number right after a
# label says what it is ("order 4155552671" is an order number, though also a valid US number), and
# dates, times and prices are not phone numbers. Masking them also spares phonenumbers' matcher (about
# half a millisecond per candidate) most of the candidates of a pasted order list.
_NOT_A_PHONE = re.compile(
    r"(?:\b(?:order|invoice|ticket|tracking|ref|reference|case|sku|item|receipt)\s*(?:no\.?|nr\.?|number|id)?"
    r"\s*[:#]?\s*|#\s*)\d[\d\-]*"
    # a date or time only when no further digit group follows: "06.12.34.56.78" is a French phone number
    r"|(?<![\d./-])(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./]\d{1,2}[./]\d{2,4}|\d{1,2}:\d{2})(?![./:-]?\d)"
    r"|[$€£¥]\s?\d[\d,.]*|\b\d[\d,.]*\s?(?:€|EUR|USD|GBP)\b",
    re.IGNORECASE,
)
_DIGIT_THEN_LETTER = re.compile(r"(?<=\d)(?=[A-Za-z])")
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


def _groups_spans(text: str, start: int, end: int, *, at_letters: bool = False) -> list[tuple[int, int]]:
    """(start, end) of each separator-delimited group of ``text[start:end]``; with ``at_letters`` a group
    also ends where a letter follows a digit (an IBAN glued to the number before it starts a group)."""
    spans: list[tuple[int, int]] = []
    pos = start
    for sep in _SEPARATOR.finditer(text, start, end):
        spans.extend(_split_at_letters(text, pos, sep.start()) if at_letters else [(pos, sep.start())])
        pos = sep.end()
    spans.extend(_split_at_letters(text, pos, end) if at_letters else [(pos, end)])
    return spans


def _split_at_letters(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = start
    for glue in _DIGIT_THEN_LETTER.finditer(text, start + 1, end):
        spans.append((pos, glue.start()))
        pos = glue.start()
    spans.append((pos, end))
    return spans


def _card_value(raw: str) -> str | None:
    """The card's digits if ``raw`` is 13-19 digits passing the Luhn check."""
    # \d also matches other scripts' decimal digits (Arabic-Indic, Devanagari...): read them as 0-9
    digits = "".join(str(int(c)) for c in _SEPARATOR.sub("", raw))
    if CARD_MIN_DIGITS <= len(digits) <= CARD_MAX_DIGITS and luhn.is_valid(digits):
        return digits
    return None


# Letters as the IBAN checksum reads them (A=10 ... Z=35).
_IBAN_LETTERS = {ord(c): str(i) for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ", start=10)}


def _iban_value(raw: str) -> str | None:
    """The compact IBAN if ``raw`` passes its checksum and its country's length and format."""
    compact = raw.replace(" ", "").upper()
    if not IBAN_MIN_CHARS <= len(compact) <= IBAN_MAX_CHARS:
        return None
    if not compact[:2].isalpha() or not compact[2:4].isdigit():
        return None
    # The ISO 7064 remainder first, as a cheap filter (a few microseconds): python-stdnum's full check
    # (country, length, format) costs ~0.25 ms, and a long run of words yields many candidates.
    if int((compact[4:] + compact[:4]).translate(_IBAN_LETTERS)) % 97 != 1:
        return None
    return compact if stdnum_iban.is_valid(compact) else None


def _card_runs(text: str, groups: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """Cards among the digit groups of one run: longest first, left to right, not overlapping.

    A card followed by its expiry ("4111 1111 1111 1111 12") or after an order number is one run for the
    regex; candidates are runs of whole groups with 13-19 digits in which every group but the last has at
    least 3 digits (cards are written 4-4-4-4, 4-6-5, 4-6-4 or compact; "4111 1111 1111 11 4" is not one),
    which keeps a long run of short numbers from costing a Luhn check per pair of groups.
    """
    found: list[tuple[int, int, str]] = []
    i = 0
    while i < len(groups):
        ends: list[int] = []
        digits = 0
        for j in range(i, len(groups)):
            size = groups[j][1] - groups[j][0]
            digits += size
            if digits > CARD_MAX_DIGITS:
                break
            if digits >= CARD_MIN_DIGITS:
                ends.append(j + 1)
            if size < CARD_MIN_GROUP_DIGITS:
                break
        for end in reversed(ends):
            value = _card_value(text[groups[i][0] : groups[end - 1][1]])
            if value is not None:
                found.append((groups[i][0], groups[end - 1][1], value))
                i = end
                break
        else:
            i += 1
    return found


def _iban_runs(text: str, groups: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """IBANs among the groups of one run (IBANs glued together, or followed by a word), as for cards:
    a candidate starts with a group that starts with two letters and two digits and has 15-34 characters
    without its spaces."""
    found: list[tuple[int, int, str]] = []
    i = 0
    while i < len(groups):
        start = groups[i][0]
        ends: list[int] = []
        if text[start : start + 2].isalpha() and text[start + 2 : start + 4].isdigit():
            chars = 0
            for j in range(i, len(groups)):
                chars += groups[j][1] - groups[j][0]
                if chars > IBAN_MAX_CHARS:
                    break
                if chars >= IBAN_MIN_CHARS:
                    ends.append(j + 1)
        for end in reversed(ends):
            value = _iban_value(text[start : groups[end - 1][1]])
            if value is not None:
                found.append((start, groups[end - 1][1], value))
                i = end
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

        def matches(pattern: re.Pattern[str]) -> Iterator[re.Match[str]]:
            # Each search runs on the text as masked so far, so what a match's neighbour looks like is
            # what a second pass over the output would see: redacting the output finds nothing more.
            pos = 0
            while pos <= len(masked) and (m := pattern.search(masked, pos)) is not None:
                yield m
                pos = max(m.end(), m.start() + 1)

        has_digit = any(c.isdigit() for c in text)
        if "email" in self.kinds and "@" in text:
            for m in matches(_EMAIL):
                take(m.start(), m.end(), "email", m.group(0).lower())
        if "iban" in self.kinds and has_digit:
            for m in matches(_IBAN_RUN):
                groups = _groups_spans(masked, m.start(), m.end(), at_letters=True)
                # IBANs are written in groups of four; a run that swallowed the next word is cut back.
                for s, e, value in _iban_runs(masked, groups):
                    take(s, e, "iban", value)
        if "card" in self.kinds and has_digit:
            for m in matches(_DIGIT_RUN):
                if sum(c.isdigit() for c in m.group(0)) < CARD_MIN_DIGITS:
                    continue
                groups = _groups_spans(masked, m.start(), m.end())
                for s, e, value in _card_runs(masked, groups):
                    take(s, e, "card", value)
        if "cvv" in self.kinds and has_digit:
            for m in matches(_CVV):
                take(m.start("value"), m.end("value"), "cvv", m.group("value"))
        for name, pattern in self.patterns:
            for m in matches(pattern):
                if m.end() > m.start() and _MASK not in m.group(0):
                    take(m.start(), m.end(), name, m.group(0))
        if "phone" in self.kinds and sum(c.isdigit() for c in masked) >= MIN_PHONE_DIGITS:
            phone_text = _NOT_A_PHONE.sub(lambda m: _MASK * len(m.group(0)), masked)
            for pm in phonenumbers.PhoneNumberMatcher(phone_text, self.region, phonenumbers.Leniency.VALID):
                if _MASK in phone_text[pm.start : pm.end]:
                    continue
                value = phonenumbers.format_number(pm.number, phonenumbers.PhoneNumberFormat.E164)
                take(pm.start, pm.end, "phone", value)
        return tuple(sorted(found, key=lambda f: f.start))
