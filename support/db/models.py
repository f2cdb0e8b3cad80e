"""SQL tables. ``XBase`` holds shared fields, ``X(table=True)`` the table, ``XPublic`` what leaves the API."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

from sqlalchemy import JSON, Column, Numeric, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timezone-aware now (stored as UTC)."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime from a stored one (SQLite gives naive UTC back) or an aware one."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso_z(moment: datetime) -> str:
    """ISO 8601 in UTC with ``Z``, from a stored (naive UTC) or an aware datetime."""
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    """Random identifier for rows that clients may see."""
    return uuid4().hex


class ModelUsageBase(SQLModel):
    """One call to the model API, as the ledger records it."""

    purpose: str = Field(
        index=True, max_length=32, description="triage | answer | summary | batch | predict_csat | other"
    )
    model: str = Field(index=True, max_length=64)
    conversation_id: str | None = Field(default=None, index=True, max_length=64)
    ticket_id: str | None = Field(default=None, index=True, max_length=64)
    policy_version: str | None = Field(default=None, max_length=64)
    input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Field(default=Decimal(0), sa_column=Column(Numeric(18, 10), nullable=False))
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    request_id: str | None = Field(default=None, max_length=128)
    outcome: str = Field(
        max_length=32, description="ok | error:<kind> | timeout | circuit_open | over_budget"
    )
    attempts: int = 1
    batch: bool = False
    redactions: dict[str, int] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="Per kind (email, phone, card, cvv, iban, ...), how many values were redacted out of "
        "the prompt; null for calls that carry no customer text.",
    )


class ModelUsage(ModelUsageBase, table=True):
    """Ledger row."""

    __tablename__ = "model_usage"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class ModelUsagePublic(ModelUsageBase):
    """Ledger row as the reports API returns it."""

    id: int
    created_at: datetime


class ArchivedConversation(SQLModel, table=True):
    """A conversation as archived from Redis (upserted on every sweep that finds it idle)."""

    __tablename__ = "conversation"

    id: str = Field(primary_key=True, max_length=64)
    widget_key: str = Field(max_length=128)
    visitor: str = Field(default="{}", description="JSON")
    # The visitor's id and e-mail (lower-case) out of ``visitor``: how export and erasure find a customer.
    visitor_id: str | None = Field(default=None, index=True, max_length=256)
    visitor_email: str | None = Field(default=None, index=True, max_length=320)
    state: str = Field(max_length=16, index=True)
    summary: str = ""
    created_at: datetime
    last_activity: datetime = Field(index=True)
    archived_at: datetime = Field(default_factory=utcnow)


class ArchivedMessage(SQLModel, table=True):
    """One persisted event (message or status) of an archived conversation; unique by (conversation, seq)."""

    __tablename__ = "conversation_event"

    conversation_id: str = Field(primary_key=True, max_length=64, foreign_key="conversation.id")
    seq: int = Field(primary_key=True)
    event_id: str = Field(max_length=64)
    type: str = Field(max_length=16)
    role: str = Field(max_length=16)
    text: str
    created_at: datetime
    client_id: str | None = Field(default=None, max_length=128)
    reply_id: str | None = Field(default=None, max_length=64)
    author: str | None = Field(default=None, description="JSON")
    extra: str = Field(default="{}", description="JSON")


class Agent(SQLModel, table=True):
    """A person who works the queue (``agent``) or also manages examples, keys and reports (``admin``)."""

    __tablename__ = "agent"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    email: str = Field(max_length=254, unique=True, index=True, description="stored lower-case")
    name: str = Field(max_length=120)
    role: str = Field(default="agent", max_length=16, description="agent | admin")
    password_hash: str = Field(max_length=255, description="argon2id, never returned by any API")
    capacity: int = Field(default=3, description="conversations this agent may hold at once")
    active: bool = True
    token_generation: int = Field(
        default=0, description="in every token issued; bumped to revoke them all (deactivation, role change)"
    )
    created_at: datetime = Field(default_factory=utcnow)


class Example(SQLModel, table=True):
    """What an agent sent in reply to a customer message, with the bot's draft: a few-shot example.

    ``status``: ``pending`` (waiting for an admin), ``approved`` (retrievable), ``retired`` (never used).
    ``curated`` examples are promoted into the cached block of every answer prompt. The texts are stored
    scrubbed (``handoff.scrub``): placeholders instead of the customer's PII, names and reference numbers.
    """

    __tablename__ = "example"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    conversation_id: str | None = Field(default=None, index=True, max_length=64)
    seq: int | None = Field(default=None, description="seq of the agent's message in the conversation")
    customer_message: str
    context: str = Field(default="", description="the running summary / recent turns the agent saw")
    bot_draft: str | None = None
    agent_text: str
    edit_distance: int | None = Field(default=None, description="characters changed from the draft")
    edit_ratio: float | None = Field(default=None, description="edit distance / longer length, 0..1")
    intent: str | None = Field(default=None, index=True, max_length=64)
    agent_id: str | None = Field(default=None, index=True, max_length=32)
    policy_version: str | None = Field(default=None, max_length=64)
    status: str = Field(default="approved", index=True, max_length=16)
    curated: bool = Field(default=False, index=True)
    review_flags: str = Field(
        default="", max_length=200, description="comma-separated reasons it was not auto-approved"
    )
    redaction_version: int = Field(
        default=0, description="scrubbing rules it was stored under (0: stored raw, before redaction)"
    )
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class Rating(SQLModel, table=True):
    """A customer's satisfaction rating (CSAT, 1-5) of one resolved conversation."""

    __tablename__ = "rating"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    conversation_id: str = Field(index=True, max_length=64)
    resolved_seq: int = Field(default=0, description="seq of the status event that resolved it")
    score: int = Field(ge=1, le=5)
    comment: str | None = None
    resolution: str = Field(default="bot", max_length=16, description="bot | agent: who resolved it")
    intent: str | None = Field(default=None, index=True, max_length=64)
    agent_id: str | None = Field(default=None, index=True, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class HandoffRecord(SQLModel, table=True):
    """One stay of a conversation with humans, from the handoff to its end: what operations reports read
    (handoff rate and reasons, time to claim, time to first agent reply, outcomes)."""

    __tablename__ = "handoff_record"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    conversation_id: str = Field(index=True, max_length=64)
    reason: str = Field(index=True, max_length=32)
    priority: str = Field(max_length=16)
    intent: str | None = Field(default=None, max_length=64)
    queued_at: datetime = Field(default_factory=utcnow, index=True)
    claimed_at: datetime | None = None
    agent_id: str | None = Field(default=None, index=True, max_length=32)
    first_response_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str | None = Field(
        default=None, max_length=32, description="resolved | returned_to_bot | closed_by_customer"
    )
    # The team whose queue it went to and its SLA targets when it was handed off (issue 21: assignment).
    team_id: str | None = Field(default=None, index=True, max_length=32)
    sla_first_reply_s: int | None = None
    sla_resolution_s: int | None = None


# -- tickets, integration keys, batches and webhooks (issue: REST ticket intake) ---------------------------


class IntegrationKey(SQLModel, table=True):
    """A key that another system (a form, an e-mail bridge) uses to file tickets. Only its hash is stored:
    the key itself is shown once, when it is created."""

    __tablename__ = "integration_key"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=120)
    prefix: str = Field(max_length=16, description="the key's first characters, to tell keys apart in lists")
    key_hash: str = Field(max_length=128, unique=True, index=True, description="SHA-256 hex of the key")
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_by: str | None = Field(default=None, max_length=32, description="agent id, or null (CLI)")
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = Field(default=None, index=True)


