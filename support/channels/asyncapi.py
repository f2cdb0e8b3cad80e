"""The WebSocket protocol as an AsyncAPI 3.0 document (served at ``/schema/asyncapi.json``).

The payload of every message is the JSON Schema msgspec generates for a typed frame: the widget's client
frames are the very structs the socket decodes with (:mod:`support.channels.widget_frames`); the frames the
server sends are built as dicts where they are sent, so they are described by the structs below, and
a test holds every frame a real server sends on real sockets valid against them. Unknown properties are
allowed everywhere (PROTOCOL.md lets either side add fields), so a new field never invalidates a frame.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from support import __version__
from support.channels.widget_frames import CLIENT_FRAME_TYPES, MAX_SEQ

WIDGET_SOCKET = "/api/v1/widget/ws"
AGENT_SOCKET = "/api/v1/agent/ws"
ASYNCAPI_PATH = "/schema/asyncapi.json"

Seq = Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ, description="Position of the event in its conversation.")]
ConversationId = Annotated[str, msgspec.Meta(min_length=1)]
RetryAfter = Annotated[int, msgspec.Meta(ge=0, description="Seconds until a retry can succeed.")]


class Person(msgspec.Struct):
    """Who is shown to the customer."""

    name: str


# --- server -> widget ------------------------------------------------------------------------------


class AckFrame(msgspec.Struct, tag_field="type", tag="ack"):
    """The customer's message is durably stored (sent again, with the same seq, for a repeated client_id)."""

    client_id: str
    seq: Seq


class DeltaFrame(msgspec.Struct, tag_field="type", tag="delta"):
    """Part of a reply being streamed (not persisted; the ``message`` with its ``reply_id`` follows)."""

    reply_id: str
    text: str


class AttachmentRef(msgspec.Struct, omit_defaults=True):
    """A file a message carries; its bytes: ``GET /api/v1/widget/attachments/{id}?token=`` (the customer) or
    ``GET /api/v1/agent/attachments/{id}`` (agents)."""

    id: str
    name: str
    content_type: Literal["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"]
    size: Annotated[int, msgspec.Meta(ge=1)]
    kind: Literal["image", "file"]
    width: int | UnsetType = UNSET
    height: int | UnsetType = UNSET


class ChatMessageFrame(msgspec.Struct, tag_field="type", tag="message"):
    """A persisted message (the customer's own included), live or replayed by ``resume``."""

    seq: Seq
    id: Annotated[str, msgspec.Meta(min_length=1)]
    role: Literal["customer", "assistant", "agent", "system"]
    text: str
    created_at: Annotated[str, msgspec.Meta(description="ISO 8601, UTC, with milliseconds.")]
    reply_id: str | UnsetType = UNSET
    author: Person | UnsetType = UNSET
    attachments: list[AttachmentRef] | UnsetType = UNSET


class StatusFrame(msgspec.Struct, tag_field="type", tag="status"):
    """A change of the conversation's state (persisted), or a new queue position (repeating its seq)."""

    seq: Seq
    state: Literal["bot", "queued", "agent", "resolved"]
    queue_position: Annotated[int, msgspec.Meta(ge=1)] | UnsetType = UNSET
    agent: Person | UnsetType = UNSET
    # Why a person (on ``queued``): the handoff reason code, which the widget words; whether any agent's
    # console was seen within the claim lease.
    reason: Annotated[str, msgspec.Meta(max_length=64)] | UnsetType = UNSET
    # On ``queued`` (and its position updates): an agent is online; someone can answer now (online and
    # within business hours); e-mail can be left instead (client frame ``contact``).
    agents_online: bool | UnsetType = UNSET
    agents_available: bool | UnsetType = UNSET
    email_reply: Literal[True] | UnsetType = UNSET


class ServerTypingFrame(msgspec.Struct, tag_field="type", tag="typing"):
    """The bot or the agent is typing (not persisted)."""

    role: Literal["assistant", "agent"]


class RatingRequestFrame(msgspec.Struct, tag_field="type", tag="rating_request"):
    """The conversation was resolved: ask the customer for a rating."""


class ReplyAbortedFrame(msgspec.Struct, tag_field="type", tag="reply_aborted"):
    """The streamed reply with this ``reply_id`` stopped and will not be completed: discard its deltas."""

    reply_id: str


