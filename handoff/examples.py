"""Agent replies become examples; the most similar approved ones go into later answer prompts.

Every agent message in a handed-off conversation stores an :class:`~support.db.models.Example`: the
customer message it answers, the context the agent saw (running summary and recent turns), the bot's
draft if the agent started from one, what the agent sent, how much they changed (Levenshtein distance
via rapidfuzz, and that distance over the longer text), intent, agent and policy version.

Retrieval sits behind :class:`ExampleIndex` (``search(query, k) -> [(example, score)]``); the shipped
one is lexical (:class:`LexicalExampleIndex`, the same normalised BM25 as the offline responder), and an
embedding index can replace it without touching callers. Each process keeps its index in memory and
reloads it when the ``examples_version`` counter in Redis moves (one GET per turn), so an example stored
on one process is retrievable on every process for the next turn.

Per-intent edit rates say where the bot is trusted: an intent whose drafts agents send unchanged is one
the bot could answer alone.

An example is shown to other customers' conversations, so it is stored scrubbed (:mod:`handoff.scrub`):
question, context, draft and reply carry placeholders instead of the customer's PII, names and
reference numbers. It is approved on its own only when :func:`~handoff.scrub.review_flags` finds nothing
(else it waits, ``pending``, for an admin), and it is never offered back to the conversation it came
from: retrieval takes ``exclude_conversation``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rapidfuzz.distance import Levenshtein
from sqlalchemy import case, func
from sqlalchemy import delete as sa_delete
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from handoff.scrub import (
    DEFAULT_LIMITS,
    NOBODY,
    ExampleScrubber,
    People,
    ReviewLimits,
    flags_list,
    flags_text,
    review_flags,
)
from support import keys
from support.db.models import Example, utcnow
from support.errors import NotFound, ValidationFailed
from support.llm.offline import Bm25Index
from support.llm.offline import Example as PromptExample
from support.redaction import Redactor
from support.redis_client import RedisClient

STATUSES = ("pending", "approved", "retired")
MAX_EXAMPLE_CHARS = 4000
# Version of the scrubbing rules rows are stored under; rows below it are scrubbed again at start-up.
REDACTION_VERSION = 1
RESCRUB_BATCH_ROWS = 200  # rows per transaction when re-scrubbing: bounded memory, short locks


def edit_stats(draft: str | None, sent: str) -> tuple[int | None, float | None]:
    """(characters changed, changed share 0..1) from the bot's draft to what the agent sent."""
    if draft is None:
        return None, None
    distance = Levenshtein.distance(draft, sent)
    longer = max(len(draft), len(sent)) or 1
    return distance, round(distance / longer, 4)


class ExampleIndex(Protocol):
    """Retrieval of examples for a customer message; best first, scores 0..1."""

    def search(self, query: str, k: int) -> list[tuple[Example, float]]:
        """At most ``k`` examples similar to ``query``."""
        ...


class LexicalExampleIndex:
    """BM25 over the customer message (as title) and the agent's answer (as body)."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self._index: Bm25Index[Example] = Bm25Index((e, e.customer_message, e.agent_text) for e in examples)

    def search(self, query: str, k: int) -> list[tuple[Example, float]]:
        return self._index.search(query, k)


@dataclass(frozen=True)
class EditRate:
    """How often agents change the bot's drafts for one intent."""

    intent: str
    examples: int
    with_draft: int
    edited: int
    edit_rate: float | None
    mean_edit_ratio: float | None

    def to_json(self) -> dict[str, Any]:
        """As the admin API returns it."""
        return vars(self).copy()


def example_json(e: Example) -> dict[str, Any]:
    """An example as the admin API returns it (``review_flags`` as a list)."""
    data = e.model_dump()
    data["review_flags"] = flags_list(e.review_flags)
    data["created_at"] = e.created_at.isoformat()
    data["updated_at"] = e.updated_at.isoformat()
    return data


