"""Agents' full-text search over messages, internal notes, tickets and customers (docs/search.md).

What is searched is one SQL table, ``search_entry``: one row per message, note, ticket (subject and body)
and conversation customer (name and e-mail). PostgreSQL matches it with ``websearch_to_tsquery`` over a GIN
index on its English tsvector; SQLite (embedded defaults) with an FTS5 table the migration keeps in step by
triggers. Both get the same query, parsed here first (:func:`parse_query`) into words, quoted phrases,
``-excluded`` words and ``OR``: a query is either understood the same way on both databases or refused with
a 400, and no user text ever reaches FTS5's own query syntax.

How messages get there: the turn path does not write SQL. A periodic job (:meth:`SearchIndex.index_changed`,
every ``SWITCHBOARD_SEARCH_INDEX_INTERVAL_S``) reads the conversations active since its last pass from the
archiver's active set and copies their new messages from Redis; the archiver indexes each batch once more
just before archiving it, so nothing is lost when the Redis keys expire. A message is findable a few
seconds after it was sent, live or archived, at no cost to the customer's turn. Notes are written to SQL
with their index row in one transaction, so they are findable at once.

Erasure deletes a conversation's rows with its archive (:func:`delete_entries`, in the same transaction);
an indexing pass that read a conversation just before its erasure checks the tombstone after its commit
and deletes what it wrote, as the archiver does. Agents see customers' original text (redaction applies
to what the model is sent), so the index holds what the console shows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support import keys
from support.conversation.store import ConversationStore, visitor_identities
from support.db.models import ConversationLabel, SearchEntry, Ticket, as_utc, iso_z
from support.errors import ValidationFailed
from support.redis_client import RedisClient

log = logging.getLogger(__name__)


def ticket_id_of(conversation_id: str) -> str | None:
    """The ticket of a ticket's conversation (None for a chat). Imported when first used: the ticket
    service imports attachments, which import customer data, which imports this module (erasure)."""
    from support.tickets.service import ticket_id_of as of  # see the docstring

    return of(conversation_id)


ENTRIES: Table = SearchEntry.__table__  # type: ignore[attr-defined]
MAX_QUERY_CHARS = 200  # a search box, not a document: longer input is a mistake or an attack
MAX_QUERY_TERMS = 12  # each term is one more FTS lookup; a dozen covers any real search
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
SNIPPET_CHARS = 160  # about two lines of the results list
SNIPPET_LEAD_CHARS = 50  # context kept before the first match
INDEX_BATCH = 100  # conversations per indexing transaction
# How far back each pass looks before its watermark: the store re-marks a busy conversation in the active
# set at most once a minute (support.runtime ARCHIVE_INDEX_FRACTION), so its score can be a minute old.
OVERLAP_S = 120.0
FIRST_PASS_LOOKBACK = timedelta(days=1)  # no watermark yet: everything still hot in Redis
WORD = re.compile(r"\w+")
# PostgreSQL's English configuration drops these words from documents and queries; FTS5 would require
# them. Dropped from every query here, so a query means the same on both databases.
_STOP_WORDS = (
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers "
    "herself it its itself they them their theirs themselves what which who whom this that these those am is "
    "are was were be been being have has had having do does did doing a an the and but if or because as "
    "until while of at by for with about against between into through during before after above below to "
    "from up down in out on off over under again further then once here there when where why how all any "
    "both each few more most other some such no nor not only own same so than too very s t can will just "
    "don should now"
)
STOP_WORDS = frozenset(_STOP_WORDS.split())


# --- the query ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """One word or quoted phrase (``words`` in order); ``negated``: results must not contain it."""

    words: tuple[str, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """What the agent asked for: every group must match (AND); a group matches if any term does (OR)."""

    groups: tuple[tuple[Term, ...], ...]
    excluded: tuple[Term, ...]

    @property
    def words(self) -> list[str]:
        """The words to highlight (excluded ones are not)."""
        return [w for group in self.groups for term in group for w in term.words]

    def fts5(self) -> str:
        """The query in SQLite FTS5 syntax: every term a quoted string, so no input is FTS5 syntax."""

        def quoted(term: Term) -> str:
            return '"' + " ".join(term.words) + '"'

        parts = []
        for group in self.groups:
            alternatives = [quoted(term) for term in group]
            parts.append(alternatives[0] if len(alternatives) == 1 else "(" + " OR ".join(alternatives) + ")")
        out = " AND ".join(parts)
        for term in self.excluded:
            out += f" NOT {quoted(term)}"
        return out

    def websearch(self) -> str:
        """The query for PostgreSQL's ``websearch_to_tsquery``: the same meaning, in its syntax."""

        def quoted(term: Term) -> str:
            return '"' + " ".join(term.words) + '"' if len(term.words) > 1 else term.words[0]

        parts = [" or ".join(quoted(term) for term in group) for group in self.groups]
        parts += ["-" + quoted(term) for term in self.excluded]
        return " ".join(parts)