class Ticket(SQLModel, table=True):
    """A support request filed over REST. Its messages live in a conversation of its own (``ticket:`` id
    prefix), so the agents' queue, console, drafts and examples work on tickets as on chats."""

    __tablename__ = "ticket"
    __table_args__ = (
        UniqueConstraint("integration_key_id", "idempotency_key", name="uq_ticket_idempotency"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    conversation_id: str = Field(unique=True, index=True, max_length=64)
    integration_key_id: str | None = Field(default=None, index=True, max_length=32)
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str | None = Field(default=None, max_length=64, description="SHA-256 of the request body")
    subject: str = Field(max_length=300)
    body: str
    customer_email: str = Field(index=True, max_length=320, description="stored lower-case")
    customer_name: str | None = Field(default=None, max_length=200)
    channel: str = Field(default="api", max_length=16, description="email | form | api")
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))
    status: str = Field(
        default="received", index=True, max_length=16, description="received|triaged|answered|queued|resolved"
    )
    urgent: bool = Field(default=False, index=True)
    triage: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    route: str | None = Field(default=None, max_length=16, description="realtime | batch: how it was drafted")
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    answered_at: datetime | None = None
    resolved_at: datetime | None = None
    settled_at: datetime | None = Field(
        default=None, index=True, description="when the conversation, queue and webhooks caught up with it"
    )