class WidgetErrorFrame(msgspec.Struct, tag_field="type", tag="error"):
    """A refused frame (the socket stays open) or, before a close, why the socket ends."""

    code: str
    message: str
    client_id: str | UnsetType = UNSET
    retry_after: (
        Annotated[int, msgspec.Meta(ge=0, description="Seconds until a retry can succeed.")] | UnsetType
    ) = UNSET


class ContactSavedFrame(msgspec.Struct, tag_field="type", tag="contact_saved"):
    """The answer to ``contact``: replies are e-mailed to ``email`` too (not persisted)."""

    email: str


WIDGET_SERVER_FRAMES: tuple[type[msgspec.Struct], ...] = (
    AckFrame, DeltaFrame, ChatMessageFrame, StatusFrame, ServerTypingFrame, RatingRequestFrame,
    ReplyAbortedFrame, WidgetErrorFrame, ContactSavedFrame,
)  # fmt: skip


# --- agent console socket --------------------------------------------------------------------------


class AgentWatchFrame(msgspec.Struct, tag_field="type", tag="watch"):
    """Follow a conversation live before claiming it."""

    conversation_id: ConversationId


class AgentUnwatchFrame(msgspec.Struct, tag_field="type", tag="unwatch"):
    """Stop following a watched conversation."""

    conversation_id: ConversationId


class AgentTypingInFrame(msgspec.Struct, tag_field="type", tag="typing"):
    """The agent is typing in a conversation they hold (as ``POST .../typing``)."""

    conversation_id: ConversationId


class AgentPresenceInFrame(msgspec.Struct, tag_field="type", tag="presence"):
    """The agent sets their presence (as ``PUT /api/v1/agent/presence``)."""

    status: Literal["online", "away", "offline"]


AGENT_CLIENT_FRAMES: tuple[type[msgspec.Struct], ...] = (
    AgentWatchFrame,
    AgentUnwatchFrame,
    AgentTypingInFrame,
    AgentPresenceInFrame,
)


class AgentRef(msgspec.Struct):
    """An agent."""

    id: str
    name: str


class Draft(msgspec.Struct):
    """The bot's draft reply, for the agent to send or edit."""

    id: str
    text: str


class QueueFrame(msgspec.Struct, tag_field="type", tag="queue"):
    """The whole queue, on connect and whenever it changes (items as ``GET /api/v1/agent/queue``)."""

    items: list[dict[str, Any]]


class AssignedFrame(msgspec.Struct, tag_field="type", tag="assigned"):
    """A conversation was claimed, transferred or assigned automatically (``auto``; to anyone: the console
    filters)."""

    conversation_id: ConversationId
    agent: AgentRef
    auto: bool | msgspec.UnsetType = (
        msgspec.UNSET
    )  # true when automatic assignment gave it (docs/protocol.md)


class UnassignedFrame(msgspec.Struct, tag_field="type", tag="unassigned"):
    """An agent lost a conversation."""

    conversation_id: ConversationId
    agent_id: str
    reason: Literal[
        "released", "resolved", "returned_to_bot", "transferred", "lease_expired", "closed_by_customer",
        "erased",
    ]  # fmt: skip


class EventFrame(msgspec.Struct, tag_field="type", tag="event"):
    """A persisted ``message`` or ``status`` frame of a held or watched conversation (as the customer's)."""

    conversation_id: ConversationId
    event: ChatMessageFrame | StatusFrame


class CustomerTypingFrame(msgspec.Struct, tag_field="type", tag="typing"):
    """The customer of a held or watched conversation is typing."""

    conversation_id: ConversationId
    role: Literal["customer"]


class NoteFrame(msgspec.Struct, tag_field="type", tag="note"):
    """An internal note was added to a conversation."""

    conversation_id: ConversationId
    note: dict[str, Any]


class DraftFrame(msgspec.Struct, tag_field="type", tag="draft"):
    """The bot's draft finished after the handoff."""

    conversation_id: ConversationId
    draft: Draft


class AgentErrorFrame(msgspec.Struct, tag_field="type", tag="error"):
    """A frame the server refused (the socket stays open) or, before a close, why the socket ends."""

    code: str
    message: str


class PresenceFrame(msgspec.Struct, tag_field="type", tag="presence"):
    """An agent's presence changed (to every console); ``auto``: set away because their consoles are gone."""

    agent_id: str
    presence: Literal["online", "away", "offline"]
    auto: bool