def _words(chunk: str) -> tuple[str, ...]:
    return tuple(w for w in (w.lower() for w in WORD.findall(chunk)) if w not in STOP_WORDS)


def parse_query(raw: str) -> Query:
    """Words, ``"quoted phrases"``, ``-excluded`` terms and ``OR`` between terms; anything else in the
    input (FTS5 operators, ``*``, parentheses, punctuation) only separates words, and English stop words
    (``the``, ``and``) are dropped. :class:`ValidationFailed`
    (400) for an unbalanced quote, a query too long, or one with nothing to look for."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationFailed("`q` must be a non-empty search query")
    if len(raw) > MAX_QUERY_CHARS:
        raise ValidationFailed(f"`q` is longer than {MAX_QUERY_CHARS} characters")
    if raw.count('"') % 2:
        raise ValidationFailed('`q` has an unbalanced quote (")')
    groups: list[list[Term]] = []
    excluded: list[Term] = []
    join_next = False
    for match in re.finditer(r'(-?)"([^"]*)"|(\S+)', raw):
        if match.group(3) is not None:
            token = match.group(3)
            if token == "OR":
                join_next = bool(groups)
                continue
            negated = token.startswith("-")
            words = _words(token)
        else:
            negated = match.group(1) == "-"
            words = _words(match.group(2))
        if not words:
            join_next = False
            continue
        term = Term(words, negated)
        if negated:
            excluded.append(term)
        elif join_next:
            groups[-1].append(term)
        else:
            groups.append([term])
        join_next = False
    if not groups:
        raise ValidationFailed("`q` has no words to search for")
    if sum(len(g) for g in groups) + len(excluded) > MAX_QUERY_TERMS:
        raise ValidationFailed(f"`q` has more than {MAX_QUERY_TERMS} terms")
    return Query(tuple(tuple(g) for g in groups), tuple(excluded))


# --- snippets ------------------------------------------------------------------------------------------


def _stem(word: str) -> str:
    """A crude English stem, only to highlight ``refunds`` for ``refund`` (the databases stem properly)."""
    word = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def snippet(body: str, words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """About :data:`SNIPPET_CHARS` of ``body`` around its first match, on one line, and the (start, end)
    offsets of the matched words in it. Plain text: the console escapes it and marks the offsets."""
    stems = {_stem(w) for w in words}
    flat = " ".join(body.split())
    hits = [m for m in WORD.finditer(flat) if _stem(m.group()) in stems]
    start = 0
    if hits and hits[0].start() > SNIPPET_LEAD_CHARS:
        start = flat.rfind(" ", 0, hits[0].start() - SNIPPET_LEAD_CHARS) + 1
    end = min(len(flat), start + SNIPPET_CHARS)
    if end < len(flat) and " " in flat[start:end]:
        end = flat.rfind(" ", start, end)
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(flat) else ""
    shift = len(prefix) - start
    marks = [(m.start() + shift, m.end() + shift) for m in hits if m.start() >= start and m.end() <= end]
    return prefix + flat[start:end] + suffix, marks


# --- searching -----------------------------------------------------------------------------------------


LABEL_FILTER = (
    " AND e.conversation_id IN (SELECT conversation_id FROM conversation_label WHERE label = :label)"
)
SEARCH_SQL = {
    "postgresql": "SELECT e.id FROM search_entry e WHERE to_tsvector('english', e.text) @@ "
    "websearch_to_tsquery('english', :q){label} ORDER BY e.at DESC, e.id DESC LIMIT :limit",
    "sqlite": "SELECT e.id FROM search_entry_fts f JOIN search_entry e ON e.id = f.rowid "
    "WHERE search_entry_fts MATCH :q{label} ORDER BY e.at DESC, e.id DESC LIMIT :limit",
}


class SearchService:
    """Runs agents' queries over ``search_entry``; the engine and store are passed in."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def search(
        self, q: str, *, label: str | None = None, limit: int = DEFAULT_LIMIT
    ) -> list[dict[str, Any]]:
        """Matching entries, newest first, each with a snippet and the conversation's labels."""
        query = parse_query(q)
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationFailed(f"`limit` must be between 1 and {MAX_LIMIT}")
        async with self._sessions() as session:
            dialect = session.get_bind().dialect.name
            sql = SEARCH_SQL["postgresql" if dialect == "postgresql" else "sqlite"]
            params: dict[str, Any] = {
                "q": query.websearch() if dialect == "postgresql" else query.fts5(),
                "limit": limit,
            }
            if label is not None:
                params["label"] = label
            try:
                found = await session.execute(text(sql.format(label=LABEL_FILTER if label else "")), params)
            except DBAPIError as exc:  # parse_query makes this unreachable; a 400 rather than a 500 if not
                log.warning("search query refused by the database: %s", exc.orig)
                raise ValidationFailed("`q` could not be searched; use words, quotes, - and OR") from exc
            ids = [row[0] for row in found]
            if not ids:
                return []
            rows = {
                r.id: r
                for r in (
                    await session.execute(select(SearchEntry).where(col(SearchEntry.id).in_(ids)))
                ).scalars()
            }
            conversations = sorted({r.conversation_id for r in rows.values()})
            labels: dict[str, list[str]] = {}
            got = await session.execute(
                select(ConversationLabel)
                .where(col(ConversationLabel.conversation_id).in_(conversations))
                .order_by(col(ConversationLabel.label))
            )
            for row in got.scalars():
                labels.setdefault(row.conversation_id, []).append(row.label)
        out = []
        for entry_id in ids:
            entry = rows[entry_id]
            shown, marks = snippet(entry.text, query.words)
            out.append(
                {
                    "kind": entry.kind, "conversation_id": entry.conversation_id,
                    "ticket_id": entry.ticket_id, "visitor_id": entry.visitor_id, "seq": entry.seq,
                    "role": entry.role, "snippet": shown, "highlights": [list(m) for m in marks],
                    "at": iso_z(entry.at), "labels": labels.get(entry.conversation_id, []),
                }
            )  # fmt: skip
        return out


