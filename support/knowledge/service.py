"""Knowledge as versions: documents saved into immutable versions, one version active for every process.

- A *version* is a snapshot of the whole knowledge (the policy and every article), stored in SQL
  (``knowledge_version``, ``knowledge_document``, texts once each in ``knowledge_text``). Its id is the
  hash of its rendered text (support.knowledge.render), so saving what an existing version already holds
  gives that version back instead of a copy.
- Saving a document makes a new version from the *head* (the version saved last), not from the active
  one, so several edits can be prepared before one activation. It is not active until activated.
- Activating writes the time into SQL (the version activated last is the active one: it survives a Redis
  flush) and the id into Redis (``keys.knowledge_active``). Every process polls that key (one GET every
  ``SWITCHBOARD_KNOWLEDGE_POLL_INTERVAL_S``) and, when it moves, loads the version and hands it to its
  listeners: the answer prompt, the offline responder, tickets, the desk's examples, the ledger.
- ``SWITCHBOARD_POLICY_PATH`` seeds the first version (activated) when there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support import keys
from support.audit import AuditSink, NoAudit
from support.db.models import KnowledgeDocument, KnowledgeText, KnowledgeVersion, utcnow
from support.errors import KnowledgeConflict, NotFound, TooLarge, ValidationFailed
from support.knowledge.render import (
    KINDS,
    Document,
    Kind,
    guidance,
    ordered,
    prompt_documents,
    render,
    version_id,
)
from support.llm.policy import Policy, load_policy
from support.redis_client import RedisClient
from support.settings import KnowledgeSettings

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 200
VERSIONS_LIMIT_MAX = 500
Listener = Callable[[Policy], None]
Progress = Callable[[int, int, str], None]  # (done, total, document name)


@dataclass(frozen=True)
class DocumentIn:
    """A document to save: its name (its identity within the knowledge), kind and Markdown text."""

    name: str
    text: str
    kind: str = "article"


@dataclass
class DocumentView:
    """One document of a version (``text`` only where asked for)."""

    name: str
    kind: str
    chars: int
    sha256: str
    text: str | None = None


@dataclass
class VersionView:
    """One knowledge version; ``active`` marks the one every process answers from."""

    id: str
    parent_id: str | None
    change: str
    created_by: str | None
    documents: int
    chars: int
    created_at: datetime
    saved_at: datetime
    activated_at: datetime | None
    active: bool = False
    head: bool = False


@dataclass
class VersionDetail:
    """A version with its documents (policy first, articles in prompt order)."""

    version: VersionView
    items: list[DocumentView] = field(default_factory=list)


@dataclass
class Saved:
    """The version a save produced; ``created`` is false when an existing version already held it."""

    version: VersionView
    created: bool


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValidationFailed(f"a document name has 1 to {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise ValidationFailed("a document name may not contain control characters or line breaks")
    return name


def _kind(kind: str) -> Kind:
    if kind == "policy":
        return "policy"
    if kind == "article":
        return "article"
    if kind == "guidance":
        return "guidance"
    raise ValidationFailed(f"kind must be one of {list(KINDS)}, not {kind!r}")


class KnowledgeService:
    """Versions in SQL, the active one in Redis and in memory (``active``), its listeners told of changes."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: RedisClient,
        settings: KnowledgeSettings,
        *,
        audit: AuditSink | None = None,
    ) -> None:
        self._sessions = sessions
        self._audit: AuditSink = audit or NoAudit()
        self._redis = redis
        self.settings = settings
        self._active: Policy | None = None
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()
        self._redis_failing = False
        self._unknown: str | None = None  # a version id Redis named that this database does not know

    # --- the active version, in this process -------------------------------------------------------

    @property
    def active(self) -> Policy:
        """The active version as the prompt carries it: its rendered text and its id."""
        if self._active is None:
            raise RuntimeError("the knowledge is not loaded yet (KnowledgeService.start)")
        return self._active

    def on_change(self, listener: Listener) -> None:
        """Call ``listener`` with the new active version whenever this process switches to one."""
        self._listeners.append(listener)

    @staticmethod
    async def needs_seed_in(sessions: async_sessionmaker[AsyncSession]) -> bool:
        """True while no version was ever activated in this database (a fresh install)."""
        return await _latest_activated(sessions) is None

    @staticmethod
    async def policy_in(
        sessions: async_sessionmaker[AsyncSession], version: str | None = None
    ) -> Policy | None:
        """A version as the prompt would carry it (default: the one activated last), read from SQL alone
        (``switchboard eval`` reads the knowledge without joining the service's processes); None when no
        version was ever activated, :class:`NotFound` for an unknown ``version``."""
        wanted = version if version is not None else await _latest_activated(sessions)
        if wanted is None:
            return None
        docs = await _documents_in(sessions, wanted)
        return Policy(
            text=render(docs), version=wanted, guidance=guidance(docs), documents=prompt_documents(docs)
        )

    async def start(self, seed_path: Path | str) -> Policy:
        """Seed the first version from the policy file if there is none, then load the active one."""
        if await self._latest_activated() is None:
            policy = load_policy(seed_path)  # a missing or empty file is a configuration error here
            name = Path(seed_path).stem or "policy"
            saved = await self._create(
                [Document(name, "policy", policy.text)], parent_id=None,
                change=f"seeded from the policy file {Path(seed_path).name}", created_by=None,
            )  # fmt: skip
            await self._mark_activated(saved.version.id, only_if_none=True)
            log.info("knowledge: seeded version %s from %s", saved.version.id, seed_path)
        await self.refresh()
        return self.active

    async def refresh(self) -> bool:
        """Switch to the active version if it moved (one GET when it did not); true when it switched."""
        try:
            raw = await self._redis.get(keys.knowledge_active())
            self._redis_failing = False
        except (RedisError, OSError) as exc:
            if not self._redis_failing:
                log.warning("knowledge: cannot read the active version from Redis (%s); keeping %s",
                            exc, self._active.version if self._active else None)  # fmt: skip
            self._redis_failing = True
            if self._active is not None:
                return False
            raw = None
        wanted = raw.decode() if isinstance(raw, bytes) else raw
        settled = self._active is not None and wanted in (self._active.version, self._unknown)
        if wanted is not None and settled:
            return False
        async with self._lock:
            if wanted is not None and not await self._exists(wanted):
                # Activation commits to SQL before it writes Redis, so an id SQL does not know was written
                # by processes on another database: this one keeps to what its own database says.
                if self._unknown != wanted:
                    log.warning("knowledge: Redis names version %s, unknown to this database; using the "
                                "version activated last in it", wanted)  # fmt: skip
                self._unknown = wanted
                wanted = None
            if wanted is None:  # a flushed or new Redis: SQL knows which version was activated last
                wanted = await self._latest_activated()
                if wanted is None:
                    raise NotFound("no knowledge version is active")
                if not self._redis_failing and self._unknown is None:
                    with contextlib.suppress(RedisError, OSError):
                        await self._redis.set(keys.knowledge_active(), wanted, nx=True)
            if self._active is not None and wanted == self._active.version:
                return False
            detail = await self._documents(wanted)
            text = render(detail)
            policy = Policy(
                text=text, version=wanted, guidance=guidance(detail), documents=prompt_documents(detail)
            )
            previous = self._active
            self._active = policy
        log.info("knowledge: version %s active in this process (was %s, %d chars)",
                 wanted, previous.version if previous else None, len(text))  # fmt: skip
        for listener in self._listeners:
            listener(policy)
        return True

    async def poll_forever(self) -> None:
        """Refresh every ``poll_interval_s`` (a background task of each process)."""
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away: keep answering from the version loaded
                log.exception("knowledge: refresh failed; keeping version %s", self.active.version)

    # --- changes --------------------------------------------------------------------------------------

    async def save(
        self, document: DocumentIn, *, created_by: str | None = None, base: str | None = None
    ) -> Saved:
        """A new version: the head with ``document`` added or replaced. ``base``: refuse (409) unless the
        head is still that version (two admins editing at once do not overwrite each other)."""
        return await self.import_documents([document], created_by=created_by, base=base, change=None)

    async def import_documents(
        self,
        documents: Sequence[DocumentIn],
        *,
        created_by: str | None = None,
        base: str | None = None,
        replace: bool = False,
        change: str | None = "import",
        progress: Progress | None = None,
    ) -> Saved:
        """One new version: the head with every document added or replaced (by name), or, with
        ``replace``, exactly these documents. ``progress`` is told of each document as it is checked."""
        if not documents:
            raise ValidationFailed("no documents to save")
        if len(documents) > self.settings.max_documents:
            raise TooLarge(f"at most {self.settings.max_documents} documents per version")
        incoming: list[Document] = []
        for done, doc in enumerate(documents, start=1):
            name, kind = _clean_name(doc.name), _kind(doc.kind)
            if not doc.text.strip():
                raise ValidationFailed(f"document {name!r} is empty")
            if len(doc.text) > self.settings.max_document_chars:
                raise TooLarge(
                    f"document {name!r} has {len(doc.text)} characters; at most "
                    f"{self.settings.max_document_chars} (SWITCHBOARD_KNOWLEDGE_MAX_DOCUMENT_CHARS)"
                )
            incoming.append(Document(name, kind, doc.text))
            if progress is not None:
                progress(done, len(documents), name)
        if len({d.name for d in incoming}) != len(incoming):
            raise ValidationFailed("two documents have the same name")
        if sum(d.kind == "policy" for d in incoming) > 1:
            raise ValidationFailed("the knowledge has one policy; two documents of kind policy were given")
        async with self._lock:
            head = await self._head()
            if base is not None and (head is None or head.id != base):
                raise KnowledgeConflict(
                    f"the knowledge changed since version {base}: the head is {head.id if head else None}"
                )
            current = [] if replace or head is None else await self._documents(head.id)
            merged = _merge(current, incoming)
            total = sum(len(d.text) for d in merged)
            if len(merged) > self.settings.max_documents:
                raise TooLarge(f"at most {self.settings.max_documents} documents per version")
            if total > self.settings.max_total_chars:
                raise TooLarge(
                    f"the knowledge would have {total} characters; at most {self.settings.max_total_chars} "
                    "(SWITCHBOARD_KNOWLEDGE_MAX_TOTAL_CHARS)"
                )
            if change is None:
                verb = "edited" if any(d.name == incoming[0].name for d in current) else "added"
                change = f"{verb} {incoming[0].kind} {incoming[0].name}"
            saved = await self._create(
                merged, parent_id=head.id if head else None, change=change, created_by=created_by
            )
        await self._audited(created_by, "knowledge.saved", saved, change)
        return saved

    async def _audited(self, by: str | None, action: str, saved: Saved, change: str) -> None:
        await self._audit.record(
            by, action, "knowledge_version", saved.version.id, {"change": change, "created": saved.created}
        )

    async def remove(self, name: str, *, created_by: str | None = None, base: str | None = None) -> Saved:
        """A new version: the head without the article ``name`` (the policy can be replaced, not removed)."""
        async with self._lock:
            head = await self._head()
            if head is None:
                raise NotFound("there is no knowledge yet")
            if base is not None and head.id != base:
                raise KnowledgeConflict(f"the knowledge changed since version {base}: the head is {head.id}")
            current = await self._documents(head.id)
            found = [d for d in current if d.name == name]
            if not found:
                raise NotFound(f"no document named {name!r} in version {head.id}")
            if found[0].kind == "policy":
                raise KnowledgeConflict("the policy can be replaced, not removed")
            rest = [d for d in current if d.name != name]
            change = f"removed {found[0].kind} {name}"
            saved = await self._create(rest, parent_id=head.id, change=change, created_by=created_by)
        await self._audited(created_by, "knowledge.removed", saved, change)
        return saved

    async def activate(self, version: str, *, by: str | None = None) -> VersionView:
        """Make ``version`` the active one for every process (an older one: a rollback)."""
        async with self._sessions() as session:
            row = await session.get(KnowledgeVersion, version)
            if row is None:
                raise NotFound(f"no knowledge version {version!r}")
        await self._mark_activated(version)
        await self._redis.set(keys.knowledge_active(), version)
        self._unknown = None
        log.info("knowledge: version %s activated by %s", version, by)
        await self._audit.record(by, "knowledge.activated", "knowledge_version", version)
        await self.refresh()
        return (await self.version(version, with_text=False)).version

    # --- reading --------------------------------------------------------------------------------------

    async def versions(self, limit: int = 100) -> list[VersionView]:
        """Versions, the last saved first."""
        limit = max(1, min(limit, VERSIONS_LIMIT_MAX))
        query = select(KnowledgeVersion).order_by(col(KnowledgeVersion.saved_at).desc()).limit(limit)
        async with self._sessions() as session:
            rows = list((await session.execute(query)).scalars().all())
        head = await self._head()
        return [self._view(row, head.id if head else None) for row in rows]

    async def version(self, version: str, *, with_text: bool = True) -> VersionDetail:
        """One version and its documents; 404 for an unknown id."""
        async with self._sessions() as session:
            row = await session.get(KnowledgeVersion, version)
            if row is None:
                raise NotFound(f"no knowledge version {version!r}")
        head = await self._head()
        docs = await self._documents(version)
        return VersionDetail(
            version=self._view(row, head.id if head else None),
            items=[
                DocumentView(d.name, d.kind, len(d.text), d.sha256, d.text if with_text else None)
                for d in docs
            ],
        )

    async def head(self, *, with_text: bool = False) -> VersionDetail:
        """The version saved last (what the next save starts from), with its documents."""
        head = await self._head()
        if head is None:
            raise NotFound("there is no knowledge yet")
        return await self.version(head.id, with_text=with_text)

    # --- internals ------------------------------------------------------------------------------------

    def _view(self, row: KnowledgeVersion, head_id: str | None) -> VersionView:
        return VersionView(
            id=row.id, parent_id=row.parent_id, change=row.change, created_by=row.created_by,
            documents=row.documents, chars=row.chars, created_at=row.created_at, saved_at=row.saved_at,
            activated_at=row.activated_at, active=self._active is not None and row.id == self._active.version,
            head=row.id == head_id,
        )  # fmt: skip

    async def _exists(self, version: str) -> bool:
        async with self._sessions() as session:
            return await session.get(KnowledgeVersion, version) is not None

    async def _head(self) -> KnowledgeVersion | None:
        query = select(KnowledgeVersion).order_by(col(KnowledgeVersion.saved_at).desc()).limit(1)
        async with self._sessions() as session:
            return (await session.execute(query)).scalars().first()

    async def _latest_activated(self) -> str | None:
        return await _latest_activated(self._sessions)

    async def _mark_activated(self, version: str, *, only_if_none: bool = False) -> None:
        async with self._sessions() as session:
            if only_if_none and await self._latest_activated() is not None:
                return  # another process seeded and activated first
            row = await session.get(KnowledgeVersion, version)
            if row is None:
                raise NotFound(f"no knowledge version {version!r}")
            row.activated_at = utcnow()
            await session.commit()

    async def _documents(self, version: str) -> list[Document]:
        return await _documents_in(self._sessions, version)

    async def _create(
        self, documents: Sequence[Document], *, parent_id: str | None, change: str, created_by: str | None
    ) -> Saved:
        docs = ordered(documents)
        text = render(docs)
        vid = version_id(text)
        now = utcnow()
        for attempt in (1, 2):  # a concurrent save of the same text or version: the second sees its rows
            try:
                async with self._sessions() as session:
                    existing = await session.get(KnowledgeVersion, vid)
                    if existing is not None:
                        existing.saved_at = now
                        await session.commit()
                        await session.refresh(existing)
                        head = await self._head()
                        return Saved(self._view(existing, head.id if head else None), created=False)
                    for doc in docs:
                        if await session.get(KnowledgeText, doc.sha256) is None:
                            session.add(KnowledgeText(sha256=doc.sha256, text=doc.text, created_at=now))
                    row = KnowledgeVersion(
                        id=vid, parent_id=parent_id, change=change[:300], created_by=created_by,
                        documents=len(docs), chars=len(text), created_at=now, saved_at=now,
                    )  # fmt: skip
                    session.add(row)
                    await session.flush()
                    for position, doc in enumerate(docs):
                        session.add(KnowledgeDocument(
                            version_id=vid, position=position, name=doc.name, kind=doc.kind,
                            text_sha256=doc.sha256,
                        ))  # fmt: skip
                    await session.commit()
                    await session.refresh(row)
                    return Saved(self._view(row, vid), created=True)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


