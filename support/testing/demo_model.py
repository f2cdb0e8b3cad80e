"""The demo model: plausible triage and policy-grounded answers for the fake Anthropic API.

``switchboard demo`` and ``switchboard fake-anthropic --demo`` plug :meth:`DemoModel.reply` into the fake
as a rule, so the real SDK still talks to the real Messages API shape (streaming events, ``usage`` with
cache fields, a forced ``record_triage`` tool call) while what the model *says* depends on the message:

* **triage**: intent from the taxonomy the request's tool schema offers (keywords per intent plus the
  heading of the best policy passage), sentiment and urgency from small word lists, language from
  function-word counts, ``wants_human`` on phrases such as "talk to a person", ``solved`` on phrases such
  as "thanks, that worked", and a confidence that is high when one of the policy's passages covers the
  message (the same BM25 share the offline responder uses) and low otherwise, or when the message needs
  the customer's own order or account;
* **answers**: the one or two sentences of the best policy passage that match the question best, or a
  call to the ``escalate_to_human`` tool when no passage covers it.

The point is to show every path of the product on a machine without an API key: a streamed answer, a
low-confidence handoff, an asked-for handoff. It is a demonstration, not a language model: anything it
cannot match goes to a person, which is what the product does with a real model too.

Pure: no I/O, no clock, no randomness. The same message always gets the same verdict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from support.llm.offline import Bm25Index, Passage, split_passages, tokenize
from support.testing.fake_anthropic import SOLVED_PATTERN, Reply, last_user_text, new_message_of

__all__ = ["ANSWER_THRESHOLD", "DemoModel", "DemoTriage", "detect_language"]

ANSWER_THRESHOLD = 0.6  # the share of the question's information a passage must hold (as offline mode)
ANSWER_MAX_SENTENCES = 2
ANSWER_SHORT_CHARS = 280  # two sentences longer than this are one sentence too many for a chat bubble
ANSWER_MAX_CHARS = 640  # a few lines in the widget, a list of three included
TRIAGE_TOOL = "record_triage"  # support.llm.triage.TOOL_NAME (the fake does not import the app's layers)
ESCALATE_TOOL = "escalate_to_human"  # support.llm.answer.ESCALATE_TOOL_NAME

# Words that say which intent a message is about, for the sample policy's taxonomy. An intent of a custom
# taxonomy without an entry here is matched by the words of its own name ("gift_cards" -> gift, cards).
INTENT_WORDS: Mapping[str, str] = {
    "orders": "order orders ordered cancel placed confirmation checkout duplicate modify",
    "shipping": "ship shipping shipped delivery deliver delivered track tracking parcel courier express "
    "dispatch arrive arrived zone warehouse",
    "returns_refunds": "return returns returned refund refunds money back",
    "exchanges": "exchange exchanges swap different size colour color",
    "warranty_repairs": "warranty guarantee repair repairs broken faulty defect defective ripped torn leak",
    "rentals": "rent rental rentals rented hire booking borrow",
    "membership": "trail club member membership points reward rewards summit ranger",
    "account_privacy": "account password login sign privacy data delete gdpr unsubscribe",
    "payments_billing": "pay payment payments card charge charged charges invoice billing klarna paypal "
    "refund-card voucher gift instalments",
    "product_question": "product size sizing fit waterproof weight material stock available tent boots "
    "backpack sleeping bag stove jacket",
    "complaint": "complaint complain unacceptable terrible awful worst disgusted furious angry rude",
}

# Phrases a customer uses to ask for a person, in the languages the function-word detector knows.
_WANTS_HUMAN = re.compile(
    r"\b(talk|speak|chat|connect|put)\b[\w\s']{0,20}\b(person|human|agent|someone|somebody|representative|"
    r"people|staff|operator)\b"
    r"|\b(real|live|actual)\s+(person|human|agent)\b|\bhuman,? please\b|\bagent,? please\b"
    r"|\bmenschen?\b|\bmitarbeiter(in)?\b|\bhumain\b|\bconseiller\b|\bpersona real\b|\bun agente\b",
    re.IGNORECASE,
)
# A message about the customer's own order, parcel or account needs data a policy does not have.
_NEEDS_ACCOUNT_DATA = re.compile(
    r"\b(my|our)\s+(order|parcel|package|account|refund|delivery|payment|card|booking|rental)\b"
    r".*(\d{4,}|\bwhere\b|\bstatus\b|\bnot\b|\bnever\b|\bstill\b|\bwhen\b)"
    r"|\b(order|tracking)\s*(number|no\.?|#)?\s*#?\d{4,}",
    re.IGNORECASE | re.DOTALL,
)
_URGENT = re.compile(
    r"\b(fraud|fraudulent|stolen|scam|scammed|hacked|injur\w*|hurt|unsafe|danger\w*|fire|burn\w*|"
    r"carbon monoxide|gas leak|recall|charged twice|double charged|unauthori[sz]ed)\b",
    re.IGNORECASE,
)
_HIGH = re.compile(
    r"\b(urgent\w*|asap|immediately|right now|today|tonight|tomorrow|leaving|trip is|departure)\b",
    re.IGNORECASE,
)
_NEGATIVE = re.compile(
    r"\b(angry|annoyed|furious|terrible|awful|horrible|worst|useless|disappointed|disappointing|"
    r"unacceptable|ridiculous|hate|rude|broken|ruined|frustrat\w*|still (not|no)|never (arrived|came)|"
    r"wrong|damaged|scam\w*|fed up)\b|!{2,}",
    re.IGNORECASE,
)
_POSITIVE = re.compile(
    r"\b(thanks?|thank you|great|love|awesome|perfect|happy|excellent|brilliant|wonderful|"
    r"appreciate\w*|danke|merci|gracias|grazie|bedankt)\b",
    re.IGNORECASE,
)

# Function words per language: a message's language is the one whose words it uses most. Written here
# rather than taken from a detector package: the demo only has to tell a handful of European languages
# apart in one-line chat messages, deterministically; statistical detectors are either random between
# runs (langdetect) or ship hundreds of megabytes of models (lingua) for a demonstration.


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_FUNCTION_WORDS: Mapping[str, frozenset[str]] = {
    "en": _words("the a an is are do does can i you my your what when where how why to of and for with "
                    "it this that have has in on"),
    "de": _words("der die das ist sind ich du sie mein meine wie was wann wo warum und mit für nicht "
                    "ein eine kann können haben habe bitte meinen zu"),
    "fr": _words("le la les est sont je vous mon ma mes comment quand où pourquoi et avec pour pas "
                    "un une puis peux avez des du"),
    "es": _words("el la los las es son yo usted mi mis cómo como cuándo dónde por qué y con para no "
                    "un una puedo tiene del"),
    "it": _words("il lo la gli le è sono io mio mia come quando dove perché e con per non un una "
                    "posso ho del della"),
    "nl": _words("de het een is zijn ik jij u mijn hoe wat wanneer waar waarom en met voor niet kan "
                    "heb ik"),
    "pt": _words("o a os as é são eu você meu minha como quando onde por que e com para não um uma "
                    "posso tem do da"),
}  # fmt: skip
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ASKS_DURATION = re.compile(r"\bhow (long|many (days|weeks|months))\b|\buntil when\b", re.IGNORECASE)
_DURATION = re.compile(r"\b\d+ (calendar |business )?(days|weeks|months|years)\b")
_POLICY = re.compile(r"<policy>\n(.*)\n</policy>", re.DOTALL)


def detect_language(text: str) -> str:
    """A BCP-47 primary language code for a chat message: ``en``, ``de``, ``fr``, ``es``, ``it``, ``nl``,
    ``pt`` by function-word counts (ties go to the order above); ``und`` when no function word of any
    is present (gibberish, a lone product name)."""
    words = [w.casefold() for w in _WORD.findall(text)]
    counts = {lang: sum(1 for w in words if w in vocabulary) for lang, vocabulary in _FUNCTION_WORDS.items()}
    best = max(counts, key=lambda lang: counts[lang])  # dicts keep order: the first of equal counts wins
    return best if counts[best] > 0 else "und"


@dataclass(frozen=True)
class DemoTriage:
    """The verdict on one message (the input of a ``record_triage`` call) and the passage behind it."""

    intent: str
    urgency: str
    sentiment: str
    language: str
    wants_human: bool
    confidence: float
    reason: str
    passage: Passage | None
    score: float
    solved: bool = False

    def tool_input(self) -> dict[str, Any]:
        """The ``record_triage`` tool input, as the schema in support.llm.triage asks for it."""
        return {
            "intent": self.intent,
            "urgency": self.urgency,
            "sentiment": self.sentiment,
            "language": self.language,
            "wants_human": self.wants_human,
            "confidence": self.confidence,
            "reason": self.reason,
            "solved": self.solved,
        }


class DemoModel:
    """Triage and answers over one support policy (see the module docstring).

    ``policy_text`` is what triage scores against (a triage request does not carry the policy); an answer
    request carries its own knowledge as document blocks, and that one is used when present.
    """

    def __init__(self, policy_text: str, *, threshold: float = ANSWER_THRESHOLD) -> None:
        self.threshold = threshold
        self._policy_text = policy_text
        self._index = _PolicyIndex(policy_text)
        self._other_indexes: dict[str, _PolicyIndex] = {}

    # -- the rule plugged into the fake ---------------------------------------------------------------

    def reply(self, body: dict[str, Any]) -> Reply | None:
        """The fake's rule: a reply for a triage or an answer request, ``None`` for anything else (the
        summariser gets the fake's default text)."""
        tools = {str(t.get("name")): t for t in body.get("tools") or [] if isinstance(t, dict)}
        message = last_user_text(body, last_block=True)
        if TRIAGE_TOOL in tools:
            taxonomy = _taxonomy(tools[TRIAGE_TOOL])
            verdict = self.triage(_new_message(message), taxonomy)
            return Reply(tool_use={"name": TRIAGE_TOOL, "input": verdict.tool_input()})
        if ESCALATE_TOOL in tools:
            return self.answer(message, policy_text=_policy_of(body))
        return None

    # -- triage ------------------------------------------------------------------------------------

    def triage(self, message: str, taxonomy: Sequence[str]) -> DemoTriage:
        """The verdict on ``message`` with an intent from ``taxonomy``."""
        passage, score = self._index.best(message)
        wants_human = bool(_WANTS_HUMAN.search(message))
        needs_account = bool(_NEEDS_ACCOUNT_DATA.search(message))
        intent = _intent(message, passage if score >= self.threshold else None, taxonomy)
        if wants_human:
            confidence, reason = 0.3, "The customer asks to talk to a person."
        elif needs_account:
            confidence = 0.35
            reason = "It needs the customer's own order or account, which the policy cannot answer."
        elif passage is not None and score >= self.threshold:
            # 0.6..1.0 of the question's information found -> 0.80..0.97
            confidence = round(min(0.97, 0.55 + 0.42 * score), 2)
            reason = _clip(f"Covered by the policy: {passage.heading}.")
        else:
            confidence = round(0.5 * score, 2)  # below 0.3: nothing in the policy answers it
            reason = "No part of the policy covers this message."
        return DemoTriage(
            intent=intent,
            urgency=_urgency(message),
            sentiment=_sentiment(message),
            language=detect_language(message),
            wants_human=wants_human,
            confidence=confidence,
            reason=reason,
            passage=passage,
            score=score,
            solved=bool(SOLVED_PATTERN.search(message)),
        )

    # -- answers -----------------------------------------------------------------------------------

    def answer(self, message: str, *, policy_text: str | None = None) -> Reply:
        """A short answer from the best passage, or an ``escalate_to_human`` call when none covers it."""
        index = self._index_for(policy_text)
        if _WANTS_HUMAN.search(message):
            return _escalate("The customer asks for a person.")
        passage, score = index.best(message)
        if passage is None or score < self.threshold:
            return _escalate("The policy does not cover this question.")
        return Reply(text=short_answer(passage, message))

    def _index_for(self, policy_text: str | None) -> _PolicyIndex:
        if policy_text is None or policy_text.strip() == self._policy_text.strip():
            return self._index
        index = self._other_indexes.get(policy_text)
        if index is None:
            self._other_indexes = {policy_text: (index := _PolicyIndex(policy_text))}  # keep one
        return index


