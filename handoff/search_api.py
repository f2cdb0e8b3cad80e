"""The console's finding things: search, customer profiles and conversation labels. Thin handlers over
:mod:`support.search`, :mod:`handoff.profiles` and :mod:`handoff.labels`; every route needs an agent token
(401 without one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, get, put
from litestar.params import Parameter

from handoff.auth import agent_guard, agent_of
from handoff.labels import MAX_LABEL_CHARS, normalize_label
from support.openapi_errors import AGENT_SECURITY, errors
from support.runtime import Runtime
from support.search import DEFAULT_LIMIT, MAX_LIMIT

MAX_IDS = 100  # conversations per labels lookup: more rows than a console lists at once
LABEL_QUERY = Parameter(description="only conversations with this label", max_length=MAX_LABEL_CHARS)


@dataclass
class LabelsIn:
    """``PUT /api/v1/agent/conversations/{id}/labels``: the conversation's whole label list."""

    labels: list[str]


class WorkspaceController(Controller):
    """``/api/v1/agent``: search, customer profiles, labels."""

    path = "/api/v1/agent"
    tags = ["agent"]  # noqa: RUF012
    guards = [agent_guard]  # noqa: RUF012
    security = AGENT_SECURITY

    @get("/search", summary="Search messages, notes, tickets and customers", responses=errors(400, 503))
    async def search(
        self,
        runtime: Runtime,
        q: Annotated[str, Parameter(description='words, "a phrase", -excluded, OR')],
        label: Annotated[str | None, LABEL_QUERY] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> list[dict[str, Any]]:
        """Newest first; each result has a plain-text ``snippet`` and the ``highlights`` in it."""
        # As the profile does: `Billing` is the label `billing`; one no conversation could carry is a 400.
        wanted = normalize_label(label) if label else None
        return await runtime.search.search(q, label=wanted, limit=limit)

    @get("/customers/{visitor_id:str}", summary="A customer's profile", responses=errors(400, 404, 503))
    async def customer(
        self, visitor_id: str, runtime: Runtime, label: Annotated[str | None, LABEL_QUERY] = None
    ) -> dict[str, Any]:
        """Who they are; every conversation (state, dates, labels, resolution, rating) and ticket."""
        return await runtime.profiles.profile(visitor_id, label=label)

    @get("/labels", summary="Labels of several conversations", responses=errors(400, 503))
    async def labels_of(
        self,
        runtime: Runtime,
        conversation_id: Annotated[
            list[str], Parameter(description="repeated, at most 100", min_items=1, max_items=MAX_IDS)
        ],
    ) -> dict[str, list[str]]:
        """``{conversation_id: [labels]}`` for those that have any (the console's queue and list rows)."""
        return await runtime.labels.of(conversation_id)

    @get(
        "/conversations/{conversation_id:str}/labels",
        summary="A conversation's labels",
        responses=errors(404, 503),
    )
    async def labels(self, conversation_id: str, runtime: Runtime) -> dict[str, list[str]]:
        """Sorted."""
        return {"labels": await runtime.labels.get(conversation_id)}

    @put(
        "/conversations/{conversation_id:str}/labels", summary="Set a conversation's labels",
        responses=errors(400, 404, 503),
    )  # fmt: skip
    async def set_labels(
        self, conversation_id: str, data: LabelsIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, list[str]]:
        """Replaces the list; each label 1-32 of a-z 0-9 - _ (lower-cased), at most 10."""
        return {"labels": await runtime.labels.set(conversation_id, data.labels, agent_of(request).id)}
