"""Attachment endpoints: thin handlers over :class:`~support.attachments.service.AttachmentService`.

Uploads are the raw file as the request body (``Content-Type``: what the client believes it is, a claim
the content must agree with), the display name in ``?filename=``. The body is read up to the configured
limit and refused with 413 past it, unread. Downloads carry the detected type, ``nosniff``, a sandboxing
CSP and ``Content-Disposition`` (``inline`` for images, ``attachment`` for PDF).

- Widget (customer): ``POST /api/v1/widget/attachments?token=…`` and ``GET …/{id}?token=…``; the session
  token names the one conversation whose attachments the customer may upload to and read (an ``<img>``
  cannot send headers, hence the query, as the widget socket does). CORS as the other widget endpoints.
- Agents: ``POST /api/v1/agent/conversations/{id}/attachments`` and ``GET /api/v1/agent/attachments/{id}``
  with the agent's bearer token.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED

from support.attachments.validation import IMAGE_TYPES
from support.channels.staff import agent_guard, staff_id_of
from support.channels.widget import TOKEN_MAX_CHARS, WidgetCORSMiddleware
from support.db.models import Attachment
from support.errors import NotFound, TooLarge
from support.openapi_errors import AGENT_SECURITY, errors
from support.runtime import Runtime

FILENAME_PARAM_MAX_CHARS = 255
ATTACHMENT_ID_MAX_CHARS = 64
CACHE_PRIVATE_S = 3600  # the bytes of an id never change; only the reader's own cache keeps them


async def read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The request body, or :class:`TooLarge` as soon as it is past ``limit`` bytes (no more is read)."""
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise TooLarge(f"the file is larger than {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"the file is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def file_response(row: Attachment, data: bytes) -> Response[bytes]:
    """The bytes with headers that keep a browser from treating them as anything but what they are."""
    disposition = "inline" if row.content_type in IMAGE_TYPES else "attachment"
    ascii_name = row.filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    names = f"filename=\"{ascii_name}\"; filename*=UTF-8''{quote(row.filename)}"
    return Response(
        data,
        media_type=row.content_type,
        headers={
            "Content-Disposition": f"{disposition}; {names}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": f"private, max-age={CACHE_PRIVATE_S}",
            # Shown by an <img> on the company's site (another origin) in the widget.
            "Cross-Origin-Resource-Policy": "cross-origin",
        },
    )


Token = Annotated[str, Parameter(max_length=TOKEN_MAX_CHARS)]
Filename = Annotated[str | None, Parameter(max_length=FILENAME_PARAM_MAX_CHARS)]
AttachmentId = Annotated[str, Parameter(max_length=ATTACHMENT_ID_MAX_CHARS)]


class WidgetAttachmentController(Controller):
    """``/api/v1/widget/attachments``: the customer's uploads and reads, by session token."""

    path = "/api/v1/widget/attachments"
    tags = ["widget"]  # noqa: RUF012 - Litestar reads it as a class attribute
    middleware = [WidgetCORSMiddleware()]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(
        "/", status_code=HTTP_201_CREATED, summary="Upload a file to the session's conversation",
        request_max_body_size=None,  # read_body applies SWITCHBOARD_ATTACHMENTS_MAX_BYTES itself
        responses=errors(400, 401, 413, 415, 429, 503),
    )  # fmt: skip
    async def upload(
        self, request: Request[Any, Any, Any], runtime: Runtime, token: Token, filename: Filename = None
    ) -> dict[str, Any]:
        """The raw file as the body; 201 with its id (send it in a message frame's ``attachments``)."""
        conversation_id = runtime.widget_sessions.authenticate(token)
        # An upload spends from the conversation's message budget (shared by every process).
        await runtime.limits.attachment_upload(conversation_id)
        data = await read_body(request, runtime.settings.attachments.max_bytes)
        return await runtime.attachments.upload(
            conversation_id, data, filename=filename, declared_type=request.headers.get("content-type"),
            uploader="customer",
        )  # fmt: skip

    @get("/{attachment_id:str}", summary="A file of the session's conversation", responses=errors(401, 404))
    async def download(self, attachment_id: AttachmentId, runtime: Runtime, token: Token) -> Response[bytes]:
        """404 for an id of any other conversation."""
        conversation_id = runtime.widget_sessions.authenticate(token)
        row, data = await runtime.attachments.read(attachment_id, conversation_id=conversation_id)
        return file_response(row, data)


class AgentAttachmentController(Controller):
    """Agents' uploads to a conversation and reads of any conversation's attachments."""

    path = "/api/v1/agent"
    tags = ["agent"]  # noqa: RUF012
    guards = [agent_guard]  # noqa: RUF012
    security = AGENT_SECURITY

    @post(
        "/conversations/{conversation_id:str}/attachments", status_code=HTTP_201_CREATED,
        summary="Upload a file to a conversation", request_max_body_size=None,
        responses=errors(400, 404, 413, 415, 429, 503),
    )  # fmt: skip
    async def upload(
        self,
        conversation_id: str,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        filename: Filename = None,
    ) -> dict[str, Any]:
        """The raw file as the body; 201 with its id (send it in the message's ``attachments``)."""
        if not await runtime.store.exists(conversation_id):
            raise NotFound("no such conversation")
        data = await read_body(request, runtime.settings.attachments.max_bytes)
        return await runtime.attachments.upload(
            conversation_id, data, filename=filename, declared_type=request.headers.get("content-type"),
            uploader="agent", agent_id=staff_id_of(request),
        )  # fmt: skip

    @get("/attachments/{attachment_id:str}", summary="An attachment's file", responses=errors(404))
    async def download(self, attachment_id: AttachmentId, runtime: Runtime) -> Response[bytes]:
        """Any conversation's (agents see every conversation's transcript)."""
        row, data = await runtime.attachments.read(attachment_id, conversation_id=None)
        return file_response(row, data)
