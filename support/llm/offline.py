"""The fallback responder used when no model is reachable (no API key, or the breaker is open).

It answers only with text a person already wrote: a passage of the support policy, or an approved example
answer from an agent, and only when the question matches it lexically above a threshold; the answer is
labelled as automatic. Anything else gets ``None`` and the caller hands the turn to a human. Guessing is
worse than a handoff here: a wrong refund rule costs more than a short wait.

Pure and deterministic: no I/O, no clock, no randomness; the caller reads the policy file (see
``support.llm.policy``) and the examples. The same inputs always give the same answer, so an answer can be
reproduced from the policy version and the question alone.

Retrieval is behind :class:`LexicalIndex` so an embedding index can replace BM25 later without touching
:class:`OfflineResponder`, provided it returns scores normalised the same way (0 to 1, comparable across
corpora; see :class:`Bm25Index`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

__all__ = [
    "ANSWER_MAX_CHARS",
    "BM25_B",
    "BM25_K1",
    "MAX_PASSAGE_CHARS",
    "OFFLINE_LABEL",
    "OFFLINE_MATCH_THRESHOLD",
    "Bm25Index",
    "Example",
    "LexicalIndex",
    "OfflineAnswer",
    "OfflineResponder",
    "Passage",
    "split_passages",
    "tokenize",
]

OFFLINE_MATCH_THRESHOLD = 0.6
"""Default minimum normalised score (0 to 1) for an offline answer.

The score is the idf-weighted share of the question's terms that the passage contains (see
:class:`Bm25Index`). At 0.6 a question whose most informative word is missing from the passage (a place,
a product, a topic the policy never mentions) cannot pass, since one unmatched word not in the corpus weighs
as much as any matched one; a question that names its topic in the policy's own words passes. Lower
values answer more and hand off less, at the price of answering the wrong question.
"""

MAX_PASSAGE_CHARS = 800  # about a paragraph: long enough to hold one rule whole, short enough to be precise
ANSWER_MAX_CHARS = 700  # a chat bubble that can be read without scrolling on a phone
_MIN_TRIM_CHARS = 200  # below this, cutting at a sentence boundary would drop too much: cut at a word

BM25_K1 = 1.5  # Okapi term-frequency saturation, the usual value
BM25_B = 0.75  # Okapi document-length normalisation, the usual value

OFFLINE_LABEL = (
    "(Automatic answer from our help centre — a person can help if this doesn't answer your question)"
)

# Small on purpose: function words, greetings and the frame of a question. "long", "much", "happens" and
# the like are here because in "how long", "how much" and "what happens if" they say what kind of answer
# is wanted, not what the question is about: the policy says "30 days", never "long".
_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "after",
        "again",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "been",
        "before",
        "being",
        "both",
        "but",
        "by",
        "can",
        "could",
        "d",
        "did",
        "didn",
        "do",
        "does",
        "doesn",
        "doing",
        "don",
        "done",
        "each",
        "else",
        "for",
        "from",
        "get",
        "got",
        "had",
        "happen",
        "happened",
        "happens",
        "has",
        "have",
        "having",
        "he",
        "hello",
        "her",
        "here",
        "hers",
        "hey",
        "hi",
        "him",
        "his",
        "how",
        "i",
        "if",
        "im",
        "in",
        "into",
        "is",
        "isn",
        "it",
        "its",
        "itself",
        "just",
        "know",
        "let",
        "like",
        "ll",
        "long",
        "m",
        "many",
        "may",
        "me",
        "might",
        "mine",
        "more",
        "most",
        "much",
        "must",
        "my",
        "myself",
        "need",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "often",
        "ok",
        "okay",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "please",
        "re",
        "s",
        "said",
        "same",
        "say",
        "says",
        "shall",
        "she",
        "should",
        "so",
        "some",
        "soon",
        "such",
        "t",
        "tell",
        "than",
        "thank",
        "thanks",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "us",
        "ve",
        "very",
        "want",
        "wanted",
        "was",
        "wasn",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "won",
        "would",
        "yes",
        "you",
        "your",
        "yours",
        "yourself",
    ]
)

_WORD_RE = re.compile(r"[^\W_]+")
_HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END_RE = re.compile(r"[.!?](?=\s)|\n")


def _stem(word: str) -> str:
    """Light suffix stripping so "returns", "returned" and "returning" meet at "return".

    Deliberately crude: it only has to map a question's words and the policy's words to the same key,
    and the same function is applied to both sides. It is not a linguistic stemmer.
    """
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "ches", "shes", "xes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            # "shipped" -> "shipp" -> "ship"; "cancelled" -> "cancel" (British spelling doubles the l)
            if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "aeiousz":
                word = word[:-1]
            break
    if word.endswith("al") and len(word) >= 6:  # "rental" -> "rent"
        word = word[:-2]
    if word.endswith("e") and len(word) >= 5:  # "damage" and "damaged" -> "damag"
        word = word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Index terms of a text: case-folded Unicode words, stopwords and one-letter words dropped, stemmed."""
    return [
        _stem(word) for word in _WORD_RE.findall(text.casefold()) if len(word) > 1 and word not in _STOPWORDS
    ]


