"""``/api/v1/agent/saved-replies``: thin handlers over :class:`~handoff.saved_replies.SavedReplyService`.

Any signed-in agent lists, adds and changes their own replies and reads the team's; admins also manage
the team's (docs/console.md, "Saved replies").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from litestar import Controller, Request, delete, get, patch, post
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from handoff.auth import agent_guard, agent_of
from handoff.saved_replies import ReplyChange, reply_json
from support.openapi_errors import AGENT_SECURITY, errors
from support.runtime import Runtime

S403 = "An agent adding to or changing the team's library (admins only) (`forbidden`)"
S404 = "No such reply, or another agent's personal reply (the same answer) (`not_found`)"
S400 = "A bad field, an unknown placeholder, or the library is full (`invalid_request`, says which)"


@dataclass
class SavedReplyIn:
    """A new saved reply; placeholders such as ``{{customer.name}}`` are filled when it is inserted."""

    title: str
    shortcut: str
    text: str
    scope: Literal["team", "personal"] = "personal"


@dataclass
class SavedReplyPatch:
    """A change to a saved reply: any of these; the rest stay as they are."""

    title: str | None = None
    shortcut: str | None = None
    text: str | None = None


@dataclass
class RenderIn:
    """Which conversation's customer the placeholders are filled for."""

    conversation_id: str


@dataclass
class FromExampleIn:
    """An approved example (a suggestion of the packet) saved as a reply; title and shortcut default to
    ones made from its intent."""

    example_id: str
    scope: Literal["team", "personal"] = "personal"
    title: str | None = None
    shortcut: str | None = None


class SavedReplyController(Controller):
    """The saved-reply library of the composer's picker and the Saved replies screen."""

    path = "/api/v1/agent/saved-replies"
    tags = ["agent"]  # noqa: RUF012 - Litestar reads it as a class attribute
    guards = [agent_guard]  # noqa: RUF012
    security = AGENT_SECURITY

    @get("/", summary="The team's saved replies and mine, by shortcut", responses=errors(400, 503))
    async def list_replies(
        self, request: Request[Any, Any, Any], runtime: Runtime, q: str | None = None
    ) -> list[dict[str, Any]]:
        """``q`` filters by title, shortcut or text (case-insensitive)."""
        agent = agent_of(request)
        return [reply_json(r, agent) for r in await runtime.saved_replies.visible(agent, q)]

    @post(
        "/", status_code=HTTP_201_CREATED, summary="Add a saved reply",
        responses=errors(400, 403, 409, 503, s400=S400, s403=S403,
                         s409="The library has a reply with this shortcut (`conflict`)"),
    )  # fmt: skip
    async def create(
        self, data: SavedReplyIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """``personal``: only I see it; ``team``: every agent sees it (admins only)."""
        agent = agent_of(request)
        change = ReplyChange(title=data.title, shortcut=data.shortcut, text=data.text)
        return reply_json(await runtime.saved_replies.create(agent, data.scope, change), agent)

    @post(
        "/from-example", status_code=HTTP_201_CREATED, summary="Save an approved example as a reply",
        responses=errors(400, 403, 404, 409, 503, s400=S400, s403=S403,
                         s409="The example is not approved, or the shortcut is taken (`conflict`)"),
    )  # fmt: skip
    async def from_example(
        self, data: FromExampleIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """Its scrubbed ``[NAME]``, ``[AGENT_NAME]`` and ``[EMAIL]`` become placeholders."""
        agent = agent_of(request)
        reply = await runtime.saved_replies.from_example(
            data.example_id, agent, data.scope, title=data.title, shortcut=data.shortcut
        )
        return reply_json(reply, agent)

    @patch(
        "/{reply_id:str}", summary="Change a saved reply",
        responses=errors(400, 403, 404, 409, 503, s400=S400, s403=S403, s404=S404),
    )  # fmt: skip
    async def update(
        self, reply_id: str, data: SavedReplyPatch, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        """Title, shortcut or text; the scope stays."""
        agent = agent_of(request)
        change = ReplyChange(title=data.title, shortcut=data.shortcut, text=data.text)
        return reply_json(await runtime.saved_replies.update(reply_id, agent, change), agent)

    @delete(
        "/{reply_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Remove a saved reply",
        responses=errors(403, 404, 503, s403=S403, s404=S404),
    )  # fmt: skip
    async def remove(self, reply_id: str, request: Request[Any, Any, Any], runtime: Runtime) -> None:
        """Gone from every picker at its next search."""
        await runtime.saved_replies.delete(reply_id, agent_of(request))

    @post(
        "/{reply_id:str}/render", status_code=HTTP_200_OK,
        summary="A saved reply filled in for a conversation's customer",
        responses=errors(404, 503, s404=S404),
    )  # fmt: skip
    async def render(
        self, reply_id: str, data: RenderIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, str]:
        """What the composer inserts: placeholders filled, missing values replaced by fallbacks."""
        text = await runtime.saved_replies.render(reply_id, agent_of(request), data.conversation_id)
        return {"text": text}
