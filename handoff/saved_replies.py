"""Saved replies: the team's library (admins manage it, every agent uses it) and each agent's own.

A saved reply has a title, a shortcut (``/refund``) the composer's picker finds it by, and a text that may
hold placeholders filled when it is inserted into a conversation: ``{{customer.name}}``,
``{{customer.first_name}}``, ``{{customer.email}}``, ``{{agent.name}}``, ``{{agent.first_name}}``. An
unknown placeholder is refused when the reply is saved; a value the conversation does not have is replaced
by a fallback that reads naturally ("Hi there").

Who may do what: a team reply is read by every agent and changed only by admins (403 for an agent); a
personal reply exists only for its owner: anyone else gets 404, exactly as for an id that does not exist,
so its existence is not revealed. Every change is recorded in the audit log (its id and shortcut, never
its text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, or_, select

from handoff.agents import AgentIdentity
from handoff.scrub import AGENT_NAME_PLACEHOLDER, EMAIL_PLACEHOLDER, NAME_PLACEHOLDER
from support.audit import AuditSink, NoAudit
from support.conversation.store import ConversationStore
from support.db.models import Example, SavedReply, iso_z, utcnow
from support.errors import Conflict, Forbidden, NotFound, ValidationFailed
from support.settings import SavedReplySettings

Scope = Literal["team", "personal"]
SCOPES: tuple[Scope, ...] = ("team", "personal")
TEAM_KEY = "team"  # owner_key of team replies (agent ids are 32 hex characters: no clash)
MAX_TITLE_CHARS = 120
MAX_QUERY_CHARS = 100
SHORTCUT_RE = re.compile(r"/[a-z0-9][a-z0-9_-]{0,31}")
PLACEHOLDER_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
# Placeholder -> what it becomes when the conversation has no value for it.
FALLBACKS: dict[str, str] = {
    "customer.name": "there",
    "customer.first_name": "there",
    "customer.email": "your email address",
    "agent.name": "our team",
    "agent.first_name": "our team",
}
# An approved example's scrubbed people (handoff.scrub) become the placeholders that fill them back in.
FROM_EXAMPLE = {
    NAME_PLACEHOLDER: "{{customer.name}}",
    AGENT_NAME_PLACEHOLDER: "{{agent.name}}",
    EMAIL_PLACEHOLDER: "{{customer.email}}",
}


def placeholders_in(text: str) -> list[str]:
    """The placeholders ``text`` uses, in order; :class:`ValidationFailed` naming any unknown one."""
    found = [match.group(1) for match in PLACEHOLDER_RE.finditer(text)]
    unknown = sorted({name for name in found if name not in FALLBACKS})
    if unknown:
        raise ValidationFailed(
            f"unknown placeholder {', '.join('{{' + n + '}}' for n in unknown)}; "
            f"known: {', '.join('{{' + n + '}}' for n in FALLBACKS)}"
        )
    return found


def render(text: str, values: Mapping[str, str | None]) -> str:
    """``text`` with each placeholder replaced by its value, or its fallback when the value is missing."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = values.get(name)
        return value if value else FALLBACKS.get(name, match.group(0))

    return PLACEHOLDER_RE.sub(fill, text)


def values_for(visitor: Mapping[str, Any], agent: AgentIdentity) -> dict[str, str | None]:
    """The placeholder values of a conversation's customer (its visitor record) and the agent."""
    name = visitor.get("name")
    name = name.strip() if isinstance(name, str) and name.strip() else None
    email = visitor.get("email")
    email = email.strip() if isinstance(email, str) and "@" in email else None
    agent_name = agent.name.strip() or None
    return {
        "customer.name": name,
        "customer.first_name": name.split()[0] if name else None,
        "customer.email": email,
        "agent.name": agent_name,
        "agent.first_name": agent_name.split()[0] if agent_name else None,
    }


def reply_json(reply: SavedReply, viewer: AgentIdentity) -> dict[str, Any]:
    """A saved reply as the API returns it; ``editable``: whether ``viewer`` may change it."""
    return {
        "id": reply.id, "scope": reply.scope, "title": reply.title, "shortcut": reply.shortcut,
        "text": reply.text, "placeholders": sorted(set(placeholders_in(reply.text))),
        "example_id": reply.example_id,
        "editable": reply.owner_id == viewer.id if reply.scope == "personal" else viewer.is_admin,
        "updated_at": iso_z(reply.updated_at),
    }  # fmt: skip