@dataclass(frozen=True, slots=True)
class Passage:
    """A bounded piece of the policy and the path of headings above it (document title excluded)."""

    headings: tuple[str, ...]
    text: str

    @property
    def heading(self) -> str:
        """The heading path as one line, e.g. ``"Returns and refunds › Return window"``."""
        return " › ".join(self.headings)


@dataclass(frozen=True, slots=True)
class Example:
    """An approved question and the answer an agent wrote for it (in the conversation it names)."""

    question: str
    answer: str
    conversation_id: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class OfflineAnswer:
    """A labelled answer taken from the policy or an example, with the match that chose it.

    ``heading`` is the policy section path for a policy answer and the matched question for an example.
    """

    text: str
    source: Literal["policy", "example"]
    score: float
    heading: str


T = TypeVar("T")


class LexicalIndex(Protocol[T]):
    """Retrieval over items, best match first.

    Scores are normalised to 0..1 and comparable across corpora and queries, so one threshold works for
    any policy; an implementation that cannot promise that cannot stand in for :class:`Bm25Index`.
    """

    def search(self, query: str, k: int) -> list[tuple[T, float]]:
        """At most ``k`` items that share something with ``query``, best first, with their scores."""
        ...


class Bm25Index(Generic[T]):
    """Okapi BM25 (k1=1.5, b=0.75) over :func:`tokenize`'d text, with a score normalised to 0..1.

    Written here rather than taken from ``rank-bm25``: that package ships no type information (mypy strict
    would need an override), pulls in numpy for what is a few dozen lines of arithmetic over ~100
    passages, uses a different idf (Okapi's, which it floors for common terms) and returns raw scores, so
    the normalisation and title tie-break below would still be ours.

    idf is Lucene's ``ln(1 + (N - n + 0.5) / (n + 0.5))``, which stays positive for common terms. A query
    term absent from the corpus gets the largest idf (``n = 0``): it is the most informative word of the
    question and nothing matches it, which is what keeps "the weather in Paris" away from a shipping rule.

    The normalised score is the idf-weighted share of the query's distinct terms that the document
    contains::

        score(q, d) = sum(idf(t) for t in q if t in d) / sum(idf(t) for t in q)

    Raw BM25 is not comparable across queries or corpora (it grows with the number of query terms and
    with the corpus size), so no single threshold could be set on it; its largest achievable value is
    not a useful divisor either, since term-frequency saturation keeps real documents far below it. The
    share is in 0..1, independent of corpus size and question length, and reads plainly: 0.6 means the
    passage contains the words carrying 60% of the question's information. A question whose one
    unmatched word is unknown to the corpus scores below 0.5 whatever else it matches.

    Each entry is ``(item, title, body)``; both are searched. Results are ranked by the score, then by
    the share matched in the title alone (a passage under a heading that names the question's topic is
    about it; one that mentions the words in passing is not: "return a tent" belongs to the returns
    rules, not to the rental rule on drying a tent before its return), then by the raw BM25 score (which
    rewards repetition and short, focused text), then by insertion order, so equal inputs always give
    equal rankings.
    """

    def __init__(
        self, entries: Iterable[tuple[T, str, str]], *, k1: float = BM25_K1, b: float = BM25_B
    ) -> None:
        self._k1 = k1
        self._b = b
        self._items: list[T] = []
        self._lengths: list[int] = []
        self._postings: dict[str, list[tuple[int, int]]] = {}
        self._titles: list[frozenset[str]] = []
        for position, (item, title, body) in enumerate(entries):
            title_terms = tokenize(title)
            terms = Counter(title_terms + tokenize(body))
            self._items.append(item)
            self._titles.append(frozenset(title_terms))
            self._lengths.append(sum(terms.values()))
            for term, count in terms.items():
                self._postings.setdefault(term, []).append((position, count))
        total = sum(self._lengths)
        self._avg_length = total / len(self._lengths) if total else 1.0

    def __len__(self) -> int:
        return len(self._items)

    def idf(self, term: str) -> float:
        """Inverse document frequency of an already tokenised term; largest for terms not in the corpus."""
        n_docs = len(self._items)
        n_with = len(self._postings.get(term, ()))
        return math.log(1.0 + (n_docs - n_with + 0.5) / (n_with + 0.5))

    def search(self, query: str, k: int) -> list[tuple[T, float]]:
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms or not self._items or k <= 0:
            return []
        idfs = {term: self.idf(term) for term in terms}
        total_idf = sum(idfs.values())
        raw: dict[int, float] = {}
        matched_idf: dict[int, float] = {}
        for term in terms:
            for position, count in self._postings.get(term, ()):
                length_norm = 1.0 - self._b + self._b * self._lengths[position] / self._avg_length
                tf_part = count * (self._k1 + 1.0) / (count + self._k1 * length_norm)
                raw[position] = raw.get(position, 0.0) + idfs[term] * tf_part
                matched_idf[position] = matched_idf.get(position, 0.0) + idfs[term]
        title_idf = {p: sum(idfs[t] for t in terms if t in self._titles[p]) for p in raw}
        ranked = sorted(raw, key=lambda p: (-matched_idf[p], -title_idf[p], -raw[p], p))
        return [(self._items[p], matched_idf[p] / total_idf) for p in ranked[:k]]


