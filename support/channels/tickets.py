"""The REST tickets channel: integrations file and read tickets; agents list them.

- ``POST /api/v1/tickets`` (integration key with ``tickets:write``): a typed body whose limits are
  checked here (subject, body, e-mail, metadata), an optional ``Idempotency-Key``, the per-key rate limit;
  then :meth:`~support.tickets.service.TicketService.create`. 202 ``{"id", "status"}``, the same for an
  idempotent repeat.
- ``GET /api/v1/tickets/{id}`` (``tickets:read``): a key reads only the tickets it filed (another key's
  ticket is 404, so ids cannot be probed).
- ``GET /api/v1/agent/tickets`` (any signed-in agent): the list, newest first, with filters.

Thin handlers: parse, call one service, serialise (docs/tickets.md).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED

from support.attachments.validation import MAX_PER_MESSAGE, check_file
from support.channels.integration_auth import integration_key_guard, integration_key_of
from support.channels.staff import agent_guard
from support.channels.widget import EMAIL_MAX_CHARS, EMAIL_PATTERN, VISITOR_NAME_MAX_CHARS
from support.errors import ValidationFailed
from support.openapi_errors import AGENT_SECURITY, errors, integration_security
from support.runtime import Runtime
from support.settings import AttachmentSettings, TicketSettings
from support.tickets.integration_keys import TICKETS_READ, TICKETS_WRITE
from support.tickets.service import TicketFile, TicketIn

SUBJECT_MAX_CHARS = 300  # the column's length (SWITCHBOARD_TICKETS_MAX_SUBJECT_CHARS may lower it)
METADATA_MAX_KEYS = 50
METADATA_MAX_BYTES = 8 * 1024  # serialised as compact JSON: room for ids and tags, not for documents
METADATA_KEY_MAX_CHARS = 100
IDEMPOTENCY_KEY_MAX_CHARS = 255  # the column's length
FILENAME_MAX_CHARS = 255
LIST_DEFAULT = 50
LIST_MAX = 200

Channel = Literal["email", "form", "api"]
# Listing also finds the tickets chats became when their customer left an e-mail address (docs/tickets.md).
ListedChannel = Literal["email", "form", "api", "chat"]
Status = Literal["received", "triaged", "answered", "queued", "resolved"]


class CustomerIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who filed the ticket: replies go to this address."""

    email: Annotated[str, msgspec.Meta(max_length=EMAIL_MAX_CHARS, pattern=EMAIL_PATTERN)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=VISITOR_NAME_MAX_CHARS)] | None = None


class TicketAttachmentBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A file filed with a ticket: ``{"filename", "content_type"?, "content_base64"}``."""

    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=FILENAME_MAX_CHARS)]
    content_type: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    content_base64: Annotated[str, msgspec.Meta(min_length=1)]


class TicketBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/tickets``. The body's upper bound is ``SWITCHBOARD_TICKETS_MAX_BODY_CHARS``
    (checked by the handler: a setting cannot be a schema constant)."""

    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=SUBJECT_MAX_CHARS)]
    body: Annotated[str, msgspec.Meta(min_length=1)]
    customer: CustomerIn
    channel: Channel = "api"
    metadata: Annotated[
        dict[Annotated[str, msgspec.Meta(min_length=1, max_length=METADATA_KEY_MAX_CHARS)], Any],
        msgspec.Meta(max_length=METADATA_MAX_KEYS),
    ] = msgspec.field(default_factory=dict)
    # Files, base64 in the JSON body (so within SWITCHBOARD_HTTP_MAX_BODY_BYTES as a whole).
    attachments: Annotated[list[TicketAttachmentBody], msgspec.Meta(max_length=MAX_PER_MESSAGE)] = (
        msgspec.field(default_factory=list)
    )


