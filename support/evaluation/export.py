"""``switchboard eval export``: archived conversations turned into evaluation cases (docs/evaluation.md).

One conversation gives at most one case, so a case never contradicts another built from the same turns:

- handed off, and a person's reply shows the bot could have answered (the handoff's reason is only that
  the bot was unsure: ``low_confidence`` or ``too_many_bot_turns``), and no admin retired the example made
  of that reply: ``expect.handoff: false`` with the customer turns up to the person's first reply and that
  reply in ``reference`` (an answer *like* it is expected; the judge reads it, no phrase is required of it);
- any other handoff: ``expect.handoff: true`` with the customer turns up to the handoff;
- answered by the bot alone and confirmed (the customer said it was solved or rated it 4 or 5):
  ``expect.handoff: false`` with the customer turns up to the bot's last reply and that reply as
  ``reference``;
- anything else (never answered, unconfirmed) is skipped.

Every text that leaves is scrubbed as examples are (handoff.scrub: the redactor, the conversation's own
people, reference numbers); a case whose scrubbed text still looks like PII is dropped rather than written.
Ids come from the conversation id's hash, and an existing output file keeps its cases: exporting again
appends only cases it does not hold. Evaluation conversations (``eval-``) are never read.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support.db.models import (
    ArchivedConversation,
    ArchivedMessage,
    ConversationFact,
    Example,
    HandoffRecord,
    Rating,
)
from support.evaluation.cases import MAX_TEXT_CHARS, MAX_TURNS, parse_case
from support.evaluation.runner import CONVERSATION_PREFIX

CASE_ID_PREFIX = "conv-"
CASE_ID_HASH_CHARS = 16  # 64 bits of the conversation id's sha256: no collision in any archive we keep
# Handoffs that only say the bot was unsure: a person's reply then shows what an answer looks like.
UNSURE_REASONS = frozenset({"low_confidence", "too_many_bot_turns"})
GOOD_RATING = 4  # a rating of 4 or 5 confirms the bot's answer (as the reports count "confirmed")
PAGE = 200  # conversations read per query
PROGRESS_EVERY = 100


@dataclass(frozen=True)
class People:
    """Who a conversation was between: what the scrubbing replaces besides PII and reference numbers."""

    customer_name: str | None = None
    customer_email: str | None = None
    agent_name: str | None = None


class Scrubber(Protocol):
    """The scrubbing stored examples get (the composition root adapts ``handoff.scrub`` to it)."""

    def scrub(self, text: str, people: People) -> str:
        """``text`` with PII, the people and reference numbers replaced by placeholders."""
        ...

    def leaks(self, text: str) -> bool:
        """True when scrubbed ``text`` still looks like PII (examples with it wait for review)."""
        ...


def case_id(conversation_id: str) -> str:
    """A case's id: stable for a conversation, and revealing nothing of its id."""
    return CASE_ID_PREFIX + hashlib.sha256(conversation_id.encode("utf-8")).hexdigest()[:CASE_ID_HASH_CHARS]


@dataclass
class ExportStats:
    """What an export did (printed by the CLI)."""

    conversations: int = 0
    written: int = 0
    already: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # why a conversation gave no case
    kinds: dict[str, int] = field(default_factory=dict)  # which rule made each written case

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "conversations": self.conversations,
            "written": self.written,
            "already_in_file": self.already,
            "kinds": dict(sorted(self.kinds.items())),
            "skipped": dict(sorted(self.skipped.items())),
        }


@dataclass(frozen=True)
class Turn:
    seq: int
    role: str
    text: str
    at: datetime
    author_name: str | None


