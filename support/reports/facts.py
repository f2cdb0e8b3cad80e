"""Conversation facts: the one row per conversation (``conversation_fact``) that every report aggregates.

:func:`compute_fact` is pure: it derives a conversation's row from its event log, triage verdicts, handoff
trail, ratings and a summary of its ledger rows. :class:`FactRefresher` reads those sources (the Redis
store first; the archived ``conversation_event`` rows once Redis has forgotten the conversation; SQL for
the rest) and upserts rows, in one transaction per batch, leaving the ``predicted_*`` columns alone (the
predicted-satisfaction job owns them). docs/metrics.md defines every metric built on these columns;
docs/metrics.md ("How the rows are kept") says how the rows are kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from support import keys
from support.conversation.store import ConversationStore, Event
from support.db.models import (
    ArchivedConversation,
    ArchivedMessage,
    ConversationFact,
    HandoffRecord,
    ModelUsage,
    Rating,
    Ticket,
    utcnow,
)
from support.redis_client import RedisClient
from support.tickets.service import CONVERSATION_PREFIX as TICKET_PREFIX

log = logging.getLogger(__name__)

FACTS: Table = ConversationFact.__table__  # type: ignore[attr-defined]
REOPEN_WINDOW = timedelta(days=7)
BATCH = 200  # conversations per refresh transaction
# How far back each refresh_changed pass looks before its watermark. The store re-indexes a busy
# conversation in the active set at most once a minute (support.runtime ARCHIVE_INDEX_FRACTION), so the
# score of a conversation's last events can be up to a minute older than they are; a triage verdict is
# recorded a few seconds after its message. Two minutes of overlap covers both.
OVERLAP_S = 120.0
# How far back the first changed-since pass (no watermark yet) looks: everything still hot in Redis.
FIRST_PASS_LOOKBACK = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """A conversation's ledger rows, summed: what they cost, how many calls, the first answer's policy."""

    cost_usd: Decimal = Decimal(0)
    calls: int = 0
    policy_version: str | None = None


@dataclass(frozen=True, slots=True)
class Fact:
    """One ``conversation_fact`` row as :func:`compute_fact` derives it (``predicted_*`` not included)."""

    conversation_id: str
    channel: str
    started_at: datetime
    intent: str | None
    policy_version: str | None
    agent_id: str | None
    resolution_type: str
    customer_messages: int
    bot_messages: int
    agent_messages: int
    last_customer_at: datetime | None
    first_bot_reply_at: datetime | None
    last_bot_reply_at: datetime | None
    bot_first_response_s: float | None
    handoff_count: int
    handed_off_at: datetime | None
    handoff_reason: str | None
    queue_wait_s: float | None
    human_first_response_s: float | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution_s: float | None
    confirmed: bool
    reopened: bool
    rating: int | None
    rated_at: datetime | None
    cost_usd: Decimal
    model_calls: int

    def row(self) -> dict[str, Any]:
        """The column values, as the upsert writes them."""
        return {name: getattr(self, name) for name in FACT_FIELDS}


# The columns a refresh writes (with ``updated_at``): every one but the predicted-satisfaction job's own.
FACT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Fact))


def _utc(moment: datetime | str) -> datetime:
    """Aware UTC from an ISO string (the store's ``created_at``) or a datetime (SQL returns naive UTC)."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _person_of(event: Event) -> str | None:
    """The agent id of a person's message (the desk writes it into ``extra``; ``author`` may carry it)."""
    agent_id = event.extra.get("agent_id") or (event.author or {}).get("id")
    return str(agent_id) if agent_id else None


def compute_fact(
    conversation_id: str,
    events: Sequence[Event],
    triages: Mapping[int, Mapping[str, Any]],
    handoffs: Sequence[HandoffRecord],
    ratings: Sequence[Rating],
    ledger: LedgerSummary,
    *,
    ticket_filed_at: datetime | None = None,
) -> Fact | None:
    """The fact row of one conversation; None when it has no customer message and is no ticket (nothing
    happened that a report could count). Pure: no I/O, no clock.

    Inputs: every persisted event in seq order; triage verdicts by customer-message seq; the conversation's
    ``handoff_record`` rows; its ``rating`` rows; its ledger summary; for a ticket (its conversation id
    begins ``ticket-``, or ``ticket_filed_at`` is given) the time it was filed.

    Messages: ``customer`` messages are the customer's; ``assistant`` messages are bot replies (offline
    answers and a ticket's bot reply included) counted from the first customer message on; ``agent``
    messages are a person's; ``system`` messages count for nothing.

    Columns:

    - ``channel``: ``ticket`` for a ticket, else ``chat``.
    - ``started_at``: the first customer message (a ticket: when it was filed).
    - ``intent``: the intent of the first customer message that has a triage verdict.
    - ``policy_version``: the ledger's policy version of the conversation's first ``answer`` call.
    - ``agent_id``: the last person who sent a message (None if no person did).
    - ``customer_messages`` / ``bot_messages`` / ``agent_messages``: message counts;
      ``last_customer_at``, ``first_bot_reply_at``, ``last_bot_reply_at``: their times.
    - ``bot_first_response_s``: started_at -> the first bot reply.
    - ``handoff_count``: how often the conversation went from the bot (or from resolved) to people: a
      ``queued`` or ``agent`` status following a ``bot``/``resolved`` one (the first status counts from
      ``bot``). With no such status in the log, the number of ``handoff_record`` rows.
    - ``handed_off_at`` / ``handoff_reason``: the first handoff's time and reason code (the status event's
      ``reason``, else the first handoff record's).
    - ``queue_wait_s``: the first handoff -> the first ``agent`` status at or after it (a claim; 0 when
      the handoff went straight to an agent); from the first handoff record when the log has no handoff.
    - ``human_first_response_s``: the first handoff -> the first person's message after it (the first
      handoff record's ``first_response_at`` when the log has no handoff).
    - ``resolution_type``: a person sent a message -> ``handed_off`` if the bot also replied, else
      ``human``; no person's message: any handoff -> ``unanswered``; else ``bot``.
    - ``resolved_at``: the latest ``resolved`` status. ``resolved_by``: ``agent`` when the conversation was
      with an agent just before it and the latest ended handoff record does not say the customer closed
      it, else ``customer``.
    - ``resolution_s``: a ``bot`` conversation: started_at -> its last bot reply; any other: started_at ->
      resolved_at (None while unresolved). Reports count it over resolved conversations only.
    - ``confirmed``: a triage verdict with ``solved: true`` on a customer message, or the latest rating
      is 4-5.
    - ``reopened``: a customer message within 7 days after a ``resolved`` status.
    - ``rating`` / ``rated_at``: the latest rating (by time) and when it was given.
    - ``cost_usd`` / ``model_calls``: the sum of the ledger rows' cost, and their number.

    Whether a ``bot`` conversation counts as *assumed* resolved depends on the time of the report (its
    last message was the bot's and is older than 24 h): reports derive it from ``last_customer_at`` and
    ``last_bot_reply_at``, so the row does not go stale while nobody writes.
    """
    is_ticket = ticket_filed_at is not None or conversation_id.startswith(TICKET_PREFIX)
    messages = [e for e in events if e.type == "message"]
    customer = [e for e in messages if e.role == "customer"]
    if ticket_filed_at is not None:
        started_at: datetime = _utc(ticket_filed_at)
    elif customer:
        started_at = _utc(customer[0].created_at)
    else:
        return None
    first_customer_seq = customer[0].seq if customer else 0
    bot = [e for e in messages if e.role == "assistant" and e.seq > first_customer_seq]
    people = [e for e in messages if e.role == "agent"]
    customer_seqs = {e.seq for e in customer}

    # Handoffs, from the status events: the conversation leaving the bot (or a resolution) for people.
    handoff_events: list[Event] = []
    claims: list[datetime] = []
    resolutions: list[tuple[Event, str]] = []  # (resolved status, the state before it)
    state = "bot"
    for event in events:
        if event.type != "status":
            continue
        new_state = str(event.extra.get("state", ""))
        if new_state in ("queued", "agent") and state in ("bot", "resolved"):
            handoff_events.append(event)
        if new_state == "agent":
            claims.append(_utc(event.created_at))
        if new_state == "resolved":
            resolutions.append((event, state))
        state = new_state or state
    records = sorted(handoffs, key=lambda r: _utc(r.queued_at))
    first_record = records[0] if records else None

    handed_off_at: datetime | None = None
    handoff_reason: str | None = None
    queue_wait_s: float | None = None
    human_first_response_s: float | None = None
    if handoff_events:
        first = handoff_events[0]
        handoff_count = len(handoff_events)
        handed_off_at = _utc(first.created_at)
        reason = first.extra.get("reason") or (first_record.reason if first_record else None)
        handoff_reason = str(reason) if reason else None
        claimed = next((at for at in claims if at >= handed_off_at), None)
        queue_wait_s = _seconds(handed_off_at, claimed)
        replied = next((_utc(e.created_at) for e in people if e.seq > first.seq), None)
        human_first_response_s = _seconds(handed_off_at, replied)
    elif first_record is not None:
        handoff_count = len(records)
        handed_off_at = _utc(first_record.queued_at)
        handoff_reason = first_record.reason
        claimed_at = _utc(first_record.claimed_at) if first_record.claimed_at else None
        responded_at = _utc(first_record.first_response_at) if first_record.first_response_at else None
        queue_wait_s = _seconds(handed_off_at, claimed_at)
        human_first_response_s = _seconds(handed_off_at, responded_at)
    else:
        handoff_count = 0

    if people:
        resolution_type = "handed_off" if bot else "human"
    elif handoff_count:
        resolution_type = "unanswered"
    else:
        resolution_type = "bot"

    resolved_at: datetime | None = None
    resolved_by: str | None = None
    if resolutions:
        last_resolved, state_before = resolutions[-1]
        resolved_at = _utc(last_resolved.created_at)
        ended = [r for r in records if r.ended_at is not None]
        closed_by_customer = bool(ended) and ended[-1].outcome == "closed_by_customer"
        resolved_by = "agent" if state_before == "agent" and not closed_by_customer else "customer"

    first_bot_reply_at = _utc(bot[0].created_at) if bot else None
    last_bot_reply_at = _utc(bot[-1].created_at) if bot else None
    if resolution_type == "bot":
        resolution_s = _seconds(started_at, last_bot_reply_at)
    else:
        resolution_s = _seconds(started_at, resolved_at)

    latest = max(ratings, key=lambda r: _utc(r.created_at)) if ratings else None
    solved = any(bool(v.get("solved")) for seq, v in triages.items() if seq in customer_seqs)
    confirmed = solved or (latest is not None and latest.score >= 4)

    reopened = False
    for resolved, _ in resolutions:
        at = _utc(resolved.created_at)
        if any(e.seq > resolved.seq and _utc(e.created_at) - at <= REOPEN_WINDOW for e in customer):
            reopened = True
            break

    intent = next(
        (
            str(triages[e.seq]["intent"])
            for e in customer
            if e.seq in triages and triages[e.seq].get("intent")
        ),
        None,
    )
    return Fact(
        conversation_id=conversation_id,
        channel="ticket" if is_ticket else "chat",
        started_at=started_at,
        intent=intent,
        policy_version=ledger.policy_version,
        agent_id=_person_of(people[-1]) if people else None,
        resolution_type=resolution_type,
        customer_messages=len(customer),
        bot_messages=len(bot),
        agent_messages=len(people),
        last_customer_at=_utc(customer[-1].created_at) if customer else None,
        first_bot_reply_at=first_bot_reply_at,
        last_bot_reply_at=last_bot_reply_at,
        bot_first_response_s=_seconds(started_at, first_bot_reply_at),
        handoff_count=handoff_count,
        handed_off_at=handed_off_at,
        handoff_reason=handoff_reason,
        queue_wait_s=queue_wait_s,
        human_first_response_s=human_first_response_s,
        resolved_at=resolved_at,
        resolved_by=resolved_by,
        resolution_s=resolution_s,
        confirmed=confirmed,
        reopened=reopened,
        rating=latest.score if latest is not None else None,
        rated_at=_utc(latest.created_at) if latest is not None else None,
        cost_usd=ledger.cost_usd,
        model_calls=ledger.calls,
    )


# -- the refresh: sources in, rows upserted ---------------------------------------------------------------

Progress = Callable[[int, int], None]  # (conversations done, of how many)
COST_SCALE = Decimal("1e-10")  # the scale of the cost columns


def _event_of(row: ArchivedMessage) -> Event:
    return Event(
        seq=row.seq, id=row.event_id, type=row.type, role=row.role, text=row.text,
        created_at=_utc(row.created_at).isoformat(), client_id=row.client_id, reply_id=row.reply_id,
        author=json.loads(row.author) if row.author else None, extra=json.loads(row.extra or "{}"),
    )  # fmt: skip


def _upsert(dialect: str) -> Any:
    """The upsert of fact rows, executed with a list of rows (one statement, compiled once and cached)."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(FACTS)
    written = [*FACT_FIELDS, "updated_at"]
    written.remove("conversation_id")
    return insert.on_conflict_do_update(
        index_elements=["conversation_id"], set_={c: insert.excluded[c] for c in written}
    )


@dataclass(slots=True)
class _Sources:
    """What SQL holds for one batch of conversations."""

    archived: dict[str, list[Event]]
    previous: dict[str, ConversationFact]
    handoffs: dict[str, list[HandoffRecord]]
    ratings: dict[str, list[Rating]]
    ledger: dict[str, LedgerSummary]
    filed: dict[str, datetime]


class FactRefresher:
    """Recomputes ``conversation_fact`` rows. The store, session factory and Redis client are passed in.

    Sources: a conversation's events and triage verdicts from the Redis store; once Redis has forgotten it
    (archived and expired), its events from ``conversation_event``. Triage verdicts live in Redis only: for
    a conversation read from the archive, the intent and a ``solved`` confirmation are carried over from
    its row as last written (the archive job refreshes every conversation just before archiving it, so
    that row holds its final state). Ratings, handoff records, ledger rows and a ticket's filing time come
    from SQL.
    """

    def __init__(
        self,
        store: ConversationStore,
        sessions: async_sessionmaker[AsyncSession],
        redis: RedisClient,
        *,
        batch: int = BATCH,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._redis = redis
        self._batch = max(1, batch)

    async def refresh(self, conversation_ids: Iterable[str], progress: Progress | None = None) -> int:
        """Recompute the rows of ``conversation_ids`` in batches (one transaction each); returns how many
        rows were written (a conversation with no customer message, or unknown, gets none). Progress goes
        to ``progress`` after each batch, else to the log when there is more than one batch."""
        ids = list(dict.fromkeys(conversation_ids))
        written = 0
        for start in range(0, len(ids), self._batch):
            chunk = ids[start : start + self._batch]
            written += await self._refresh_batch(chunk)
            if progress is not None:
                progress(start + len(chunk), len(ids))
            elif len(ids) > self._batch:
                log.info("report facts: %d of %d conversations refreshed", start + len(chunk), len(ids))
        return written

    async def _refresh_batch(self, ids: list[str]) -> int:
        live = await self._store.logs(ids)
        async with self._sessions() as session:
            sources = await self._read_sql(session, ids, [cid for cid in ids if cid not in live])
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for cid in ids:
            if cid in live:
                events, triages = live[cid]
            elif cid in sources.archived:
                events = sources.archived[cid]
                triages = _carried_triage(events, sources.previous.get(cid))
            else:
                continue
            fact = compute_fact(
                cid, events, triages, sources.handoffs.get(cid, []), sources.ratings.get(cid, []),
                sources.ledger.get(cid, LedgerSummary()), ticket_filed_at=sources.filed.get(cid),
            )  # fmt: skip
            if fact is not None:
                rows.append({**fact.row(), "updated_at": now})
        if rows:
            async with self._sessions() as session, session.begin():
                await session.execute(_upsert(session.get_bind().dialect.name), rows)
            # Erased while we read it (erasure deletes its facts): do not leave a row behind.
            erased = await self._store.erased_among([r["conversation_id"] for r in rows])
            if erased:
                async with self._sessions() as session, session.begin():
                    await delete_facts(session, erased)
        return len(rows)

    async def _read_sql(self, session: AsyncSession, ids: list[str], missing: list[str]) -> _Sources:
        sources = _Sources(archived={}, previous={}, handoffs={}, ratings={}, ledger={}, filed={})
        if missing:
            archived = await session.execute(
                select(ArchivedMessage)
                .where(col(ArchivedMessage.conversation_id).in_(missing))
                .order_by(col(ArchivedMessage.conversation_id), col(ArchivedMessage.seq))
            )
            for row in archived.scalars():
                sources.archived.setdefault(row.conversation_id, []).append(_event_of(row))
            previous = await session.execute(
                select(ConversationFact).where(col(ConversationFact.conversation_id).in_(missing))
            )
            sources.previous = {row.conversation_id: row for row in previous.scalars()}
        handoffs = await session.execute(
            select(HandoffRecord).where(col(HandoffRecord.conversation_id).in_(ids))
        )
        for handoff in handoffs.scalars():
            sources.handoffs.setdefault(handoff.conversation_id, []).append(handoff)
        ratings = await session.execute(select(Rating).where(col(Rating.conversation_id).in_(ids)))
        for rating in ratings.scalars():
            sources.ratings.setdefault(rating.conversation_id, []).append(rating)
        usage = col(ModelUsage.conversation_id)
        totals = await session.execute(
            select(usage, func.sum(col(ModelUsage.cost_usd)), func.count())
            .where(usage.in_(ids))
            .group_by(usage)
        )
        first_answer = (
            select(func.min(col(ModelUsage.id)))
            .where(usage.in_(ids), col(ModelUsage.purpose) == "answer")
            .group_by(usage)
        )
        policies = await session.execute(
            select(usage, col(ModelUsage.policy_version)).where(col(ModelUsage.id).in_(first_answer))
        )
        policy_of: dict[str, str | None] = dict(policies.all())  # type: ignore[arg-type]
        for cid, cost, calls in totals.all():
            if cid is None:
                continue
            sources.ledger[cid] = LedgerSummary(
                cost_usd=Decimal(str(cost or 0)).quantize(COST_SCALE), calls=int(calls),
                policy_version=policy_of.get(cid),
            )  # fmt: skip
        tickets = {cid[len(TICKET_PREFIX) :]: cid for cid in ids if cid.startswith(TICKET_PREFIX)}
        if tickets:
            filed = await session.execute(
                select(col(Ticket.id), col(Ticket.created_at)).where(col(Ticket.id).in_(list(tickets)))
            )
            sources.filed = {tickets[tid]: _utc(at) for tid, at in filed.all()}
        return sources

    # -- what changed since the last pass ----------------------------------------------------------------

    async def refresh_changed(self, now: datetime | None = None, progress: Progress | None = None) -> int:
        """Refresh every conversation changed since the watermark, then move the watermark to the time
        this pass began; returns the rows written.

        Changed: an event (the store's active set scores a conversation by its last event's time), a
        rating given (or changed: its time moves), a handoff record queued, claimed, answered or ended,
        or a ledger row with an id above the last one seen (or written since: a transaction may commit a
        lower id after a higher one). Each pass looks :data:`OVERLAP_S` further back than the watermark
        (see there), so a conversation may be refreshed twice; refreshing is idempotent. With no watermark
        yet (the first pass after an upgrade) it looks back :data:`FIRST_PASS_LOOKBACK`: a bounded pass;
        ``switchboard refresh-report-facts --all`` backfills the rest.
        """
        began = now or utcnow()
        key = keys.report_facts_watermark()
        raw = await self._redis.hgetall(key)
        mark = {_text(k): _text(v) for k, v in raw.items()}
        if "active" in mark:
            since = datetime.fromtimestamp(float(mark["active"]) - OVERLAP_S, UTC)
        else:
            since = began - FIRST_PASS_LOOKBACK
            log.info("report facts: first pass, looking back to %s", since.isoformat())
        last_ledger_id = int(mark.get("ledger_id", "0"))
        changed: dict[str, None] = {}
        active = await self._redis.zrangebyscore(keys.active_conversations(), since.timestamp(), "+inf")
        changed.update((_text(member), None) for member in active)
        async with self._sessions() as session:
            ratings = await session.execute(
                select(col(Rating.conversation_id)).where(col(Rating.created_at) >= since).distinct()
            )
            changed.update((cid, None) for cid in ratings.scalars())
            handoffs = await session.execute(
                select(col(HandoffRecord.conversation_id))
                .where(
                    or_(
                        col(HandoffRecord.queued_at) >= since, col(HandoffRecord.claimed_at) >= since,
                        col(HandoffRecord.first_response_at) >= since, col(HandoffRecord.ended_at) >= since,
                    )
                )
                .distinct()
            )  # fmt: skip
            changed.update((cid, None) for cid in handoffs.scalars())
            top = (await session.execute(select(func.max(col(ModelUsage.id))))).scalar()
            top_id = int(top or 0)
            newer = col(ModelUsage.created_at) >= since
            if "active" in mark and top_id > last_ledger_id:
                newer = or_(newer, col(ModelUsage.id) > last_ledger_id)
            ledger = await session.execute(
                select(col(ModelUsage.conversation_id))
                .where(newer, col(ModelUsage.conversation_id).is_not(None))
                .distinct()
            )
            changed.update((cid, None) for cid in ledger.scalars() if cid)
        if changed:
            log.info("report facts: refreshing %d changed conversations", len(changed))
        written = await self.refresh(list(changed), progress)
        await self._redis.hset(
            key, mapping={"active": repr(began.timestamp()), "ledger_id": str(max(top_id, last_ledger_id))}
        )
        return written

    async def refresh_all(self, progress: Progress | None = None) -> int:
        """Backfill: every archived conversation, every ticket and every conversation live in Redis."""
        ids: dict[str, None] = {}
        async with self._sessions() as session:
            archived = await session.execute(select(col(ArchivedConversation.id)))
            ids.update((cid, None) for cid in archived.scalars())
            tickets = await session.execute(select(col(Ticket.conversation_id)))
            ids.update((cid, None) for cid in tickets.scalars() if cid)
        active = await self._redis.zrange(keys.active_conversations(), 0, -1)
        ids.update((_text(member), None) for member in active)
        return await self.refresh(list(ids), progress)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _carried_triage(events: Sequence[Event], previous: ConversationFact | None) -> dict[int, dict[str, Any]]:
    """Stand-in triage for a conversation Redis has forgotten: its row's intent, and ``solved`` when the
    row was confirmed though not by a rating of 4-5, on its first customer message."""
    first = next((e.seq for e in events if e.type == "message" and e.role == "customer"), None)
    if previous is None or first is None:
        return {}
    solved = previous.confirmed and not (previous.rating is not None and previous.rating >= 4)
    return {first: {"intent": previous.intent, "solved": solved}}


async def delete_facts(session: AsyncSession, conversation_ids: Sequence[str]) -> int:
    """Delete the fact rows of ``conversation_ids`` in the caller's transaction; returns how many went."""
    if not conversation_ids:
        return 0
    result = await session.execute(delete(FACTS).where(FACTS.c.conversation_id.in_(list(conversation_ids))))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