def prompt_example(e: Example) -> PromptExample:
    """The question/answer pair that prompts and the offline responder use, tagged with its origin."""
    return PromptExample(question=e.customer_message, answer=e.agent_text, conversation_id=e.conversation_id)


class ExampleService:
    """Storage, admin changes, edit rates and retrieval of examples. Clients are passed in."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: RedisClient,
        *,
        auto_approve: bool = True,
        scrubber: ExampleScrubber | None = None,
        limits: ReviewLimits = DEFAULT_LIMITS,
        index_factory: type[LexicalExampleIndex] = LexicalExampleIndex,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._auto_approve = auto_approve
        # Without one passed in, still the redactor's PII detectors (never raw text by default).
        self._scrubber = scrubber or ExampleScrubber(Redactor())
        self._limits = limits
        self._own: dict[str, int] = {}  # conversation id -> how many approved examples came from it
        self._index_factory = index_factory
        self._index: ExampleIndex = index_factory([])
        self._curated: list[PromptExample] = []
        self._loaded_version: int | None = None
        self._reload_lock = asyncio.Lock()
        self._on_reload: list[Callable[[list[PromptExample]], None]] = []

    def on_reload(self, callback: Callable[[list[PromptExample]], None]) -> None:
        """Call ``callback(approved examples)`` after every reload (the offline responder re-indexes)."""
        self._on_reload.append(callback)

    # --- writing ----------------------------------------------------------------------------------

    async def record(
        self,
        *,
        conversation_id: str | None,
        seq: int | None,
        customer_message: str,
        context: str,
        bot_draft: str | None,
        agent_text: str,
        intent: str | None,
        agent_id: str | None,
        policy_version: str | None,
        people: People = NOBODY,
    ) -> Example:
        """Store what an agent sent (with the draft it edited, if any), scrubbed of ``people`` and PII.

        Approved at once only with auto-approval on and no review flags; otherwise ``pending``.
        """
        distance, ratio = edit_stats(bot_draft, agent_text)  # on what the agent really changed
        question = self._scrubber.scrub(customer_message, people).text
        reply = self._scrubber.scrub(agent_text, people).text
        scrubbed_context = self._scrubber.scrub(context, people).text[:MAX_EXAMPLE_CHARS]
        draft = self._scrubber.scrub(bot_draft, people).text if bot_draft is not None else None
        flags = review_flags(
            self._scrubber, question=question, reply=reply, context=scrubbed_context,
            original_lengths=(len(customer_message), len(agent_text)), limits=self._limits,
        )  # fmt: skip
        example = Example(
            conversation_id=conversation_id, seq=seq, customer_message=question[:MAX_EXAMPLE_CHARS],
            context=scrubbed_context, bot_draft=draft, agent_text=reply[:MAX_EXAMPLE_CHARS],
            edit_distance=distance, edit_ratio=ratio, intent=intent, agent_id=agent_id,
            policy_version=policy_version,
            status="approved" if self._auto_approve and not flags else "pending",
            review_flags=flags_text(flags), redaction_version=REDACTION_VERSION,
        )  # fmt: skip
        async with self._sessions() as session:
            session.add(example)
            await session.commit()
        await self._bump()
        return example

    async def rescrub_legacy(self) -> int:
        """Scrub once the rows stored before redaction existed; returns how many were changed.

        An approved example that fails review goes back to ``pending`` (and out of the curated block):
        it was approved on the old, unchecked rules. The conversation's people are not known any more
        (the visitor record may be long gone), so only the redactor and the reference patterns apply.
        Idempotent and safe to race: scrubbing scrubbed text changes nothing.
        """
        changed = 0
        while True:
            async with self._sessions() as session:
                query = (
                    select(Example)
                    .where(col(Example.redaction_version) < REDACTION_VERSION)
                    .limit(RESCRUB_BATCH_ROWS)
                )
                rows = list((await session.execute(query)).scalars().all())
                if not rows:
                    break
                for row in rows:
                    self._rescrub(row)
                await session.commit()
                changed += len(rows)
        if changed:
            await self._bump()
        return changed

    def _rescrub(self, row: Example) -> None:
        scrub = self._scrubber.scrub
        original = (len(row.customer_message), len(row.agent_text))
        row.customer_message = scrub(row.customer_message).text[:MAX_EXAMPLE_CHARS]
        row.agent_text = scrub(row.agent_text).text[:MAX_EXAMPLE_CHARS]
        row.context = scrub(row.context).text[:MAX_EXAMPLE_CHARS]
        row.bot_draft = scrub(row.bot_draft).text if row.bot_draft is not None else None
        flags = review_flags(
            self._scrubber, question=row.customer_message, reply=row.agent_text, context=row.context,
            original_lengths=original, limits=self._limits,
        )  # fmt: skip
        row.review_flags = flags_text(flags)
        if flags and row.status == "approved":
            row.status, row.curated = "pending", False
        row.redaction_version = REDACTION_VERSION
        row.updated_at = utcnow()

    async def update(
        self,
        example_id: str,
        *,
        agent_text: str | None = None,
        customer_message: str | None = None,
        status: str | None = None,
        curated: bool | None = None,
    ) -> Example:
        """An admin approves, edits, retires or curates an example.

        Edited texts are scrubbed like recorded ones (an admin pasting a card number does not put it into
        prompts) and the review flags are recomputed; an admin may still approve a flagged example.
        """
        if status is not None and status not in STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}")
        for name, text in (("agent_text", agent_text), ("customer_message", customer_message)):
            if text is not None and not text.strip():
                raise ValidationFailed(f"{name} must not be empty")
            if text is not None and len(text) > MAX_EXAMPLE_CHARS:
                raise ValidationFailed(f"{name} is longer than {MAX_EXAMPLE_CHARS} characters")
        async with self._sessions() as session:
            example = await session.get(Example, example_id)
            if example is None:
                raise NotFound(f"no example {example_id}")
            if agent_text is not None:
                example.agent_text = self._scrubber.scrub(agent_text).text
            if customer_message is not None:
                example.customer_message = self._scrubber.scrub(customer_message).text
            if agent_text is not None or customer_message is not None:
                flags = review_flags(
                    self._scrubber, question=example.customer_message, reply=example.agent_text,
                    context=example.context, limits=self._limits,
                )  # fmt: skip
                example.review_flags = flags_text(flags)
            if status is not None:
                example.status = status
                if status != "approved":
                    example.curated = False  # retiring or un-approving takes it out of every prompt
            if curated is not None:
                example.curated = curated
            if example.curated and example.status != "approved":
                raise ValidationFailed("only approved examples can be curated")
            example.updated_at = utcnow()
            await session.commit()
            await session.refresh(example)
        await self._bump()
        return example

    async def _bump(self) -> None:
        await self._redis.incr(keys.examples_version())

    # --- reading ----------------------------------------------------------------------------------

    async def find(
        self,
        *,
        status: str | None = None,
        intent: str | None = None,
        curated: bool | None = None,
        limit: int = 200,
    ) -> list[Example]:
        """Examples, newest first."""
        if status is not None and status not in STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}")
        query = select(Example).order_by(col(Example.created_at).desc()).limit(limit)
        if status is not None:
            query = query.where(col(Example.status) == status)
        if intent is not None:
            query = query.where(col(Example.intent) == intent)
        if curated is not None:
            query = query.where(col(Example.curated) == curated)
        async with self._sessions() as session:
            return list((await session.execute(query)).scalars().all())

    async def edit_rates(self) -> list[EditRate]:
        """Per intent: examples, how many had a bot draft, how many of those the agent changed."""
        changed = case((col(Example.edit_distance) > 0, 1), else_=0)
        query = (
            sa_select(
                col(Example.intent),
                func.count(),
                func.count(col(Example.bot_draft)),
                func.sum(changed),
                func.avg(col(Example.edit_ratio)),
            )
            .where(col(Example.status) != "retired")
            .group_by(col(Example.intent))
            .order_by(col(Example.intent))
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        rates = []
        for intent, total, with_draft, edited_count, mean_ratio in rows:
            edited = int(edited_count or 0)
            rates.append(
                EditRate(
                    intent=intent or "unknown", examples=int(total), with_draft=int(with_draft),
                    edited=edited, edit_rate=round(edited / with_draft, 4) if with_draft else None,
                    mean_edit_ratio=round(float(mean_ratio), 4) if mean_ratio is not None else None,
                )
            )  # fmt: skip
        return rates

    async def refresh(self) -> None:
        """Reload the in-process index if examples changed anywhere since the last load."""
        raw = await self._redis.get(keys.examples_version())
        version = int(raw or 0)
        if version == self._loaded_version:
            return
        async with self._reload_lock:
            if version == self._loaded_version:
                return
            approved = await self.find(status="approved", limit=5000)
            self._index = self._index_factory(approved)
            self._curated = [
                prompt_example(e) for e in sorted(approved, key=lambda e: e.created_at) if e.curated
            ]
            self._own = {}
            for e in approved:
                if e.conversation_id is not None:
                    self._own[e.conversation_id] = self._own.get(e.conversation_id, 0) + 1
            self._loaded_version = version
            approved_prompt = [prompt_example(e) for e in approved]
            for callback in self._on_reload:
                callback(approved_prompt)

    @property
    def curated(self) -> list[PromptExample]:
        """Curated examples for the cached block of every answer prompt (oldest first: stable bytes)."""
        return self._curated

    def similar(
        self, message: str, k: int, min_score: float = 0.0, *, exclude_conversation: str | None = None
    ) -> list[tuple[Example, float]]:
        """The ``k`` most similar approved examples scoring at least ``min_score``.

        ``exclude_conversation``: never those recorded in that conversation (a conversation is not
        offered its own reply back: it would echo its specifics and teach nothing).
        """
        extra = self._own.get(exclude_conversation, 0) if exclude_conversation else 0
        found = self._index.search(message, k + extra)
        return [
            (e, s)
            for e, s in found
            if s >= min_score and (exclude_conversation is None or e.conversation_id != exclude_conversation)
        ][:k]

    def for_prompt(
        self, message: str, k: int, min_score: float, *, exclude_conversation: str | None = None
    ) -> list[PromptExample]:
        """Retrieved examples for an answer prompt (curated ones are already in the cached block)."""
        found = self.similar(
            message, k + len(self._curated), min_score, exclude_conversation=exclude_conversation
        )
        return [prompt_example(e) for e, _ in found if not e.curated][:k]

    # --- customer data (export, erasure, retention) -------------------------------------------------

    async def of_conversations(self, conversation_ids: Sequence[str]) -> list[Example]:
        """Every example that came from these conversations, oldest first."""
        if not conversation_ids:
            return []
        query = (
            select(Example)
            .where(col(Example.conversation_id).in_(list(conversation_ids)))
            .order_by(col(Example.created_at))
        )
        async with self._sessions() as session:
            return list((await session.execute(query)).scalars().all())

    async def erase_conversations(self, conversation_ids: Sequence[str], *, unlink: bool = False) -> int:
        """Delete the examples that came from these conversations (``unlink``: keep them, without the
        link to the conversation); every process drops them from its index before its next turn."""
        if not conversation_ids:
            return 0
        where = col(Example.conversation_id).in_(list(conversation_ids))
        if unlink:
            stmt: Any = sa_update(Example).where(where).values(conversation_id=None, seq=None)
        else:
            stmt = sa_delete(Example).where(where)
        async with self._sessions() as session:
            count = int((await session.execute(stmt)).rowcount or 0)  # type: ignore[attr-defined]
            await session.commit()
        if count:
            await self._bump()
        return count