AGENT_SERVER_FRAMES: tuple[type[msgspec.Struct], ...] = (
    QueueFrame, AssignedFrame, UnassignedFrame, EventFrame, CustomerTypingFrame, NoteFrame, DraftFrame,
    AgentErrorFrame, PresenceFrame,
)  # fmt: skip


# --- the document ----------------------------------------------------------------------------------


def _tag(frame: type[msgspec.Struct]) -> str:
    tag = frame.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def _messages(prefix: str, frames: tuple[type[msgspec.Struct], ...]) -> dict[str, dict[str, Any]]:
    """One AsyncAPI message per frame, keyed ``<prefix>.<type>``."""
    return {
        f"{prefix}.{_tag(frame)}": {
            "name": _tag(frame),
            "title": f'{{"type": "{_tag(frame)}"}}',
            "summary": (frame.__doc__ or "").strip(),
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{frame.__name__}"},
        }
        for frame in frames
    }


def _operation(channel: str, action: str, messages: dict[str, Any], security: str, summary: str) -> Any:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "security": [{"$ref": f"#/components/securitySchemes/{security}"}],
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in messages],
    }


def _channel(address: str, title: str, description: str, messages: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": address,
        "title": title,
        "description": description,
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
        "bindings": {
            "ws": {
                "method": "GET",
                "query": {
                    "type": "object",
                    "properties": {"token": {"type": "string", "description": "See the security scheme."}},
                    "required": ["token"],
                },
                "bindingVersion": "0.1.0",
            }
        },
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of both sockets (a plain JSON value)."""
    every_frame = (*CLIENT_FRAME_TYPES, *WIDGET_SERVER_FRAMES, *AGENT_CLIENT_FRAMES, *AGENT_SERVER_FRAMES)
    _, schemas = msgspec.json.schema_components(every_frame, ref_template="#/components/schemas/{name}")
    widget_in = _messages("widget.client", CLIENT_FRAME_TYPES)
    widget_out = _messages("widget.server", WIDGET_SERVER_FRAMES)
    agent_in = _messages("agent.client", AGENT_CLIENT_FRAMES)
    agent_out = _messages("agent.server", AGENT_SERVER_FRAMES)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Switchboard WebSockets",
            "version": __version__,
            "description": (
                "The widget's and the agent console's sockets: JSON text frames, each an object with a "
                "`type`. Either side ignores properties it does not know. The HTTP API is described by "
                "/schema/openapi.json; the frames and close codes in docs/protocol.md."
            ),
        },
        "defaultContentType": "application/json",
        "channels": {
            "widget": _channel(
                WIDGET_SOCKET,
                "Widget socket",
                "One customer's conversation. Every persisted event carries a `seq`, one more per event, "
                "so a reconnecting widget sends `resume` and misses nothing. A bad frame gets an `error` "
                "frame and the socket stays open; abuse closes it with 1008, an outage with 1011.",
                {**widget_in, **widget_out},
            ),
            "agent": _channel(
                AGENT_SOCKET,
                "Agent console socket",
                "The queue, assignments, and the events of the conversations an agent holds or watches. "
                "Closed with 1008 (`token revoked`) when the account is deactivated or its role changes.",
                {**agent_in, **agent_out},
            ),
        },
        "operations": {
            "widgetSend": _operation("widget", "receive", widget_in, "widgetToken", "Frames a widget sends"),
            "widgetReceive": _operation(
                "widget", "send", widget_out, "widgetToken", "Frames a widget receives"
            ),
            "agentSend": _operation("agent", "receive", agent_in, "agentToken", "Frames a console sends"),
            "agentReceive": _operation("agent", "send", agent_out, "agentToken", "Frames a console receives"),
        },
        "components": {
            "schemas": schemas,
            "messages": {**widget_in, **widget_out, **agent_in, **agent_out},
            "securitySchemes": {
                "widgetToken": {
                    "type": "httpApiKey",
                    "in": "query",
                    "name": "token",
                    "description": "The `token` of POST /api/v1/widget/sessions (one conversation).",
                },
                "agentToken": {
                    "type": "httpApiKey",
                    "in": "query",
                    "name": "token",
                    "description": "The `token` of POST /api/v1/agent/login.",
                },
            },
        },
    }