def _json(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _naive(at: datetime) -> datetime:
    return at.replace(tzinfo=None) if at.tzinfo is not None else at


def build_case(
    conversation_id: str,
    turns: Sequence[Turn],
    handoffs: Sequence[HandoffRecord],
    *,
    confirmed: bool,
    retired_seqs: frozenset[int] = frozenset(),
) -> tuple[dict[str, Any] | None, str]:
    """The unscrubbed case of one conversation, or None and why it gives none (pure: no I/O)."""
    messages = [t for t in turns if t.text.strip()]
    customer = [t for t in messages if t.role == "customer"]
    if not customer:
        return None, "no_customer_message"
    if handoffs:
        first = min(handoffs, key=lambda h: _naive(h.queued_at))
        handed_at = _naive(first.queued_at)
        agent = [t for t in messages if t.role == "agent" and _naive(t.at) >= handed_at]
        if first.reason in UNSURE_REASONS and agent and agent[0].seq not in retired_seqs:
            reply = agent[0]
            asked = [t for t in customer if t.seq < reply.seq]
            if asked:
                return _case(conversation_id, asked, handoff=False, reference=reply.text), "answer_like_agent"
        asked = [t for t in customer if _naive(t.at) <= handed_at]
        if not asked:
            return None, "handoff_before_any_message"
        return _case(conversation_id, asked, handoff=True), "handoff"
    if any(t.role == "agent" for t in messages):
        return None, "agent_without_handoff"
    bot = [t for t in messages if t.role == "assistant"]
    if not bot:
        return None, "unanswered"
    if not confirmed:
        return None, "not_confirmed"
    asked = [t for t in customer if t.seq < bot[-1].seq]
    return _case(conversation_id, asked, handoff=False, reference=bot[-1].text), "answered_confirmed"


def _case(
    conversation_id: str, asked: Sequence[Turn], *, handoff: bool, reference: str | None = None
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "id": case_id(conversation_id),
        "turns": [t.text[:MAX_TEXT_CHARS] for t in asked[-MAX_TURNS:]],  # the turns nearest the decision
        "expect": {"handoff": handoff},
    }
    if reference is not None:
        case["reference"] = reference[:MAX_TEXT_CHARS]
    return case


def scrub_case(case: dict[str, Any], scrubber: Scrubber, people: People) -> dict[str, Any] | None:
    """The case with every customer turn and its reference scrubbed; None when PII-shaped text survives."""
    turns = [scrubber.scrub(t, people) for t in case["turns"]]
    reference = scrubber.scrub(case["reference"], people) if "reference" in case else None
    if any(scrubber.leaks(t) for t in [*turns, reference or ""]):
        return None
    out = {**case, "turns": turns}
    if reference is not None:
        out["reference"] = reference
    return out


def existing_ids(path: Path) -> set[str]:
    """The case ids an output file already holds (its unreadable lines are left to ``eval`` to report)."""
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            ids.add(raw["id"])
    return ids


async def export_cases(
    sessions: async_sessionmaker[AsyncSession],
    scrubber: Scrubber,
    out: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> ExportStats:
    """Append to ``out`` the cases of the archived conversations started in [since, until), oldest first,
    at most ``limit`` new ones."""
    stats = ExportStats()
    seen = await asyncio.to_thread(existing_ids, out)
    new: list[str] = []
    offset = 0
    while limit is None or len(new) < limit:
        query = select(ArchivedConversation).where(
            col(ArchivedConversation.id).not_like(f"{CONVERSATION_PREFIX}%")
        )
        if since is not None:
            query = query.where(col(ArchivedConversation.created_at) >= since)
        if until is not None:
            query = query.where(col(ArchivedConversation.created_at) < until)
        query = query.order_by(col(ArchivedConversation.created_at), col(ArchivedConversation.id))
        async with sessions() as session:
            page = list((await session.execute(query.offset(offset).limit(PAGE))).scalars())
        if not page:
            break
        offset += len(page)
        for conversation in page:
            if limit is not None and len(new) >= limit:
                break
            stats.conversations += 1
            cid = case_id(conversation.id)
            if cid in seen:
                stats.already += 1
                continue
            line = await _one(sessions, scrubber, conversation, stats)
            if line is not None:
                new.append(line)
                seen.add(cid)
            if stats.conversations % PROGRESS_EVERY == 0:
                progress(f"{stats.conversations} conversations read, {len(new)} cases")
    if new:
        await asyncio.to_thread(_append, out, new)
    stats.written = len(new)
    progress(f"{stats.conversations} conversations read, {stats.written} new cases written to {out}")
    return stats


def _append(out: Path, lines: list[str]) -> None:
    """Append ``lines`` to ``out`` (a line break first if its last line has none)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:
        if out.stat().st_size and not out.read_bytes().endswith(b"\n"):
            f.write("\n")
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())


async def _one(
    sessions: async_sessionmaker[AsyncSession],
    scrubber: Scrubber,
    conversation: ArchivedConversation,
    stats: ExportStats,
) -> str | None:
    cid = conversation.id
    async with sessions() as session:
        events = (await session.execute(
            select(ArchivedMessage).where(col(ArchivedMessage.conversation_id) == cid,
                                          col(ArchivedMessage.type) == "message")
            .order_by(col(ArchivedMessage.seq))
        )).scalars().all()  # fmt: skip
        handoffs = (await session.execute(
            select(HandoffRecord).where(col(HandoffRecord.conversation_id) == cid)
        )).scalars().all()  # fmt: skip
        ratings = (await session.execute(
            select(Rating).where(col(Rating.conversation_id) == cid)
        )).scalars().all()  # fmt: skip
        fact = await session.get(ConversationFact, cid)
        retired = (await session.execute(
            select(Example.seq).where(col(Example.conversation_id) == cid, col(Example.status) == "retired")
        )).scalars().all()  # fmt: skip
    latest = max(ratings, key=lambda r: _naive(r.created_at)) if ratings else None
    confirmed = (latest is not None and latest.score >= GOOD_RATING) or bool(fact and fact.confirmed)
    turns = [Turn(e.seq, e.role, e.text, e.created_at, _text(_json(e.author).get("name"))) for e in events]
    case, why = build_case(
        cid, turns, handoffs, confirmed=confirmed, retired_seqs=frozenset(s for s in retired if s is not None)
    )
    if case is None:
        stats.skip(why)
        return None
    visitor = _json(conversation.visitor)
    agents = {t.author_name for t in turns if t.role == "agent" and t.author_name}
    people = People(
        customer_name=_text(visitor.get("name")),
        customer_email=_text(visitor.get("email")) or conversation.visitor_email,
    )
    scrubbed: dict[str, Any] | None = case
    names: list[str | None] = [*sorted(agents)] or [None]
    for agent_name in names:  # each person who replied, one pass each
        if scrubbed is None:
            break
        scrubbed = scrub_case(
            scrubbed, scrubber, People(people.customer_name, people.customer_email, agent_name)
        )
    if scrubbed is None:
        stats.skip("pii_survived_scrubbing")
        return None
    parse_case(scrubbed)  # what is written is a case `switchboard eval` reads
    stats.kinds[why] = stats.kinds.get(why, 0) + 1
    return json.dumps(scrubbed, ensure_ascii=False, sort_keys=True)