# --- indexing ------------------------------------------------------------------------------------------


def _insert(dialect: str) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ENTRIES)


async def delete_entries(session: AsyncSession, conversation_ids: Sequence[str]) -> int:
    """Delete the conversations' index rows in the caller's transaction (erasure); returns how many."""
    if not conversation_ids:
        return 0
    result = await session.execute(
        delete(ENTRIES).where(ENTRIES.c.conversation_id.in_(list(conversation_ids)))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def note_entry(
    note_id: str, conversation_id: str, body: str, at: datetime, visitor_id: str | None
) -> dict[str, Any]:
    """The index row of an internal note (written with the note, in its transaction)."""
    return {
        "ref": f"n:{note_id}", "kind": "note", "conversation_id": conversation_id, "seq": None,
        "ticket_id": ticket_id_of(conversation_id), "visitor_id": visitor_id, "role": "agent", "text": body,
        "at": at,
    }  # fmt: skip


async def add_entries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert index rows in the caller's transaction; a row already indexed (same ``ref``) is kept."""
    if rows:
        dialect = session.get_bind().dialect.name
        await session.execute(_insert(dialect).values(rows).on_conflict_do_nothing(index_elements=["ref"]))


class SearchIndex:
    """Copies new messages, customers and tickets of conversations into ``search_entry``."""

    def __init__(
        self, store: ConversationStore, sessions: async_sessionmaker[AsyncSession], redis: RedisClient
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._redis = redis

    async def index_conversations(self, conversation_ids: Iterable[str]) -> int:
        """Index what is new in each conversation still in Redis; returns how many rows were written."""
        ids = list(dict.fromkeys(conversation_ids))
        written = 0
        for start in range(0, len(ids), INDEX_BATCH):
            written += await self._index_batch(ids[start : start + INDEX_BATCH])
        return written

    async def _index_batch(self, ids: list[str]) -> int:
        async with self._sessions() as session:
            found = await session.execute(
                select(col(SearchEntry.conversation_id), func.max(col(SearchEntry.seq)))
                .where(col(SearchEntry.conversation_id).in_(ids), col(SearchEntry.kind) == "message")
                .group_by(col(SearchEntry.conversation_id))
            )
            indexed = {cid: int(seq) for cid, seq in found.all() if seq is not None}
            ticket_ids = [t for t in (ticket_id_of(cid) for cid in ids) if t is not None]
            tickets = {}
            if ticket_ids:
                got = await session.execute(select(Ticket).where(col(Ticket.id).in_(ticket_ids)))
                tickets = {t.id: t for t in got.scalars()}
        new_rows: list[dict[str, Any]] = []
        customers: list[dict[str, Any]] = []
        for cid in ids:
            state = await self._store.get_state(cid)
            if state is None:
                continue  # gone from Redis: archived (and indexed before) or erased
            events = await self._store.events_after(cid, indexed.get(cid, 0))
            ticket_id = ticket_id_of(cid)
            messages = [
                ev
                for ev in events
                # A ticket's first message is its subject and body: indexed once, as the ticket.
                if ev.type == "message" and ev.text.strip() and ev.client_id != f"ticket-{ticket_id}"
            ]
            if not messages and cid in indexed:
                continue
            visitor_id = dict(visitor_identities(state.visitor)).get("visitor")
            new_rows += [
                {
                    "ref": f"m:{cid}:{ev.seq}", "kind": "message", "conversation_id": cid, "seq": ev.seq,
                    "ticket_id": ticket_id, "visitor_id": visitor_id, "role": ev.role, "text": ev.text,
                    "at": as_utc(datetime.fromisoformat(ev.created_at)),
                }
                for ev in messages
            ]  # fmt: skip
            who = " ".join(
                str(state.visitor[k]) for k in ("name", "email") if isinstance(state.visitor.get(k), str)
            ).strip()
            if who:
                customers.append(
                    {
                        "ref": f"c:{cid}", "kind": "customer", "conversation_id": cid, "seq": None,
                        "ticket_id": ticket_id, "visitor_id": visitor_id, "role": "customer", "text": who,
                        "at": as_utc(datetime.fromisoformat(state.created_at)),
                    }
                )  # fmt: skip
            ticket = tickets.get(ticket_id or "")
            if ticket is not None:
                new_rows.append(
                    {
                        "ref": f"t:{ticket.id}", "kind": "ticket", "conversation_id": cid, "seq": None,
                        "ticket_id": ticket.id, "visitor_id": visitor_id, "role": "customer",
                        "text": f"{ticket.subject}\n{ticket.body}", "at": as_utc(ticket.created_at),
                    }
                )  # fmt: skip
        if not new_rows and not customers:
            return 0
        async with self._sessions() as session, session.begin():
            dialect = session.get_bind().dialect.name
            await add_entries(session, new_rows)
            if customers:  # a customer who gave their name later: the row follows
                upsert = _insert(dialect).values(customers)
                await session.execute(
                    upsert.on_conflict_do_update(
                        index_elements=["ref"],
                        set_={"text": upsert.excluded.text, "visitor_id": upsert.excluded.visitor_id},
                    )
                )
        erased = await self._store.erased_among(ids)
        if erased:  # erased while we copied it: see the module docstring
            async with self._sessions() as session, session.begin():
                await delete_entries(session, erased)
        return len(new_rows) + len(customers)

    async def index_changed(self, now: datetime | None = None) -> int:
        """Index every conversation active since the last pass (a periodic job); returns rows written."""
        started = now or datetime.now(UTC)
        key = keys.search_index_watermark()
        raw = await self._redis.get(key)
        since = (
            started - FIRST_PASS_LOOKBACK
            if raw is None
            else datetime.fromtimestamp(float(raw), UTC) - timedelta(seconds=OVERLAP_S)
        )
        found = await self._redis.zrangebyscore(keys.active_conversations(), since.timestamp(), "+inf")
        ids = [m.decode() if isinstance(m, bytes) else str(m) for m in found]
        written = await self.index_conversations(ids)
        await self._redis.set(key, repr(started.timestamp()))
        return written


__all__ = [
    "Query",
    "SearchIndex",
    "SearchService",
    "Term",
    "add_entries",
    "delete_entries",
    "note_entry",
    "parse_query",
    "snippet",
]