class _PolicyIndex:
    """The policy's passages in a BM25 index (as the offline responder's), with a tie-break for a demo
    answer: among passages that match the question equally well, the one whose own text (not only its
    heading) holds more of the question's words, then the one whose own heading (not its chapter's) does,
    then the first in the document (a section's first paragraph usually states its rule)."""

    TIE = 0.01  # scores this close are equal

    def __init__(self, policy_text: str) -> None:
        passages = split_passages(policy_text)
        self._position = {id(p): i for i, p in enumerate(passages)}
        self._index: Bm25Index[Passage] = Bm25Index((p, p.heading, p.text) for p in passages)

    def best(self, message: str) -> tuple[Passage | None, float]:
        found = self._index.search(message, len(self._position))
        if not found:
            return None, 0.0
        top = found[0][1]
        asked = set(tokenize(message))
        wants_duration = bool(_ASKS_DURATION.search(message))

        def key(item: tuple[Passage, float]) -> tuple[int, int, int]:
            passage = item[0]
            in_text = len(asked & set(tokenize(passage.text)))
            if wants_duration and _DURATION.search(passage.text):
                in_text += 1  # "how long ...?" is answered by a passage that states a period
            own_heading = set(tokenize(passage.headings[-1])) if passage.headings else set()
            return -in_text, -len(asked & own_heading), self._position[id(passage)]

        return min((item for item in found if item[1] >= top - self.TIE), key=key)