def _chunks(block: str, max_chars: int) -> list[str]:
    """``block`` in pieces of at most ``max_chars``, cut at line then sentence boundaries (a word, if
    a sentence alone is too long); the text between pieces is a line break or a space."""
    if len(block) <= max_chars:
        return [block]
    units: list[tuple[str, str]] = []  # (separator before, text)
    for line in block.split("\n"):
        separator = "\n"
        for sentence in re.split(r"(?<=[.!?])\s+", line) if len(line) > max_chars else [line]:
            while len(sentence) > max_chars:
                cut = sentence.rfind(" ", 0, max_chars)
                cut = cut if cut > 0 else max_chars
                units.append((separator, sentence[:cut]))
                sentence, separator = sentence[cut:].lstrip(), " "
            units.append((separator, sentence))
            separator = " "
    pieces: list[str] = []
    current = ""
    for separator, text in units:
        joined = f"{current}{separator}{text}" if current else text
        if len(joined) <= max_chars:
            current = joined
        else:
            pieces.append(current)
            current = text
    if current:
        pieces.append(current)
    return [piece.strip() for piece in pieces if piece.strip()]


def split_passages(policy_text: str, *, max_chars: int = MAX_PASSAGE_CHARS) -> list[Passage]:
    """The policy as passages: one per paragraph of each ``##``/``###`` section, with its heading path.

    A paragraph that ends with a colon introduces what follows (usually a list) and is kept with it.
    Passages longer than ``max_chars`` are cut at line and sentence boundaries. The document title
    (``#``) heads only text that comes before the first section.
    """
    title = ""
    path: list[tuple[int, str]] = []
    passages: list[Passage] = []
    blocks: list[str] = []
    lines: list[str] = []

    def end_paragraph() -> None:
        text = "\n".join(lines).strip()
        lines.clear()
        if not text:
            return
        if blocks and blocks[-1].endswith(":"):
            blocks[-1] = f"{blocks[-1]}\n{text}"
        else:
            blocks.append(text)

    def end_section() -> None:
        end_paragraph()
        headings = tuple(name for _, name in path) or ((title,) if title else ())
        passages.extend(Passage(headings, chunk) for block in blocks for chunk in _chunks(block, max_chars))
        blocks.clear()

    for line in policy_text.splitlines():
        match = _HEADING_RE.match(line)
        if match is None:
            if line.strip():
                lines.append(line.rstrip())
            else:
                end_paragraph()
            continue
        end_section()
        level, name = len(match.group(1)), match.group(2)
        if level == 1:
            title, path = name, []
        else:
            path = [*(entry for entry in path if entry[0] < level), (level, name)]
    end_section()
    return passages