async def _documents_in(sessions: async_sessionmaker[AsyncSession], version: str) -> list[Document]:
    query = (
        select(KnowledgeDocument, KnowledgeText.text)
        .join(KnowledgeText, col(KnowledgeText.sha256) == col(KnowledgeDocument.text_sha256))
        .where(col(KnowledgeDocument.version_id) == version)
        .order_by(col(KnowledgeDocument.position))
    )
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    docs = [Document(d.name, _kind(d.kind), text) for d, text in rows]
    if not docs:
        raise NotFound(f"no knowledge version {version!r}")
    return docs


async def _latest_activated(sessions: async_sessionmaker[AsyncSession]) -> str | None:
    query = (
        select(KnowledgeVersion.id)
        .where(col(KnowledgeVersion.activated_at).is_not(None))
        .order_by(col(KnowledgeVersion.activated_at).desc())
        .limit(1)
    )
    async with sessions() as session:
        return (await session.execute(query)).scalars().first()


def _merge(current: Sequence[Document], incoming: Sequence[Document]) -> list[Document]:
    """``current`` with each incoming document replacing the one of its name in place (or the policy, for
    a policy), new ones appended: unchanged articles keep their order. A name used by the other kind is a
    conflict."""
    merged = list(current)
    for doc in incoming:
        same = [i for i, d in enumerate(merged) if d.name == doc.name]
        if same and merged[same[0]].kind != doc.kind:
            raise KnowledgeConflict(f"{doc.name!r} is already the name of the {merged[same[0]].kind}")
        if doc.kind == "policy":
            same = [i for i, d in enumerate(merged) if d.kind == "policy"]
        if same:
            merged[same[0]] = doc
        else:
            merged.append(doc)
    return merged
