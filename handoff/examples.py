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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from rapidfuzz.distance import Levenshtein
from sqlalchemy import case, func
from sqlalchemy import delete as sa_delete
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support import keys
from support.db.models import Example, utcnow
from support.errors import NotFound, ValidationFailed
from support.llm.offline import Bm25Index
from support.llm.offline import Example as PromptExample

STATUSES = ("pending", "approved", "retired")
MAX_EXAMPLE_CHARS = 4000


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
    """An example as the admin API returns it."""
    data = e.model_dump()
    data["created_at"] = e.created_at.isoformat()
    data["updated_at"] = e.updated_at.isoformat()
    return data


class ExampleService:
    """Storage, admin changes, edit rates and retrieval of examples. Clients are passed in."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        *,
        auto_approve: bool = True,
        index_factory: type[LexicalExampleIndex] = LexicalExampleIndex,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._auto_approve = auto_approve
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
    ) -> Example:
        """Store what an agent sent (with the draft it edited, if any)."""
        distance, ratio = edit_stats(bot_draft, agent_text)
        example = Example(
            conversation_id=conversation_id, seq=seq, customer_message=customer_message[:MAX_EXAMPLE_CHARS],
            context=context[:MAX_EXAMPLE_CHARS], bot_draft=bot_draft, agent_text=agent_text,
            edit_distance=distance, edit_ratio=ratio, intent=intent, agent_id=agent_id,
            policy_version=policy_version, status="approved" if self._auto_approve else "pending",
        )  # fmt: skip
        async with self._sessions() as session:
            session.add(example)
            await session.commit()
        await self._bump()
        return example

    async def update(
        self,
        example_id: str,
        *,
        agent_text: str | None = None,
        status: str | None = None,
        curated: bool | None = None,
    ) -> Example:
        """An admin approves, edits, retires or curates an example."""
        if status is not None and status not in STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}")
        if agent_text is not None and not agent_text.strip():
            raise ValidationFailed("agent_text must not be empty")
        async with self._sessions() as session:
            example = await session.get(Example, example_id)
            if example is None:
                raise NotFound(f"no example {example_id}")
            if agent_text is not None:
                example.agent_text = agent_text
            if status is not None:
                example.status = status
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
        self, *, status: str | None = None, intent: str | None = None, limit: int = 200
    ) -> list[Example]:
        """Examples, newest first."""
        query = select(Example).order_by(col(Example.created_at).desc()).limit(limit)
        if status is not None:
            query = query.where(col(Example.status) == status)
        if intent is not None:
            query = query.where(col(Example.intent) == intent)
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
                PromptExample(question=e.customer_message, answer=e.agent_text)
                for e in sorted(approved, key=lambda e: e.created_at)
                if e.curated
            ]
            self._loaded_version = version
            approved_prompt = [
                PromptExample(question=e.customer_message, answer=e.agent_text) for e in approved
            ]
            for callback in self._on_reload:
                callback(approved_prompt)

    @property
    def curated(self) -> list[PromptExample]:
        """Curated examples for the cached block of every answer prompt (oldest first: stable bytes)."""
        return self._curated

    def similar(self, message: str, k: int, min_score: float = 0.0) -> list[tuple[Example, float]]:
        """The ``k`` most similar approved examples scoring at least ``min_score``."""
        return [(e, s) for e, s in self._index.search(message, k) if s >= min_score]

    def for_prompt(self, message: str, k: int, min_score: float) -> list[PromptExample]:
        """Retrieved examples for an answer prompt (curated ones are already in the cached block)."""
        return [
            PromptExample(question=e.customer_message, answer=e.agent_text)
            for e, _ in self.similar(message, k + len(self._curated), min_score)
            if not e.curated
        ][:k]

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