class TicketReply(SQLModel, table=True):
    """One reply sent on a ticket, by the bot (a confident draft) or by an agent."""

    __tablename__ = "ticket_reply"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    ticket_id: str = Field(index=True, max_length=32, foreign_key="ticket.id")
    author: str = Field(max_length=16, description="bot | agent")
    agent_id: str | None = Field(default=None, max_length=32)
    source: str = Field(max_length=16, description="realtime | batch | agent")
    text: str
    created_at: datetime = Field(default_factory=utcnow, index=True)


class TicketBatch(SQLModel, table=True):
    """One Message Batch of ticket drafts, from collection to its results applied."""

    __tablename__ = "ticket_batch"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    anthropic_batch_id: str | None = Field(default=None, unique=True, index=True, max_length=128)
    status: str = Field(
        default="submitting", index=True, max_length=16,
        description="submitting | in_progress | ended | applied | failed",
    )  # fmt: skip
    request_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, index=True)
    submitted_at: datetime | None = None
    ended_at: datetime | None = None
    applied_at: datetime | None = None


class TicketBatchItem(SQLModel, table=True):
    """One ticket's request in a batch; ``applied_at`` set in the same transaction as its result's effects,
    so a result is applied exactly once however often the worker dies and retries."""

    __tablename__ = "ticket_batch_item"

    custom_id: str = Field(primary_key=True, max_length=64)
    batch_id: str = Field(index=True, max_length=32, foreign_key="ticket_batch.id")
    ticket_id: str = Field(index=True, max_length=32)
    outcome: str | None = Field(default=None, max_length=16, description="succeeded|errored|expired|canceled")
    applied_at: datetime | None = None


