"""SQL tables. ``XBase`` holds shared fields, ``X(table=True)`` the table, ``XPublic`` what leaves the API."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

from sqlalchemy import JSON, Column, Numeric
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timezone-aware now (stored as UTC)."""
    return datetime.now(UTC)


def new_id() -> str:
    """Random identifier for rows that clients may see."""
    return uuid4().hex


class ModelUsageBase(SQLModel):
    """One call to the model API, as the ledger records it."""

    purpose: str = Field(index=True, max_length=32, description="triage | answer | summary | batch | other")
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
