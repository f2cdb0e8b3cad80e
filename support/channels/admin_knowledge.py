"""Admin HTTP for the knowledge: documents saved into versions, versions listed, read and activated.

Thin handlers over :class:`~support.knowledge.service.KnowledgeService` (``switchboard knowledge import``
uses the same service). Admins only. See docs/knowledge.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from litestar import Controller, Request, delete, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from support.channels.staff import admin_guard, staff_id_of
from support.knowledge.service import (
    VERSIONS_LIMIT_MAX,
    DocumentIn,
    Saved,
    VersionDetail,
    VersionView,
)
from support.openapi_errors import ADMIN_SECURITY, errors
from support.runtime import Runtime

log = logging.getLogger(__name__)

S413 = (
    "A document over `SWITCHBOARD_KNOWLEDGE_MAX_DOCUMENT_CHARS`, a knowledge over "
    "`SWITCHBOARD_KNOWLEDGE_MAX_TOTAL_CHARS` or `SWITCHBOARD_KNOWLEDGE_MAX_DOCUMENTS`, or a body over "
    "`SWITCHBOARD_HTTP_MAX_BODY_BYTES` (`too_large`)"
)
S409 = (
    "`base_version` is no longer the head, a name already used by the other kind, or removing the "
    "policy (`knowledge_conflict`)"
)


@dataclass
class KnowledgeDocumentIn:
    """A document to save: ``name`` is its identity (saving the same name again edits it); the knowledge
    has one ``policy`` (saving a policy replaces it) and any number of ``article``\\ s and ``guidance``
    rules (short plain-language rules the assistant must follow, rendered in a section of their own)."""

    name: str
    text: str
    kind: Literal["policy", "article", "guidance"] = "article"
    # Refuse (409) unless the head (the version saved last) is still this one.
    base_version: str | None = None


@dataclass
class KnowledgeImportIn:
    """Several documents saved as one version; ``replace``: the version holds exactly these."""

    documents: list[KnowledgeDocumentIn] = field(default_factory=list)
    replace: bool = False
    base_version: str | None = None


def _doc(data: KnowledgeDocumentIn) -> DocumentIn:
    return DocumentIn(name=data.name, text=data.text, kind=data.kind)


class KnowledgeController(Controller):
    """``/api/v1/admin/knowledge``: documents, versions, activation."""

    path = "/api/v1/admin/knowledge"
    tags = ["admin"]  # noqa: RUF012 - Litestar reads it as a class attribute
    guards = [admin_guard]  # noqa: RUF012
    security = ADMIN_SECURITY

    @get("/", summary="The documents of the head version (the one the next save starts from)",
         responses=errors(404, 503))  # fmt: skip
    async def documents(self, runtime: Runtime) -> dict[str, Any]:
        """``head``: the version saved last, ``active``: the id every process answers from; documents
        without their text (``GET /versions/{id}`` has it)."""
        detail = await runtime.knowledge.head(with_text=False)
        return {"head": detail.version, "active": runtime.knowledge.active.version, "documents": detail.items}

    @post(
        "/", status_code=HTTP_201_CREATED,
        summary="Save a document: a new version (not active until activated)",
        responses=errors(409, 503, s409=S409, s413=S413),
    )  # fmt: skip
    async def save(
        self, data: KnowledgeDocumentIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> Saved:
        """The head with this document added or replaced, as a new version; ``created`` is false when an
        existing version already holds exactly that knowledge (its id is returned)."""
        saved = await runtime.knowledge.save(
            _doc(data), created_by=staff_id_of(request), base=data.base_version
        )
        log.info("admin %s saved knowledge %s %r: version %s", staff_id_of(request), data.kind, data.name,
                 saved.version.id)  # fmt: skip
        return saved

    @post(
        "/import", status_code=HTTP_201_CREATED, summary="Save several documents as one version",
        responses=errors(409, 503, s409=S409, s413=S413),
    )  # fmt: skip
    async def import_documents(
        self, data: KnowledgeImportIn, request: Request[Any, Any, Any], runtime: Runtime
    ) -> Saved:
        """Like ``switchboard knowledge import DIR``: one version, not active until activated."""
        saved = await runtime.knowledge.import_documents(
            [_doc(d) for d in data.documents], created_by=staff_id_of(request), base=data.base_version,
            replace=data.replace, change=f"imported {len(data.documents)} documents",
        )  # fmt: skip
        log.info("admin %s imported %d knowledge documents: version %s", staff_id_of(request),
                 len(data.documents), saved.version.id)  # fmt: skip
        return saved

    @delete(
        "/documents/{name:str}", status_code=HTTP_200_OK, summary="Remove an article: a new version",
        responses=errors(404, 409, 503, s409=S409),
    )  # fmt: skip
    async def remove(
        self, name: str, request: Request[Any, Any, Any], runtime: Runtime, base_version: str | None = None
    ) -> Saved:
        """The head without the article ``name``, as a new version (the policy cannot be removed)."""
        return await runtime.knowledge.remove(name, created_by=staff_id_of(request), base=base_version)

    @get("/versions", summary="Knowledge versions, the last saved first", responses=errors(503))
    async def versions(
        self, runtime: Runtime, limit: int = Parameter(default=100, ge=1, le=VERSIONS_LIMIT_MAX)
    ) -> list[VersionView]:
        """``active`` marks the version every process answers from, ``head`` the one saved last."""
        return await runtime.knowledge.versions(limit)

    @get("/versions/{version_id:str}", summary="One version and its documents, with their text",
         responses=errors(404, 503))  # fmt: skip
    async def version(self, version_id: str, runtime: Runtime) -> VersionDetail:
        """Documents in prompt order: the policy, then the articles."""
        return await runtime.knowledge.version(version_id)

    @post(
        "/versions/{version_id:str}/activate", status_code=HTTP_200_OK,
        summary="Activate a version (an older one: a rollback) for every process within seconds",
        responses=errors(404, 503),
    )  # fmt: skip
    async def activate(
        self, version_id: str, request: Request[Any, Any, Any], runtime: Runtime
    ) -> VersionView:
        """Every process answers from it from its next answer on (within 2 s), without a restart."""
        view = await runtime.knowledge.activate(version_id, by=staff_id_of(request))
        log.info("admin %s activated knowledge version %s", staff_id_of(request), version_id)
        return view