@dataclass(frozen=True)
class ReplyChange:
    """A new saved reply's fields, or a change's (None: unchanged)."""

    title: str | None = None
    shortcut: str | None = None
    text: str | None = None


class SavedReplyService:
    """The saved-reply library. Sessions, the conversation store and the audit sink are passed in."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: ConversationStore,
        settings: SavedReplySettings,
        audit: AuditSink | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self.settings = settings
        self._audit: AuditSink = audit or NoAudit()

    # --- checks -----------------------------------------------------------------------------------

    def _checked(self, change: ReplyChange) -> ReplyChange:
        """``change`` with its fields trimmed; :class:`ValidationFailed` for a bad one."""
        title, shortcut, text = change.title, change.shortcut, change.text
        if title is not None:
            title = title.strip()
            if not title or len(title) > MAX_TITLE_CHARS:
                raise ValidationFailed(f"`title` must have 1 to {MAX_TITLE_CHARS} characters")
        if shortcut is not None:
            shortcut = shortcut.strip().lower()
            if not shortcut.startswith("/"):
                shortcut = "/" + shortcut
            if not SHORTCUT_RE.fullmatch(shortcut):
                raise ValidationFailed(
                    "`shortcut` must be / and 1 to 32 lower-case letters, digits, - or _ (e.g. /refund)"
                )
        if text is not None:
            if not text.strip():
                raise ValidationFailed("`text` must not be empty")
            if len(text) > self.settings.max_text_chars:
                raise ValidationFailed(f"`text` is longer than {self.settings.max_text_chars} characters")
            placeholders_in(text)
        return ReplyChange(title=title, shortcut=shortcut, text=text)

    @staticmethod
    def _may_change(reply: SavedReply, agent: AgentIdentity) -> None:
        if reply.scope == "team" and not agent.is_admin:
            raise Forbidden("only admins change team saved replies")

    async def _get(self, session: AsyncSession, reply_id: str, agent: AgentIdentity) -> SavedReply:
        """The reply ``agent`` may see, else :class:`NotFound` (also for another agent's personal one)."""
        reply = await session.get(SavedReply, reply_id)
        if reply is None or (reply.scope == "personal" and reply.owner_id != agent.id):
            raise NotFound(f"no saved reply {reply_id}")
        return reply

    # --- reading ----------------------------------------------------------------------------------

    async def visible(self, agent: AgentIdentity, q: str | None = None) -> list[SavedReply]:
        """The team's replies and ``agent``'s own, by shortcut; ``q`` matches title, shortcut or text."""
        stmt = select(SavedReply).where(
            or_(col(SavedReply.owner_key) == TEAM_KEY, col(SavedReply.owner_key) == agent.id)
        )
        if q is not None and q.strip():
            if len(q) > MAX_QUERY_CHARS:
                raise ValidationFailed(f"`q` is longer than {MAX_QUERY_CHARS} characters")
            needle = q.strip().lower()
            stmt = stmt.where(
                or_(
                    *(func.lower(column).contains(needle, autoescape=True)
                      for column in (col(SavedReply.title), col(SavedReply.shortcut), col(SavedReply.text)))
                )
            )  # fmt: skip
        stmt = stmt.order_by(col(SavedReply.shortcut), col(SavedReply.scope))
        async with self._sessions() as session:
            return list((await session.execute(stmt)).scalars().all())

    async def get(self, reply_id: str, agent: AgentIdentity) -> SavedReply:
        """One reply ``agent`` may see, else :class:`NotFound`."""
        async with self._sessions() as session:
            return await self._get(session, reply_id, agent)

    async def render(self, reply_id: str, agent: AgentIdentity, conversation_id: str) -> str:
        """The reply's text filled in for this conversation's customer and ``agent``."""
        reply = await self.get(reply_id, agent)
        state = await self._store.get_state(conversation_id)
        if state is None:
            raise NotFound(f"no conversation {conversation_id}")
        return render(reply.text, values_for(state.visitor, agent))

    # --- changing ---------------------------------------------------------------------------------

    async def create(
        self, agent: AgentIdentity, scope: str, change: ReplyChange, *, example_id: str | None = None
    ) -> SavedReply:
        """A new reply in ``scope``; 403 for an agent adding to the team's, 400 past the library's size,
        409 for a shortcut already used in the same library."""
        if scope not in SCOPES:
            raise ValidationFailed("`scope` must be team or personal")
        if scope == "team" and not agent.is_admin:
            raise Forbidden("only admins add team saved replies")
        checked = self._checked(change)
        if checked.title is None or checked.shortcut is None or checked.text is None:
            raise ValidationFailed("`title`, `shortcut` and `text` are required")
        owner_key = TEAM_KEY if scope == "team" else agent.id
        limit = self.settings.max_team if scope == "team" else self.settings.max_personal
        reply = SavedReply(
            scope=scope, owner_id=None if scope == "team" else agent.id, owner_key=owner_key,
            title=checked.title, shortcut=checked.shortcut, text=checked.text, example_id=example_id,
            created_by=agent.id,
        )  # fmt: skip
        async with self._sessions() as session:
            count = (
                await session.execute(
                    select(func.count()).select_from(SavedReply).where(col(SavedReply.owner_key) == owner_key)
                )
            ).scalar_one()
            if count >= limit:
                raise ValidationFailed(f"the {scope} library holds {limit} saved replies already (its limit)")
            session.add(reply)
            try:
                await session.commit()
            except IntegrityError as exc:
                raise Conflict(f"the {scope} library already has a reply {checked.shortcut}") from exc
        details: dict[str, str] = {"scope": scope, "shortcut": reply.shortcut}
        if example_id:
            details["example_id"] = example_id
        await self._audit.record(agent.id, "saved_reply.created", "saved_reply", reply.id, details)
        return reply

    async def update(self, reply_id: str, agent: AgentIdentity, change: ReplyChange) -> SavedReply:
        """Change a reply's title, shortcut or text (404 / 403 as in the module docstring)."""
        checked = self._checked(change)
        if checked.title is None and checked.shortcut is None and checked.text is None:
            raise ValidationFailed("nothing to change: give title, shortcut or text")
        async with self._sessions() as session:
            reply = await self._get(session, reply_id, agent)
            self._may_change(reply, agent)
            changed = [name for name in ("title", "shortcut", "text") if getattr(checked, name) is not None]
            for name in changed:
                setattr(reply, name, getattr(checked, name))
            reply.updated_at = utcnow()
            session.add(reply)
            try:
                await session.commit()
            except IntegrityError as exc:
                raise Conflict(f"the {reply.scope} library already has a reply {checked.shortcut}") from exc
        await self._audit.record(
            agent.id, "saved_reply.updated", "saved_reply", reply.id,
            {"scope": reply.scope, "shortcut": reply.shortcut, "fields": changed},
        )  # fmt: skip
        return reply

    async def delete(self, reply_id: str, agent: AgentIdentity) -> None:
        """Remove a reply (404 / 403 as in the module docstring)."""
        async with self._sessions() as session:
            reply = await self._get(session, reply_id, agent)
            self._may_change(reply, agent)
            await session.delete(reply)
            await session.commit()
        await self._audit.record(
            agent.id, "saved_reply.deleted", "saved_reply", reply_id,
            {"scope": reply.scope, "shortcut": reply.shortcut},
        )  # fmt: skip

    async def from_example(
        self, example_id: str, agent: AgentIdentity, scope: str, *, title: str | None, shortcut: str | None
    ) -> SavedReply:
        """A saved reply made from an approved example's reply (stored scrubbed: its ``[NAME]``,
        ``[AGENT_NAME]`` and ``[EMAIL]`` become placeholders). 404 for an unknown example, 409 for one
        not approved."""
        async with self._sessions() as session:
            example = await session.get(Example, example_id)
        if example is None:
            raise NotFound(f"no example {example_id}")
        if example.status != "approved":
            raise Conflict("only approved examples become saved replies")
        text = example.agent_text
        for scrubbed, placeholder in FROM_EXAMPLE.items():
            text = text.replace(scrubbed, placeholder)
        # Defaults from the intent, else the reply's first words (never the customer's message).
        words = re.findall(r"[a-z0-9]+", (example.intent or "").lower()) or [f"reply-{example.id[:6]}"]
        default_title = (
            " ".join(example.intent.split("_")).capitalize()
            if example.intent
            else (" ".join(text.split()[:6]))
        )
        change = ReplyChange(
            title=title or default_title[:MAX_TITLE_CHARS],
            shortcut=shortcut or "/" + "-".join(words)[:32].strip("-"),
            text=text,
        )
        return await self.create(agent, scope, change, example_id=example.id)
