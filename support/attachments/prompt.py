"""What the model sees of attachments (pure): a text marker per file, never the file itself, unless
``SWITCHBOARD_ATTACHMENTS_IMAGES_TO_MODEL`` lets a customer's images go as image blocks (the service reads
them: :meth:`support.attachments.service.AttachmentService.image_blocks`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def model_marker(role: str, attachments: Sequence[dict[str, Any]]) -> str:
    """The text the model sees instead of the files: ``[customer attached an image: name.png]``."""
    who = "customer" if role == "customer" else "agent"
    return "\n".join(
        f"[{who} attached {'an image' if a.get('kind') == 'image' else 'a PDF document'}: {a.get('name')}]"
        for a in attachments
    )


def model_text(role: str, text: str, extra: dict[str, Any]) -> str:
    """A message's text as the model reads it: the text, then a marker per attachment."""
    attachments = extra.get("attachments") or []
    if not attachments:
        return text
    marker = model_marker(role, attachments)
    return f"{text}\n{marker}" if text.strip() else marker
