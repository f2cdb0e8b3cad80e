"""Things that happened, told to whoever listens (the outbound webhooks): a port the services call.

Services say what happened (``ticket.created``, ``conversation.handed_off``...) through an
:class:`EventSink` passed in by the composition root; they do not know who listens or how it is
delivered. The webhook service (``support.webhooks``) is the sink in a running system: it records one
delivery per subscribed endpoint and queues the jobs that send them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

EVENT_TYPES: tuple[str, ...] = (
    "ticket.created",
    "ticket.replied",
    "ticket.queued",
    "ticket.resolved",
    "conversation.handed_off",
    "conversation.resolved",
    "rating.created",
)


class EventSink(Protocol):
    """Where services report events; ``emit`` must not fail the caller's work (it logs instead)."""

    async def emit(self, event_type: str, data: Mapping[str, Any], *, event_id: str | None = None) -> None:
        """Record ``event_type`` (one of :data:`EVENT_TYPES`) with its JSON-able ``data``.

        ``event_id``: a stable identity for the event, when the caller may report it more than once (a job
        that is retried after a crash): an event already recorded under that id is not recorded again.
        """
        ...


class NoEvents:
    """A sink that drops everything (tests and tools that run services without webhooks)."""

    async def emit(self, event_type: str, data: Mapping[str, Any], *, event_id: str | None = None) -> None:
        return None