class WebhookEndpoint(SQLModel, table=True):
    """Where events are delivered. The secret signs deliveries; the API shows it once, at creation."""

    __tablename__ = "webhook_endpoint"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    url: str = Field(max_length=2048)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    secret: str = Field(max_length=200, description="whsec_… (base64 key); never returned after creation")
    active: bool = True
    created_by: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """One event sent to one endpoint: its body, signed afresh on every attempt, and where it stands."""

    __tablename__ = "webhook_delivery"
    # One delivery of one event per endpoint, however often (and however concurrently) it is reported.
    __table_args__ = (UniqueConstraint("endpoint_id", "message_id", name="uq_webhook_delivery_message"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    endpoint_id: str = Field(index=True, max_length=32, foreign_key="webhook_endpoint.id")
    message_id: str = Field(index=True, max_length=64, description="the webhook-id header (msg_…)")
    event_type: str = Field(index=True, max_length=64)
    payload: str = Field(description="the JSON body, byte for byte as signed")
    status: str = Field(
        default="pending", index=True, max_length=16, description="pending | delivered | failed"
    )
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    next_attempt_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
    delivered_at: datetime | None = None


class WebhookAttempt(SQLModel, table=True):
    """One HTTP attempt of a delivery: the delivery log."""

    __tablename__ = "webhook_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(index=True, max_length=32, foreign_key="webhook_delivery.id")
    at: datetime = Field(default_factory=utcnow)
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    duration_ms: float = 0.0


# -- reports (issue: numbers a support lead can trust) -----------------------------------------------------


class ConversationFact(SQLModel, table=True):
    """One row per conversation: what reports aggregate (docs/metrics.md defines every column).

    Derived, never authoritative: a refresh job recomputes a row from the conversation's events, triages,
    handoff trail, ratings and ledger rows whenever any of them changed, so the row can always be rebuilt.
    Durations are stored in seconds, so reports aggregate one table with no joins. ``predicted_*`` columns
    are written by the predicted-satisfaction job only; a refresh leaves them alone.
    """

    __tablename__ = "conversation_fact"

    conversation_id: str = Field(primary_key=True, max_length=64)
    channel: str = Field(default="chat", index=True, max_length=16, description="chat | ticket")
    started_at: datetime = Field(index=True, description="the first customer message (a ticket: filed)")
    intent: str | None = Field(default=None, index=True, max_length=64, description="first triaged intent")
    policy_version: str | None = Field(
        default=None, index=True, max_length=64, description="knowledge version of the first answer call"
    )
    agent_id: str | None = Field(default=None, index=True, max_length=32, description="last person to reply")
    resolution_type: str = Field(
        default="bot", index=True, max_length=16, description="bot | handed_off | unanswered | human"
    )
    customer_messages: int = 0
    bot_messages: int = 0
    agent_messages: int = 0
    last_customer_at: datetime | None = None
    first_bot_reply_at: datetime | None = None
    last_bot_reply_at: datetime | None = None
    bot_first_response_s: float | None = Field(default=None, description="first customer msg -> bot reply")
    handoff_count: int = 0
    handed_off_at: datetime | None = None
    handoff_reason: str | None = Field(default=None, index=True, max_length=32, description="first handoff")
    queue_wait_s: float | None = Field(default=None, description="first handoff -> first claim")
    human_first_response_s: float | None = Field(default=None, description="first handoff -> person's reply")
    resolved_at: datetime | None = Field(default=None, description="the latest resolved status")
    resolved_by: str | None = Field(default=None, max_length=16, description="agent | customer")
    resolution_s: float | None = Field(
        default=None, description="first customer message -> resolved status (bot: its last reply)"
    )
    confirmed: bool = Field(default=False, description="the customer said it was solved, or rated it 4-5")
    reopened: bool = Field(default=False, description="a customer message within 7 days of a resolution")
    rating: int | None = Field(default=None, description="the latest rating, 1-5")
    rated_at: datetime | None = None
    predicted_score: int | None = Field(default=None, description="predicted CSAT 1-5 (never mixed in)")
    predicted_reason: str | None = Field(default=None, max_length=300)
    predicted_at: datetime | None = None
    cost_usd: Decimal = Field(default=Decimal(0), sa_column=Column(Numeric(18, 10), nullable=False))
    model_calls: int = 0
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class PredictionBatch(SQLModel, table=True):
    """One Message Batch of satisfaction predictions, from collection to its results applied."""

    __tablename__ = "prediction_batch"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    anthropic_batch_id: str | None = Field(default=None, unique=True, index=True, max_length=128)
    status: str = Field(
        default="submitting", index=True, max_length=16,
        description="submitting | in_progress | ended | applied | failed",
    )  # fmt: skip
    request_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, index=True)
    submitted_at: datetime | None = None
    ended_at: datetime | None = None
    applied_at: datetime | None = None


class PredictionBatchItem(SQLModel, table=True):
    """One conversation's prediction request in a batch (its ``attempt``-th); ``applied_at`` is set in the
    same transaction as the result's effects (ledger row, predicted score), so a result is applied exactly
    once. ``(conversation_id, attempt)`` is unique: two runs racing cannot both put a conversation in a
    batch."""

    __tablename__ = "prediction_batch_item"
    __table_args__ = (UniqueConstraint("conversation_id", "attempt", name="uq_prediction_item_attempt"),)

    custom_id: str = Field(primary_key=True, max_length=64)
    batch_id: str = Field(index=True, max_length=32, foreign_key="prediction_batch.id")
    conversation_id: str = Field(index=True, max_length=64)
    attempt: int = Field(default=1, description="1 for the first request of the conversation, then 2, 3")
    outcome: str | None = Field(
        default=None, max_length=16,
        description="succeeded | invalid | errored | expired | canceled | no_transcript",
    )  # fmt: skip
    redactions: dict[str, int] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True),
        description="per kind, values redacted out of the request (for its ledger row)",
    )  # fmt: skip
    applied_at: datetime | None = None