def short_answer(passage: Passage, question: str) -> str:
    """The passage's sentences that share the most words with the question (at most two, in the
    passage's order), as a chat answer. A chosen sentence that introduces a list (ends with a colon)
    keeps the list items that name something the question does, else the first three."""
    asked = set(tokenize(question))
    units: list[tuple[str, list[str]]] = []  # (sentence, the list items it introduces)
    for line in passage.text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line[:2] in ("- ", "* ") and units:
            units[-1][1].append(line[2:].strip())
            continue
        units.extend((sentence, []) for sentence in _SENTENCE_END.split(line) if sentence.strip())
    if not units:
        return passage.text.strip()

    heading = set(tokenize(passage.heading))

    def overlap(i: int) -> int:
        sentence, items = units[i]
        return len(asked & set(tokenize(" ".join([sentence, *items]))))

    ranked = sorted(range(len(units)), key=lambda i: (-overlap(i), i))
    chosen = sorted(i for i in ranked[:ANSWER_MAX_SENTENCES] if i == ranked[0] or overlap(i) > 0)
    parts: list[str] = []
    for i in chosen:
        sentence, items = units[i]
        if items and sentence.rstrip().endswith(":"):
            # the items naming what the question asks beyond the introduction ("... to the UK?")
            beyond = asked - heading - set(tokenize(sentence))
            named = [item for item in items if beyond & set(tokenize(item))]
            sentence += "".join(f"\n- {item}" for item in (named or items[:3]))
        parts.append(sentence)
    answer = " ".join(parts)
    if len(answer) > ANSWER_SHORT_CHARS and len(parts) > 1 and "\n" not in answer:
        answer = parts[chosen.index(ranked[0])]  # two long sentences: the one that matches best
    if len(answer) > ANSWER_MAX_CHARS and len(parts) > 1:
        answer = parts[chosen.index(ranked[0])]
    if len(answer) > ANSWER_MAX_CHARS:
        answer = answer[: ANSWER_MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return f"{answer}\n\nIs there anything else I can help you with?"


def _escalate(reason: str) -> Reply:
    return Reply(tool_use={"name": ESCALATE_TOOL, "input": {"reason": reason}})


def _intent(message: str, passage: Passage | None, taxonomy: Sequence[str]) -> str:
    """The taxonomy entry whose words the message (and the heading of the passage it matched) uses most."""
    said = set(tokenize(message))
    heading = set(tokenize(passage.heading)) if passage is not None else set()
    best, best_score = "other" if "other" in taxonomy else taxonomy[-1], 0.0
    for intent in taxonomy:
        if intent == "other":
            continue
        words = set(tokenize(INTENT_WORDS.get(intent, intent.replace("_", " "))))
        score = len(said & words) + 0.5 * len(heading & words)
        if score > best_score:
            best, best_score = intent, score
    return best


def _urgency(message: str) -> str:
    if _URGENT.search(message):
        return "urgent"
    if _HIGH.search(message):
        return "high"
    return "low" if message.rstrip().endswith("?") else "normal"


def _sentiment(message: str) -> str:
    negative, positive = len(_NEGATIVE.findall(message)), len(_POSITIVE.findall(message))
    if negative > positive:
        return "negative"
    return "positive" if positive > negative else "neutral"


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _taxonomy(tool: dict[str, Any]) -> tuple[str, ...]:
    intent = ((tool.get("input_schema") or {}).get("properties") or {}).get("intent") or {}
    values = intent.get("enum")
    return tuple(str(v) for v in values) if isinstance(values, list) and values else ("other",)


def _new_message(triage_prompt: str) -> str:
    """The customer's message inside a triage prompt (``<new_message>`` ... ``</new_message>``)."""
    return new_message_of(triage_prompt)


def _policy_of(body: dict[str, Any]) -> str | None:
    """The knowledge an answer request carries: the text of its ``document`` blocks (one text block per
    section), else a ``<policy>`` element of its system prompt (the layout before cited documents)."""
    texts: list[str] = []
    for message in body.get("messages") or []:
        for block in message.get("content") or [] if isinstance(message, dict) else []:
            if isinstance(block, dict) and block.get("type") == "document":
                content = (block.get("source") or {}).get("content")
                items = [{"text": content}] if isinstance(content, str) else content or []
                texts += [str(item.get("text", "")) for item in items if isinstance(item, dict)]
    if texts:
        return "\n\n".join(texts)
    for block in body.get("system") or []:
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            found = _POLICY.search(block["text"])
            if found:
                return found.group(1)
    return None