def ticket_in(
    data: TicketBody, settings: TicketSettings, attachments: AttachmentSettings | None = None
) -> TicketIn:
    """The ticket to file, after the limits the schema cannot state; :class:`ValidationFailed` otherwise.
    Attachments are checked here, by content, before anything is stored (415 / 413 refuse the ticket)."""
    subject, body = data.subject.strip(), data.body.strip()
    if not subject or len(subject) > settings.max_subject_chars:
        raise ValidationFailed(f"subject must have 1 to {settings.max_subject_chars} characters")
    if not body or len(body) > settings.max_body_chars:
        raise ValidationFailed(f"body must have 1 to {settings.max_body_chars} characters")
    size = len(json.dumps(data.metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > METADATA_MAX_BYTES:
        raise ValidationFailed(f"metadata must be at most {METADATA_MAX_BYTES} bytes as JSON (it is {size})")
    name = data.customer.name.strip() if data.customer.name else None
    files = [_ticket_file(i, a, attachments or AttachmentSettings()) for i, a in enumerate(data.attachments)]
    return TicketIn(
        subject=subject, body=body, customer_email=data.customer.email, customer_name=name or None,
        channel=data.channel, metadata=data.metadata, attachments=files,
    )  # fmt: skip


def _ticket_file(index: int, body: TicketAttachmentBody, settings: AttachmentSettings) -> TicketFile:
    try:
        data = base64.b64decode(body.content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(f"attachments[{index}].content_base64 is not base64") from None
    # Checked now so a bad file refuses the whole ticket before anything is stored (the service checks
    # again when it stores the file).
    check_file(
        data, declared_type=body.content_type, filename=body.filename,
        allowed=frozenset(settings.allowed_types), max_bytes=settings.max_bytes,
    )  # fmt: skip
    return TicketFile(data=data, filename=body.filename, content_type=body.content_type)


def idempotency_key(value: str | None) -> str | None:
    """The header's value: 1 to 255 printable ASCII characters, else :class:`ValidationFailed`."""
    if value is None:
        return None
    if not 1 <= len(value) <= IDEMPOTENCY_KEY_MAX_CHARS or not all(" " <= c <= "~" for c in value):
        raise ValidationFailed(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_CHARS} printable ASCII characters"
        )
    return value


class TicketController(Controller):
    """``/api/v1/tickets``: integrations file tickets and read their own."""

    path = "/api/v1/tickets"
    tags = ["tickets"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(
        "/", status_code=HTTP_202_ACCEPTED, summary="File a ticket",
        guards=[integration_key_guard(TICKETS_WRITE)], security=integration_security(TICKETS_WRITE),
        responses=errors(
            409, 503,
            s409="This Idempotency-Key was used with another body (`idempotency_conflict`)",
        ),
    )  # fmt: skip
    async def create(
        self,
        data: TicketBody,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        idempotency: Annotated[
            str | None,
            Parameter(
                header="Idempotency-Key",
                required=False,
                description="Retry safely: the same key and body return the first ticket (1-255 characters)",
            ),
        ] = None,
    ) -> Response[dict[str, str]]:
        """Accepted: triage and the answer follow (poll ``GET /api/v1/tickets/{id}``, or use webhooks).
        The same ``Idempotency-Key`` with the same body answers the same 202 and id; with another body,
        409. 429 over the per-key limit."""
        key = integration_key_of(request)
        ticket_data = ticket_in(data, runtime.settings.tickets, runtime.settings.attachments)
        repeat_key = idempotency_key(idempotency)
        await runtime.limits.ticket(key.id)
        ticket, _created = await runtime.tickets.create(
            ticket_data, key_id=key.id, idempotency_key=repeat_key
        )
        return Response(
            {"id": ticket.id, "status": ticket.status},
            status_code=HTTP_202_ACCEPTED,
            headers={"Location": f"{self.path}/{ticket.id}"},
        )

    @get(
        "/{ticket_id:str}", summary="A ticket this key filed, with its status, triage and replies",
        guards=[integration_key_guard(TICKETS_READ)], security=integration_security(TICKETS_READ),
        responses=errors(404, 503, s404="No such ticket, or another key filed it (`not_found`)"),
    )  # fmt: skip
    async def read(self, ticket_id: str, request: Request[Any, Any, Any], runtime: Runtime) -> dict[str, Any]:
        """``status`` is received, triaged, answered, queued or resolved (docs/tickets.md)."""
        return await runtime.tickets.view(ticket_id, key_id=integration_key_of(request).id)


class AgentTicketController(Controller):
    """``/api/v1/agent/tickets``: the tickets, for agents (beside the chats in the console)."""

    path = "/api/v1/agent/tickets"
    tags = ["agent"]  # noqa: RUF012
    guards = [agent_guard]  # noqa: RUF012
    security = AGENT_SECURITY

    @get("/", summary="Tickets, newest first, filtered", responses=errors(503))
    async def list_tickets(
        self,
        runtime: Runtime,
        status: Status | None = None,
        urgent: bool | None = None,
        channel: ListedChannel | None = None,
        email: Annotated[str | None, Parameter(max_length=EMAIL_MAX_CHARS)] = None,
        limit: Annotated[int, Parameter(ge=1, le=LIST_MAX)] = LIST_DEFAULT,
        before: Annotated[
            datetime | None, Parameter(description="Only tickets created before this time (the next page)")
        ] = None,
    ) -> list[dict[str, Any]]:
        """Each without its body and replies; page with ``before`` = the last one's ``created_at``."""
        if before is not None:
            before = before.astimezone(UTC) if before.tzinfo else before.replace(tzinfo=UTC)
        return await runtime.tickets.find(
            status=status, urgent=urgent, channel=channel, email=email, before=before, limit=limit
        )
