"""What a turn needs from the human side, as ports: the handoff service, the agents' examples, routing.

``support`` never imports ``handoff`` (docs/architecture.md, "Layers"): the human side builds on the
conversation store, so the conversation layer reaching back into it would make the two packages one
tangle. The turn says here what it calls; ``handoff.service.HandoffService``,
``handoff.examples.ExampleService`` and ``handoff.routing.RoutingPolicy`` fit these protocols structurally,
and the composition root (``support.runtime``) passes them in. A test or another deployment can pass any
other implementation (a routing policy of its own, no handoff service at all).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from support.llm.offline import Example


class QueuePositions(Protocol):
    """The agent queue, as far as a customer's turn reads it."""

    async def position(self, conversation_id: str) -> int | None:
        """1-based place of a waiting conversation; None when it is not waiting (claimed, or gone)."""
        ...


class Availability(Protocol):
    """Who can answer a waiting customer now."""

    @property
    def online(self) -> bool:
        """Some agent's presence is online (they chose it and a console of theirs is open)."""
        ...

    @property
    def available(self) -> bool:
        """Some agent is online and the team is within its business hours."""
        ...


class HandoffPort(Protocol):
    """Puts a conversation in front of people and tells them when the queue moves."""

    @property
    def queue(self) -> QueuePositions:
        """The queue, to tell a waiting customer their position."""
        ...

    async def availability(self) -> Availability:
        """Whether an agent is online, and whether someone can answer now (the widget says so when not)."""
        ...

    async def enqueue(
        self,
        conversation_id: str,
        *,
        reason: str,
        preview: str,
        intent: str | None = None,
        urgency: str | None = None,
        sentiment: str | None = None,
        ticket: Mapping[str, Any] | None = None,
        language: str | None = None,
    ) -> None:
        """Queue a handed-off conversation with its reason code and triage; ``ticket``: what the queue shows
        of a ticket's conversation (id, subject, channel, e-mail), None for a chat."""
        ...

    async def queue_changed(self, *, announced: str | None = None) -> None:
        """The queue moved; ``announced`` already told its customer its position."""
        ...

    async def closed_by_customer(self, conversation_id: str) -> None:
        """The customer ended a conversation that was waiting for or with people."""
        ...


class ExamplesPort(Protocol):
    """What agents wrote, as examples for the answer prompt."""

    @property
    def curated(self) -> list[Example]:
        """The curated examples for the cached block of every answer prompt, in a stable order."""
        ...

    def for_prompt(
        self, message: str, k: int, min_score: float, *, exclude_conversation: str | None = None
    ) -> list[Example]:
        """Up to ``k`` examples most similar to ``message`` (none from ``exclude_conversation``)."""
        ...

    async def refresh(self) -> None:
        """Reload if the examples changed anywhere since the last load."""
        ...


class Verdict(Protocol):
    """Answer, or hand off with a reason code."""

    @property
    def answer(self) -> bool: ...

    @property
    def reason(self) -> str: ...


class RoutingPort(Protocol):
    """When a turn goes to a human, and why: a pure policy (no I/O), called once per triaged turn."""

    def decide(
        self,
        *,
        wants_human: bool,
        confidence: float,
        urgency: str | None,
        message: str,
        intent: str | None = None,
        sentiment: str | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> Verdict:
        """The verdict for one turn; ``history`` holds ``(role, text)`` before ``message``."""
        ...