# -- knowledge (issue 20: knowledge as versions) -------------------------------------------------------------


class KnowledgeText(SQLModel, table=True):
    """One document text, stored once however many versions hold it (keyed by its sha256)."""

    __tablename__ = "knowledge_text"

    sha256: str = Field(primary_key=True, max_length=64)
    text: str
    created_at: datetime = Field(default_factory=utcnow)


class KnowledgeVersion(SQLModel, table=True):
    """An immutable snapshot of the whole knowledge: the policy and every article (docs/knowledge.md).

    ``id`` is a hash of the rendered knowledge text, the very text the answer prompt carries: one id names
    one prompt prefix. ``activated_at`` is set each time the version is made the active one; the active
    version is the one activated last (Redis holds it for every process, SQL keeps it through a flush).
    """

    __tablename__ = "knowledge_version"

    id: str = Field(primary_key=True, max_length=64)
    parent_id: str | None = Field(default=None, max_length=64, description="the version it was edited from")
    change: str = Field(default="", max_length=300, description="what made it: a save, an import, the seed")
    created_by: str | None = Field(default=None, max_length=64)
    documents: int = 0
    chars: int = Field(default=0, description="length of the rendered knowledge text")
    created_at: datetime = Field(default_factory=utcnow, index=True)
    saved_at: datetime = Field(
        default_factory=utcnow, index=True, description="the last save that produced it (newest: the head)"
    )
    activated_at: datetime | None = Field(default=None, index=True)


class KnowledgeDocument(SQLModel, table=True):
    """One document of one version: its name, kind and text, at its place in the rendered knowledge."""

    __tablename__ = "knowledge_document"

    version_id: str = Field(primary_key=True, max_length=64, foreign_key="knowledge_version.id")
    position: int = Field(primary_key=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=16, description="policy | article")
    text_sha256: str = Field(max_length=64, foreign_key="knowledge_text.sha256")


class Team(SQLModel, table=True):
    """A team of agents. For now there is one, ``default``; its business hours decide, with the agents'
    presence, whether customers are told someone can answer. ``business_hours`` null: the
    ``SWITCHBOARD_BUSINESS_HOURS`` setting applies."""

    __tablename__ = "team"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=120)
    business_hours: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str | None = Field(default=None, max_length=32, description="the admin who set the hours")


# -- saved replies and the audit log (issue 21: the support team's workspace) ------------------------------