def _trim(text: str, max_chars: int = ANSWER_MAX_CHARS) -> str:
    """``text`` cut to ``max_chars`` at the last sentence end, or at a word with an ellipsis."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    ends = [m.end() for m in _SENTENCE_END_RE.finditer(text, 0, max_chars + 1)]
    if ends and ends[-1] >= _MIN_TRIM_CHARS:
        return text[: ends[-1]].rstrip()
    cut = text.rfind(" ", 0, max_chars)
    return text[: cut if cut > 0 else max_chars].rstrip() + " …"


_Item = Passage | Example
IndexFactory = Callable[[Sequence[tuple[_Item, str, str]]], LexicalIndex[_Item]]
"""Builds an index over ``(item, title, body)`` entries; :class:`Bm25Index` is the one in use."""


class OfflineResponder:
    """Answers a question from an approved example or a policy passage, or returns ``None``.

    Examples and passages share one index, so term weights come from the whole body of approved text and
    stay meaningful with only a handful of examples. Examples are indexed by their question alone (the
    agent's answer may mention anything). An example that passes the threshold wins over any passage: an
    agent wrote it for this kind of question.
    """

    def __init__(
        self,
        policy_text: str,
        *,
        threshold: float = OFFLINE_MATCH_THRESHOLD,
        examples: Sequence[Example] = (),
        index_factory: IndexFactory = Bm25Index,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.passages = split_passages(policy_text)
        entries: list[tuple[_Item, str, str]] = [(p, p.heading, p.text) for p in self.passages]
        entries += [(example, "", example.question) for example in examples if example.answer.strip()]
        self._size = len(entries)
        self._index = index_factory(entries)

    def answer(self, question: str, *, exclude_conversation: str | None = None) -> OfflineAnswer | None:
        """The best labelled answer whose normalised score reaches the threshold, else ``None``.

        ``exclude_conversation``: never an example recorded in that conversation (its own reply back).
        """
        best_passage: tuple[Passage, float] | None = None
        for item, score in self._index.search(question, self._size):
            if score < self.threshold:
                break
            if isinstance(item, Example):
                if exclude_conversation is not None and item.conversation_id == exclude_conversation:
                    continue
                return OfflineAnswer(_label(item.answer), "example", score, item.question)
            if best_passage is None:
                best_passage = (item, score)
        if best_passage is None:
            return None
        passage, score = best_passage
        return OfflineAnswer(_label(passage.text), "policy", score, passage.heading)


def _label(text: str) -> str:
    return f"{OFFLINE_LABEL}\n\n{_trim(text)}"
