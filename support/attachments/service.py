"""Attachments: upload (checked by content), who may read them, the model's view, export and erasure.

A file is uploaded first (it gets an id) and then carried by a message, which names the id: the message
event stores the attachment's public description (``extra["attachments"]``), so the transcript, replays
and the console show it without another read. Reading the bytes is allowed only within the file's own
conversation: the customer's session token names one conversation, and the service refuses an id of
another one as if it did not exist (404: nothing tells an id exists elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support.attachments.storage import AttachmentStore
from support.attachments.validation import IMAGE_TYPES, MAX_PER_MESSAGE, check_file
from support.db.models import Attachment
from support.errors import NotFound, RateLimited, ValidationFailed
from support.privacy.customer_data import CustomerScope, in_chunks
from support.settings import AttachmentSettings


def public(row: Attachment) -> dict[str, Any]:
    """What a message frame, the console and the export show of an attachment (no storage key)."""
    out: dict[str, Any] = {
        "id": row.id, "name": row.filename, "content_type": row.content_type, "size": row.size,
        "kind": "image" if row.content_type in IMAGE_TYPES else "file",
    }  # fmt: skip
    if row.width is not None:
        out["width"], out["height"] = row.width, row.height
    return out


class AttachmentService:
    """Uploads, reads and erasure; the SQL sessions and the store are passed in and not owned."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], store: AttachmentStore, settings: AttachmentSettings
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.settings = settings
        self.allowed = frozenset(settings.allowed_types)

    async def upload(
        self,
        conversation_id: str,
        data: bytes,
        *,
        filename: str | None,
        declared_type: str | None,
        uploader: str,
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        """Check, store and record one file; its public description (with its id)."""
        checked = check_file(
            data, declared_type=declared_type, filename=filename, allowed=self.allowed,
            max_bytes=self.settings.max_bytes,
        )  # fmt: skip
        async with self.sessions() as session:
            of_conversation = col(Attachment.conversation_id) == conversation_id
            held = await session.scalar(select(func.count()).select_from(Attachment).where(of_conversation))
        if (held or 0) >= self.settings.max_per_conversation:
            raise RateLimited(
                f"this conversation already holds {self.settings.max_per_conversation} attachments",
                limit="attachments",
            )
        row = Attachment(
            conversation_id=conversation_id, uploader=uploader, agent_id=agent_id, filename=checked.filename,
            content_type=checked.content_type, size=len(checked.data),
            sha256=hashlib.sha256(checked.data).hexdigest(), width=checked.width, height=checked.height,
            storage_key="",
        )  # fmt: skip
        row.storage_key = f"{hashlib.sha256(conversation_id.encode()).hexdigest()[:16]}/{row.id}"
        await self.store.put(row.storage_key, checked.data, checked.content_type)
        try:
            async with self.sessions() as session, session.begin():
                session.add(row)
        except BaseException:
            await self.store.delete(row.storage_key)
            raise
        return public(row)

    async def for_message(
        self, conversation_id: str, ids: Sequence[str], *, uploader: str
    ) -> list[dict[str, Any]]:
        """The public descriptions of ``ids`` for a message of ``uploader`` in this conversation;
        :class:`ValidationFailed` when one is unknown, of another conversation or of another uploader."""
        if not ids:
            return []
        if len(ids) > MAX_PER_MESSAGE or len(set(ids)) != len(ids):
            raise ValidationFailed(f"a message carries at most {MAX_PER_MESSAGE} distinct attachments")
        async with self.sessions() as session:
            rows = (
                (
                    await session.execute(
                        select(Attachment).where(
                            col(Attachment.id).in_(list(ids)),
                            col(Attachment.conversation_id) == conversation_id,
                            col(Attachment.uploader) == uploader,
                        )
                    )
                )
                .scalars()
                .all()
            )
        by_id = {row.id: row for row in rows}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ValidationFailed(f"unknown attachment {missing[0]!r}: upload it to this conversation first")
        return [public(by_id[i]) for i in ids]

    async def read(self, attachment_id: str, *, conversation_id: str | None) -> tuple[Attachment, bytes]:
        """The row and bytes; ``conversation_id``: only an attachment of that conversation (a customer's
        token), None for staff. 404 for anything else."""
        async with self.sessions() as session:
            row = await session.get(Attachment, attachment_id)
        if row is None or (conversation_id is not None and row.conversation_id != conversation_id):
            raise NotFound("no such attachment")
        return row, await self.store.get(row.storage_key)

    async def image_blocks(
        self, attachments: Sequence[dict[str, Any]], conversation_id: str
    ) -> list[dict[str, Any]]:
        """Image content blocks (base64) for a customer message's images, when configured; else none."""
        if not self.settings.images_to_model:
            return []
        blocks: list[dict[str, Any]] = []
        for ref in attachments:
            if ref.get("kind") != "image":
                continue
            try:
                row, data = await self.read(str(ref["id"]), conversation_id=conversation_id)
            except NotFound:  # erased meanwhile: the marker in the text still says a file was there
                continue
            blocks.append({
                "type": "image",
                "source": {"type": "base64", "media_type": row.content_type,
                           "data": base64.b64encode(data).decode()},
            })  # fmt: skip
        return blocks

    async def of_conversations(self, conversation_ids: Sequence[str]) -> list[Attachment]:
        """Every attachment of these conversations, oldest first."""
        out: list[Attachment] = []
        async with self.sessions() as session:
            for chunk in in_chunks(conversation_ids):
                out += (
                    (
                        await session.execute(
                            select(Attachment)
                            .where(col(Attachment.conversation_id).in_(chunk))
                            .order_by(col(Attachment.created_at))
                        )
                    )
                    .scalars()
                    .all()
                )
        return out

    async def erase_conversations(self, conversation_ids: Sequence[str]) -> int:
        """Delete the stored files, then the rows; how many attachments were erased."""
        rows = await self.of_conversations(conversation_ids)
        for row in rows:
            await self.store.delete(row.storage_key)
        if rows:
            async with self.sessions() as session, session.begin():
                ids = [row.id for row in rows]
                for chunk in in_chunks(ids):
                    await session.execute(delete(Attachment).where(col(Attachment.id).in_(chunk)))
        return len(rows)


class AttachmentRows:
    """The ``attachments`` kind of the customer-data export and erasure (support.privacy's source port)."""

    kind = "attachments"

    def __init__(self, attachments: AttachmentService) -> None:
        self.attachments = attachments

    async def export(self, scope: CustomerScope) -> list[dict[str, Any]]:
        """Every attachment of the customer's conversations: description, conversation, time, checksum."""
        rows = await self.attachments.of_conversations(scope.conversation_ids)
        return [
            {**public(row), "conversation_id": row.conversation_id, "uploader": row.uploader,
             "sha256": row.sha256, "created_at": row.created_at.isoformat()}
            for row in rows
        ]  # fmt: skip

    async def erase(self, scope: CustomerScope, *, retention: bool) -> int:
        """The files and their rows (retention too: an old conversation's files go with it)."""
        return await self.attachments.erase_conversations(scope.conversation_ids)