class SavedReply(SQLModel, table=True):
    """A reply an agent inserts into the composer by its shortcut (docs/console.md, "Saved replies").

    ``scope`` ``team``: every agent sees it, admins manage it (``owner_id`` null); ``personal``: only its
    owner sees or changes it. ``owner_key`` is ``team`` or the owner's id, so a shortcut is unique within
    the team library and within each agent's own.
    """

    __tablename__ = "saved_reply"
    __table_args__ = (UniqueConstraint("owner_key", "shortcut", name="uq_saved_reply_owner_shortcut"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    scope: str = Field(max_length=16, description="team | personal")
    owner_id: str | None = Field(default=None, index=True, max_length=32)
    owner_key: str = Field(index=True, max_length=32, description="team | the owner's agent id")
    title: str = Field(max_length=120)
    shortcut: str = Field(max_length=33, description="`/` and a lower-case word, e.g. /refund")
    text: str
    example_id: str | None = Field(default=None, max_length=32, description="the example it was made from")
    created_by: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AuditEntry(SQLModel, table=True):
    """One admin or agent action, appended and never changed (triggers refuse UPDATE and DELETE).

    It names people and things by id only: no customer text, no e-mail address (an erased customer
    leaves nothing here that identifies them). ``details`` holds ids, counts and the names of changed
    fields, never free text a customer wrote.
    """

    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor_id: str | None = Field(default=None, index=True, max_length=32, description="null: the system")
    action: str = Field(index=True, max_length=48, description="e.g. conversation.claimed")
    target_type: str = Field(max_length=32)
    target_id: str | None = Field(default=None, max_length=128)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# --- attachments (support/attachments) ------------------------------------------------------------------


class Attachment(SQLModel, table=True):
    """A file attached to a conversation (a ticket's is its own conversation). The bytes are in the
    attachment store (disk or S3) under ``storage_key``, which the server generates: never a file name."""

    __tablename__ = "attachment"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    conversation_id: str = Field(index=True, max_length=64)
    uploader: str = Field(max_length=16, description="customer | agent | ticket")
    agent_id: str | None = Field(default=None, max_length=32, description="the agent who uploaded it")
    filename: str = Field(max_length=200, description="sanitised; shown, never used as a path")
    content_type: str = Field(max_length=64, description="detected from the content")
    size: int
    sha256: str = Field(max_length=64)
    width: int | None = None
    height: int | None = None
    storage_key: str = Field(max_length=200)
    message_id: str | None = Field(default=None, max_length=64, description="the message that carries it")
    created_at: datetime = Field(default_factory=utcnow, index=True)


# -- finding things: search index, labels, durable internal notes (issue 21) -------------------------------


class SearchEntry(SQLModel, table=True):
    """One searchable text: a message, an internal note, a ticket's subject and body, or a customer's name
    and e-mail. Derived from the conversations, notes and tickets (support/search.py fills it), deleted with
    them on erasure. PostgreSQL searches it through a GIN index on its tsvector, SQLite through an FTS5
    table kept in step by triggers (migration 0017)."""

    __tablename__ = "search_entry"

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(max_length=200, unique=True, description="what it indexes: m:<conv>:<seq>, n:<id> ...")
    kind: str = Field(max_length=16, index=True, description="message | note | ticket | customer")
    conversation_id: str = Field(index=True, max_length=64)
    seq: int | None = Field(default=None, description="a message's seq in its conversation")
    ticket_id: str | None = Field(default=None, max_length=32)
    visitor_id: str | None = Field(default=None, index=True, max_length=256)
    role: str | None = Field(default=None, max_length=16, description="customer | assistant | agent")
    text: str
    at: datetime = Field(index=True)


class ConversationLabel(SQLModel, table=True):
    """A label an agent put on a conversation (``billing``, ``vip``): filters search and lists."""

    __tablename__ = "conversation_label"

    conversation_id: str = Field(primary_key=True, max_length=64)
    label: str = Field(primary_key=True, max_length=32, index=True)
    created_by: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)


class ConversationNote(SQLModel, table=True):
    """An internal note agents wrote on a conversation: never sent to the customer, kept in SQL from the
    moment it is written (so it outlives the conversation's Redis keys), erased with the customer."""

    __tablename__ = "conversation_note"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    conversation_id: str = Field(index=True, max_length=64)
    author_id: str | None = Field(default=None, max_length=32)
    author_name: str = Field(default="", max_length=120)
    text: str
    created_at: datetime = Field(default_factory=utcnow, index=True)


# -- teams, automatic assignment and SLA (issue 21: assignment) --------------------------------------------


class TeamMember(SQLModel, table=True):
    """An agent in a team's queue. An active agent with no membership at all counts as a member of the
    ``default`` team (accounts created before teams, or never placed in one)."""

    __tablename__ = "team_member"

    team_id: str = Field(primary_key=True, max_length=32, foreign_key="team.id")
    agent_id: str = Field(primary_key=True, max_length=32, foreign_key="agent.id")


class TeamRouting(SQLModel, table=True):
    """A team's assignment policy and SLA targets as an admin set them; a null field: the setting's."""

    __tablename__ = "team_routing"

    team_id: str = Field(primary_key=True, max_length=32, foreign_key="team.id")
    assignment: str | None = Field(default=None, max_length=16, description="capacity|round_robin|...")
    sla_first_reply_s: int | None = None
    sla_resolution_s: int | None = None


class AgentSkills(SQLModel, table=True):
    """What an agent can take: languages (BCP-47 primary subtags) and triage intents. An empty list: any."""

    __tablename__ = "agent_skills"

    agent_id: str = Field(primary_key=True, max_length=32, foreign_key="agent.id")
    languages: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    intents: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
