"""Settings, one object per concern, read from the environment once at start-up.

Every field is documented here and in docs/configuration.md. Public variable names (PROTOCOL.md) are
kept exactly: ``SWITCHBOARD_REDIS_URL``, ``SWITCHBOARD_DATABASE_URL``, ``SWITCHBOARD_POLICY_PATH``,
``SWITCHBOARD_DATA_DIR``, ``SWITCHBOARD_WIDGET_KEYS``, ``SWITCHBOARD_TRIAGE_MODEL``,
``SWITCHBOARD_ANSWER_MODEL``, ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from limits import parse_many
from pydantic import AliasChoices, BaseModel, Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from support.errors import ConfigurationError, ValidationFailed
from support.hours import parse_hours

# RFC 7518 3.2: an HS256 key must be at least as long as the hash output (32 bytes).
MIN_SECRET_KEY_CHARS = 32
MIN_IDENTITY_SECRET_CHARS = 16  # shorter secrets could be brute-forced from one visitor's id and hash
DEFAULT_POLICY_PATH = Path(__file__).parent / "policy" / "sample_policy.md"
# The environment names PROTOCOL.md makes public (kept exactly; docs and tests check them).
PUBLIC_ENV_NAMES = (
    "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "SWITCHBOARD_REDIS_URL", "SWITCHBOARD_DATABASE_URL",
    "SWITCHBOARD_POLICY_PATH", "SWITCHBOARD_DATA_DIR", "SWITCHBOARD_WIDGET_KEYS",
    "SWITCHBOARD_TRIAGE_MODEL", "SWITCHBOARD_ANSWER_MODEL",
)  # fmt: skip
# The sample policy's topics; a company with other topics sets SWITCHBOARD_LLM_INTENTS.
DEFAULT_INTENTS = (
    "orders", "shipping", "returns_refunds", "exchanges", "warranty_repairs", "rentals", "membership",
    "account_privacy", "payments_billing", "product_question", "complaint", "other",
)  # fmt: skip


class AppSettings(BaseSettings):
    """Process-wide settings."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="`production` refuses a signing key shorter than 32 characters."
    )
    data_dir: Path = Field(
        Path("./switchboard-data"),
        description="Where the embedded Redis and the SQLite database keep their files.",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Signs widget session tokens and agent tokens (32+ characters). Unset: read from "
        "`SWITCHBOARD_SECRET_KEY_FILE`, else generated once into `<data dir>/secret_key` (mode 0600) and "
        "reused; processes that share tokens must share the key.",
    )
    secret_key_file: Path | None = Field(
        None, description="A file holding the signing key (a Docker or Kubernetes secret)."
    )
    web_dir: Path | None = Field(
        None,
        description="Directory of the static front end (widget, console, reports pages, demo). "
        "Unset: the `web/` directory next to the installed `support` package, else `./web`.",
    )
    log_level: str = Field("INFO", description="Python logging level name.")
    demo: bool = Field(
        False,
        description="Set by `switchboard demo`: the model API is the built-in demo model, and the start-up "
        "message and the landing page say so (only while `ANTHROPIC_BASE_URL` is on a loopback address, "
        "where the demo model runs; otherwise they name the live model).",
    )
    drain_timeout_s: float = Field(
        10.0, description="On SIGTERM, how long in-flight turns may finish before sockets are closed."
    )
    widget_keys: dict[str, list[str]] = Field(
        default_factory=lambda: {"pk_demo": ["http://127.0.0.1:8000", "http://localhost:8000"]},
        description="JSON object: widget key -> allowed origins.",
    )
    widget_show_sources: list[str] = Field(
        default_factory=list,
        description='JSON list: widget keys whose widget shows a "Source" line under a bot answer (the '
        'knowledge section it cites, a link when the document has a public `url`); `["*"]` for every key. '
        "Agents always see an answer's sources in the console.",
    )

    def shows_sources(self, widget_key: str) -> bool:
        """Whether the widget of ``widget_key`` shows an answer's sources to the customer."""
        return "*" in self.widget_show_sources or widget_key in self.widget_show_sources

    widget_identity_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="JSON object: widget key -> identity secret (at least 16 characters). For a key listed "
        "here a session needs `visitor.id` and `visitor.identity_hash` = lowercase hex HMAC-SHA256(secret, "
        "id), computed by the company's backend; the visitor is then shown to agents as verified.",
    )

    archive_idle_s: float = Field(
        1800.0, description="A conversation idle this long is archived to SQL by the archiver."
    )
    archive_ttl_s: int = Field(
        86400, description="After archiving, its Redis keys expire after this (unless it becomes active)."
    )
    archive_interval_s: float = Field(
        60.0, description="How often each process sweeps for idle conversations."
    )

    @field_validator("widget_identity_secrets")
    @classmethod
    def _strong_identity_secrets(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        """A short secret can be guessed offline from one visitor's id and hash."""
        weak = sorted(k for k, v in value.items() if len(v.get_secret_value()) < MIN_IDENTITY_SECRET_CHARS)
        if weak:
            raise ValueError(f"identity secrets shorter than {MIN_IDENTITY_SECRET_CHARS} characters: {weak}")
        return value

    def check_production(self) -> None:
        """Refuse a short signing key given in the environment before anything starts (a key from a file
        or the data directory is checked when it is read, see ``support.signing_key``)."""
        key = self.secret_key.get_secret_value().strip() if self.secret_key is not None else ""
        if self.environment == "production" and key and len(key) < MIN_SECRET_KEY_CHARS:
            raise ConfigurationError(
                f"SWITCHBOARD_SECRET_KEY must have at least {MIN_SECRET_KEY_CHARS} characters in production"
            )


class HttpSettings(BaseSettings):
    """Limits on what one HTTP request may carry, checked before a handler sees it."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_HTTP_", extra="ignore")

    max_body_bytes: int = Field(
        1_048_576,
        gt=0,
        description="Largest request body accepted (bytes); a larger one is answered 413 `too_large` "
        "unread. The largest legitimate body (a knowledge document) is well under it.",
    )
    max_json_depth: int = Field(
        32,
        gt=0,
        description="Deepest nesting of arrays and objects a JSON body may have; deeper is answered 400 "
        "`too_deep` before it is decoded. No endpoint takes more than a few levels.",
    )


class RedisSettings(BaseSettings):
    """Redis: hot conversation state, queues, pub/sub, rate budgets."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_REDIS_", extra="ignore")

    url: str | None = Field(
        None,
        description=(
            "redis://, rediss:// or unix:// URL of one server, or redis+cluster://host:port "
            "(rediss+cluster://) of a Redis Cluster, any one node as the seed. Unset: an embedded Redis "
            "server is started under the data dir."
        ),
    )
    embedded_start_timeout_s: float = Field(10.0, description="How long to wait for the embedded server.")
    socket_timeout_s: float = Field(
        3.0,
        description="A command on the main client fails as `unavailable` after this long without an answer "
        "(a stopped or partitioned Redis); pub/sub connections have no read timeout.",
        gt=0,
    )


class DatabaseSettings(BaseSettings):
    """SQL database (SQLModel/SQLAlchemy async)."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_DATABASE_", extra="ignore")

    url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL (postgresql+asyncpg://..., sqlite+aiosqlite:///...). "
            "Unset: SQLite in the data dir."
        ),
    )
    migrate_on_start: bool = Field(True, description="Run Alembic migrations to head when the app starts.")

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        """Accept plain postgresql:// and sqlite:// URLs and pick the async driver for them."""
        if value is None:
            return None
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value.split(":///", 1)[1]
        return value


class Purpose(BaseModel):
    """Timeout for one purpose of model call."""

    timeout_s: float
    max_attempts: int


class LLMSettings(BaseSettings):
    """The model API: models, timeouts, retries, breaker, shared rate budget."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_LLM_", extra="ignore")

    api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY"),
        description="Unset: offline mode (answers from policy passages and examples only).",
    )
    base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("ANTHROPIC_BASE_URL"),
        description="Any Anthropic-compatible server (proxy, local, the test fake).",
    )
    triage_model: str = Field(
        "claude-haiku-4-5",
        validation_alias=AliasChoices("SWITCHBOARD_TRIAGE_MODEL"),
        description="Model for triage and summaries.",
    )
    answer_model: str = Field(
        "claude-sonnet-4-6",
        validation_alias=AliasChoices("SWITCHBOARD_ANSWER_MODEL"),
        description="Model that writes answers.",
    )
    # Per-purpose timeouts replace the SDK's 600 s default: a chat turn must end in seconds.
    triage_timeout_s: float = Field(8.0, description="Whole-request timeout for triage calls.")
    answer_timeout_s: float = Field(30.0, description="Whole-stream timeout for answer calls.")
    answer_idle_timeout_s: float = Field(
        10.0, description="A stream that sends nothing for this long is abandoned (stalled)."
    )
    answer_start_timeout_s: float = Field(
        15.0,
        description=(
            "How long an answer stream may take to start (its first event), all attempts together: a model "
            "API that sends headers and then nothing is retried only within it, and the turn then falls "
            "back (offline answer or a person) instead of waiting out the whole answer timeout."
        ),
    )
    summary_timeout_s: float = Field(20.0, description="Timeout for summarisation calls.")
    batch_timeout_s: float = Field(60.0, description="Timeout for Message Batches API calls.")
    connect_timeout_s: float = Field(3.0, description="TCP connect timeout for every call.")
    max_attempts: int = Field(3, description="Attempts per call (first try included) on retryable errors.")
    backoff_base_s: float = Field(0.25, description="Base of the exponential backoff (full jitter).")
    backoff_max_s: float = Field(8.0, description="Cap on one backoff sleep (and on honoured retry-after).")
    breaker_failures: int = Field(5, description="Consecutive failures that open a model's breaker.")
    breaker_cooldown_s: float = Field(30.0, description="How long an open breaker waits before a trial call.")
    requests_per_minute: int = Field(50, description="Account request limit shared by all processes.")
    input_tokens_per_minute: int = Field(
        400_000, description="Account input-token limit shared by all processes."
    )
    output_tokens_per_minute: int = Field(
        80_000, description="Account output-token limit shared by all processes."
    )
    budget_wait_s: float = Field(5.0, description="How long a caller may wait for budget before OverBudget.")
    answer_max_tokens: int = Field(800, description="Cap on answer length.")
    system_cache_ttl: Literal["5m", "1h"] = Field(
        "5m",
        description=(
            "Prompt-cache lifetime of the answer prompt's shared prefix (instructions, policy, curated "
            "examples). `1h` is written at 2x the input price instead of 1.25x but survives gaps of up "
            "to an hour between answers: cheaper when answers are more than 5 minutes apart."
        ),
    )
    intents: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INTENTS),
        description="JSON list: the intent taxonomy triage classifies into (`other` is always added).",
    )
    ungrounded_exempt_intents: list[str] = Field(
        default_factory=lambda: ["other"],
        description=(
            "JSON list: triage intents whose answers need no citation of the knowledge (greetings, thanks, "
            "small talk fall under `other` by default). An answer to any other intent that cites no "
            "policy section is handed off with reason `ungrounded` (docs/knowledge.md)."
        ),
    )
    window_tokens: int = Field(
        3000,
        description=(
            "Token budget of summary + verbatim window in answer prompts; over it, the oldest turns are "
            "folded into the running summary."
        ),
    )
    turn_deadline_s: float = Field(
        25.0,
        description="A customer turn ends (answer or handoff) within this, even if the model stalls or "
        "Redis is away for part of it; at most 30 s.",
        gt=0,
        le=30,
    )
    turn_lease_s: float = Field(
        6.0,
        description="The turn lock is a lease this long, renewed while the turn runs: a turn whose process "
        "died frees its conversation (for the next message, or for recovery) this long after its last "
        "renewal.",
        gt=0,
    )
    turn_heartbeat_s: float = Field(
        2.0, description="How often a running turn renews its lease (well under `turn_lease_s`).", gt=0
    )
    turn_recovery_interval_s: float = Field(
        2.0,
        description="How often each process looks for owed turns nobody runs (its process died, or its "
        "start was lost) and re-runs them; jittered by +/-50 % so processes do not sweep in step.",
        gt=0,
    )

    @property
    def taxonomy(self) -> tuple[str, ...]:
        """The configured intents, with the catch-all ``other`` always present."""
        intents = [i for i in dict.fromkeys(self.intents) if i]
        return (*intents, "other") if "other" not in intents else tuple(intents)

    @property
    def offline(self) -> bool:
        """No key: never call the model API."""
        return self.api_key is None or not self.api_key.get_secret_value()


class HandoffSettings(BaseSettings):
    """When turns go to humans, how the agent queue behaves, and how agent replies become examples."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_HANDOFF_", extra="ignore")

    confidence_threshold: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="Below this triage confidence the bot does not answer (intents without their own).",
    )
    intent_thresholds: dict[str, float] = Field(
        default_factory=lambda: {"payments_billing": 0.7, "account_privacy": 0.75, "complaint": 0.8},
        description="JSON object: intent -> confidence threshold, for intents where a wrong answer "
        "costs more (money, accounts, complaints).",
    )
    negative_sentiment: bool = Field(
        True, description="Hand off when the customer is negative and has already had a bot answer."
    )
    max_bot_turns: int = Field(
        8, ge=1, description="Hand off after this many bot answers in a row without resolution."
    )
    repeat_similarity: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="A customer message this similar (word overlap) to an earlier one after a bot answer "
        "means the answer did not help: hand off.",
    )
    lease_s: float = Field(
        30.0,
        gt=0,
        description="An agent's claim lapses (back to the queue) this long after its last sign "
        "of life (console connection or action).",
    )
    default_capacity: int = Field(
        3, ge=1, description="Conversations an agent may hold at once (new agents)."
    )
    token_ttl_s: int = Field(12 * 3600, ge=60, description="Lifetime of an agent login token.")
    examples_auto_approve: bool = Field(
        True,
        description="Agent replies become retrievable examples at once; false: they wait for an admin.",
    )
    examples_in_prompt: int = Field(
        3, ge=0, le=10, description="Most similar approved examples put into each answer prompt."
    )
    examples_min_score: float = Field(
        0.3, ge=0.0, le=1.0, description="Lexical match (0..1) an example needs to be put into a prompt."
    )
    examples_reference_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object: placeholder label -> regex of the company's own reference numbers "
        "(e.g. member ids), replaced by [LABEL] in stored examples after the built-in order, ticket, "
        "reference-code and long-number patterns. A group named `value` limits the replacement to it.",
    )
    examples_min_reply_chars: int = Field(
        20, ge=1, description="An agent reply shorter than this waits for review instead of auto-approval."
    )
    away_after_s: float = Field(
        60.0,
        gt=0,
        description="An online agent whose every console socket has been closed this long is set away "
        "(shared by all processes through Redis).",
    )

    @field_validator("examples_reference_patterns")
    @classmethod
    def _patterns_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for label, pattern in value.items():
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", label):
                raise ValueError(f"reference label {label!r} must be UPPER_SNAKE_CASE")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"reference pattern {label} is not a valid regex: {exc}") from exc
        return value


REDACTION_KINDS = ("email", "iban", "card", "cvv", "phone")  # the built-in detectors (support/redaction.py)


class RedactionSettings(BaseSettings):
    """Personal data taken out of every text sent to the model (agents still see the original)."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_REDACTION_", extra="ignore")

    enabled: bool = Field(
        True, description="Replace personal data with typed placeholders (`[EMAIL_1]`) before model calls."
    )
    kinds: list[str] = Field(
        default_factory=lambda: list(REDACTION_KINDS),
        description="JSON list: the built-in detectors in use (email, iban, card, cvv, phone). Extra "
        "patterns are always used.",
    )
    phone_region: str = Field(
        "US",
        description="ISO 3166 region for phone numbers written without a country code (`+49 ...` is "
        "found whatever this is).",
    )
    patterns: dict[str, str] = Field(
        default_factory=dict,
        description='JSON object: extra kinds, name -> Python regex, e.g. `{"member_id": "M-\\\\d{8}"}`; '
        "a match becomes `[MEMBER_ID_1]`.",
    )

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(REDACTION_KINDS))
        if unknown:
            raise ValueError(f"unknown redaction kinds {unknown}; known: {list(REDACTION_KINDS)}")
        return value

    @field_validator("phone_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError("phone_region must be a two-letter ISO 3166 region such as US or DE")
        return value.upper()

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", name):
                raise ValueError(f"pattern name {name!r}: letters, digits and _ only, starting with a letter")
            if name.lower() in REDACTION_KINDS:
                raise ValueError(f"pattern name {name!r} is a built-in kind")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {name!r} is not a valid regex: {exc}") from exc
            if compiled.match(""):
                raise ValueError(f"pattern {name!r} matches the empty string")
        return value


class PolicySettings(BaseSettings):
    """The support policy document the answer model works from."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_POLICY_", extra="ignore")

    path: Path = Field(
        DEFAULT_POLICY_PATH,
        description="UTF-8 text or Markdown support policy: seeds the first knowledge version when the "
        "database has none (docs/knowledge.md); afterwards the admin API manages the knowledge.",
    )


class KnowledgeSettings(BaseSettings):
    """Knowledge versions (the policy and articles the answer prompt carries): limits and change polling."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_KNOWLEDGE_", extra="ignore")

    max_document_chars: int = Field(
        200_000, gt=0, description="Longest accepted knowledge document (policy or article); longer: 413."
    )
    max_total_chars: int = Field(
        1_000_000,
        gt=0,
        description="Longest accepted knowledge (every document of a version together); longer: 413. "
        "All of it is in every answer prompt.",
    )
    max_documents: int = Field(500, gt=0, description="Most documents one version may hold; more: 413.")
    poll_interval_s: float = Field(
        0.5,
        gt=0,
        le=1.5,
        description="How often each process checks which version is active (one Redis GET); a newly "
        "activated version is in use everywhere within this interval plus one SQL read.",
    )


class EvaluationSettings(BaseSettings):
    """Evaluation runs started from the console's Evaluate screen (``POST /api/v1/admin/evaluations``);
    ``switchboard eval`` on the command line is not bound by them."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_EVAL_", extra="ignore")

    starter_cases: Path | None = Field(
        None,
        description="The case file a run uses when the admin uploads none. Unset: `evals/starter.jsonl` "
        "next to the installed `support` package, else `./evals/starter.jsonl` (the shipped starter set, "
        "written for the sample policy).",
    )
    max_cases: int = Field(
        200,
        ge=1,
        le=10_000,
        description="Most cases one run may hold (uploaded or the starter set); more: 413. A run takes a "
        "few seconds per case and version with a real model.",
    )
    max_upload_chars: int = Field(
        500_000,
        gt=0,
        description="Longest accepted uploaded case file (characters of JSONL); longer: 413.",
    )
    keep_s: int = Field(
        7 * 86_400, gt=0, description="How long a run's progress and result are kept (seconds)."
    )
    lease_s: int = Field(
        600,
        ge=60,
        description="A running evaluation renews its hold on the workspace's one run slot after every case; "
        "if its worker dies, the slot is free this long after the last case and the run reads as failed. "
        "Longer than one case can take (the turn deadline of an evaluation is 180 s).",
    )
    run_timeout_s: int = Field(
        4 * 3600, ge=60, description="Longest a run may take before the job engine stops it."
    )


class RetentionSettings(BaseSettings):
    """How long customer conversations are kept (export and erasure on request are always available)."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_RETENTION_", extra="ignore")

    days: float = Field(
        0.0,
        ge=0.0,
        description="Conversations last active more than this many days ago are erased (with their "
        "messages, ratings and handoff records) by a background sweep; fractions allowed. 0: kept forever.",
    )
    interval_s: float = Field(
        300.0, gt=0, description="How often the retention sweep runs (one process at a time)."
    )
    batch: int = Field(
        200, ge=1, description="Conversations erased at most per sweep: bounded work, the rest next time."
    )
    examples: Literal["unlink", "delete"] = Field(
        "unlink",
        description="What a retention sweep does to examples from an expired conversation: `unlink` "
        "keeps what the agent taught without the link to the conversation; `delete` removes them. "
        "(Erasing a customer on request always deletes them.)",
    )


class LimitSettings(BaseSettings):
    """Abuse limits shared by every process (counted in Redis), and where a client's address comes from.

    Each limit is a rate in the ``limits`` package's notation: ``N/second|minute|hour|day``, several
    separated by ``;`` (all must hold), or empty to switch that limit off.
    """

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_LIMIT_", extra="ignore")

    sessions_per_ip: str = Field(
        "30/minute;300/hour",
        description="`POST /api/v1/widget/sessions` requests per client address (new and renewed).",
    )
    # The two per-conversation limits have one window each: every window is one more script call on each
    # customer message, and the hourly cost cap that matters is the per-address one.
    messages_per_conversation: str = Field(
        "20/minute",
        description="Customer messages per conversation, over all its sockets and processes.",
    )
    model_turns_per_conversation: str = Field(
        "8/minute",
        description="Customer messages per conversation that the bot answers (each costs a triage and "
        "an answer call); messages while queued or with an agent do not count.",
    )
    model_turns_per_ip: str = Field(
        "12/minute;120/hour",
        description="Bot-answered customer messages per client address, over all its conversations. "
        "A turn costs two model calls: keep twice the per-minute figure well under "
        "`SWITCHBOARD_LLM_REQUESTS_PER_MINUTE`, so one address cannot take the model budget from the rest.",
    )
    login_attempts_per_account: str = Field(
        "5/minute;20/hour",
        description="Agent login attempts for one e-mail from one client address, counted before the "
        "password is checked; a successful login clears the count. Over it, that address gets 429 for "
        "that account; other addresses can still log in to it.",
    )
    login_attempts_per_ip: str = Field(
        "30/minute;200/hour",
        description="Agent login attempts from one client address, whatever the account or outcome "
        "(room for a team logging in behind one office address).",
    )
    tickets_per_key: str = Field(
        "60/minute;2000/hour",
        description="`POST /api/v1/tickets` requests per integration key, over every process (an "
        "idempotent repeat counts too).",
    )
    api_key_failures_per_ip: str = Field(
        "20/minute",
        description="Requests with a missing, malformed, unknown or revoked integration key from one "
        "client address. Over it, that address gets 429 for every integration-key request, a valid key's "
        "too, until the window passes: keys cannot be guessed at speed.",
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        validation_alias=AliasChoices("SWITCHBOARD_TRUSTED_PROXIES"),
        description="JSON list of IPs/CIDRs of reverse proxies. A request from one of them is attributed "
        "to the right-most `X-Forwarded-For` address that is not itself a trusted proxy; from anyone "
        "else, `X-Forwarded-For` is ignored.",
    )

    @field_validator(
        "sessions_per_ip", "messages_per_conversation", "model_turns_per_conversation",
        "model_turns_per_ip", "login_attempts_per_account", "login_attempts_per_ip", "tickets_per_key",
        "api_key_failures_per_ip",
    )  # fmt: skip
    @classmethod
    def _rate(cls, value: str) -> str:
        """Refuse to start on a rate the limiter could not parse (rather than failing on first use)."""
        if value.strip():
            parse_many(value)
        return value.strip()


class TicketSettings(BaseSettings):
    """REST tickets: which are answered at once and how the rest are collected into Message Batches."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_TICKETS_", extra="ignore")

    batch_window_s: float = Field(
        300.0,
        gt=0,
        description="The longest a non-urgent ticket waits before its Message Batch is submitted.",
    )
    batch_max_requests: int = Field(
        500,
        ge=1,
        le=100_000,
        description="A batch is submitted as soon as this many tickets wait, without waiting for the window.",
    )
    batch_poll_interval_s: float = Field(
        30.0, gt=0, description="How often a submitted batch's status is checked."
    )
    urgent_urgencies: list[str] = Field(
        default_factory=lambda: ["high", "urgent"],
        description="Triage urgencies answered in real time; the rest are drafted through batches.",
    )
    max_subject_chars: int = Field(300, ge=1, le=300, description="Longest accepted ticket subject.")
    max_body_chars: int = Field(20_000, ge=1, description="Longest accepted ticket body.")


class WebhookSettings(BaseSettings):
    """Outbound webhooks (Standard Webhooks): how deliveries are retried."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_WEBHOOKS_", extra="ignore")

    max_attempts: int = Field(8, ge=1, description="Attempts per delivery (the first included).")
    backoff_base_s: float = Field(
        5.0, gt=0, description="First retry delay; each later one doubles, with jitter, up to the cap."
    )
    backoff_max_s: float = Field(3600.0, gt=0, description="Cap on one retry delay.")
    timeout_s: float = Field(10.0, gt=0, description="Whole-request timeout of one delivery attempt.")
    allow_private_urls: bool | None = Field(
        None,
        description="Whether endpoints may point at loopback or private addresses. Unset: allowed in "
        "development, refused in production (a webhook URL must not reach into the service's network).",
    )


class ReportSettings(BaseSettings):
    """Reports: how the per-conversation facts they aggregate are kept up to date."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_REPORTS_", extra="ignore")

    refresh_s: float = Field(
        60.0,
        gt=0,
        description="How often the conversation facts of changed conversations are recomputed (one "
        "process at a time): reports lag the conversations by at most about this long.",
    )


class MetricsSettings(BaseSettings):
    """The Prometheus scrape endpoint ``GET /metrics``."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_METRICS_", extra="ignore")

    token: SecretStr | None = Field(
        None,
        description="Bearer token a scrape must send (`Authorization: Bearer …`). Unset or empty: "
        "`/metrics` is open to anyone who can reach it (keep it off the public network).",
    )

    @field_validator("token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker-compose passes `${SWITCHBOARD_METRICS_TOKEN:-}`: an empty value must not become a token
        # that an empty `Bearer ` matches.
        return None if isinstance(value, str) and not value.strip() else value


class PredictedCsatSettings(BaseSettings):
    """Predicted satisfaction: conversations nobody rated, scored by the small model through Message Batches
    (shown beside real CSAT, never mixed into it)."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_PREDICTED_CSAT_", extra="ignore")

    enabled: bool = Field(
        True, description="Score finished, unrated conversations (only when a model API key is set)."
    )
    interval_s: float = Field(
        3600.0, gt=0, description="How often finished, unrated conversations are collected into a batch."
    )
    poll_interval_s: float = Field(
        60.0, gt=0, description="How often a submitted prediction batch's status is checked."
    )
    max_per_run: int = Field(
        2000,
        ge=1,
        le=100_000,
        description="Conversations one run puts in its batch at most (the rest wait for the next run): "
        "with the interval, the ceiling on what predictions cost.",
    )
    lookback_days: int = Field(
        30,
        ge=1,
        description="Only conversations started this recently are scored (turning the job on does not pay "
        "for the whole history).",
    )


class JobSettings(BaseSettings):
    """The job engine (saq over Redis) that runs batches, webhook deliveries, archiving and retention."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_JOBS_", extra="ignore")

    in_process: bool = Field(
        True,
        description="`switchboard serve` also runs the jobs (one command gives a complete system). Set to "
        "false when `switchboard worker` processes run them.",
    )
    concurrency: int = Field(10, ge=1, le=200, description="Jobs one worker process runs at once.")


class TeamSettings(BaseSettings):
    """Teams: for now the default team's business hours (who can answer, and when)."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore")

    business_hours: str = Field(
        "",
        description="The default team's opening hours as JSON: "
        '`{"timezone": "Europe/Berlin", "weekly": {"mon": ["09:00-17:00"], ...}, '
        '"holidays": ["2026-12-25"]}` (local times, a day not named is closed, `24:00` closes at '
        "midnight). Empty: always open, so only agent presence decides. Admins can override it through "
        "`PUT /api/v1/admin/teams/default/hours` (docs/console.md).",
    )

    @field_validator("business_hours")
    @classmethod
    def _hours_parse(cls, value: str) -> str:
        """Refuse to start on hours that cannot be read (rather than telling customers nonsense)."""
        try:
            parse_hours(value)
        except ValidationFailed as exc:
            raise ValueError(exc.message) from None
        return value.strip()


ASSIGNMENT_POLICIES = ("manual", "capacity", "round_robin", "least_busy")


class AssignmentSettings(BaseSettings):
    """Teams' queues, automatic assignment of queued conversations to online agents, and SLA targets."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore")

    assignment: Literal["manual", "capacity", "round_robin", "least_busy"] = Field(
        "manual",
        description="How a team's queued conversations reach agents unless an admin set the team's own "
        "policy: `manual` (agents claim), `capacity` (the online agent with the most spare capacity), "
        "`round_robin` (online agents in turn), `least_busy` (the online agent holding fewest).",
    )
    assignment_intent_teams: dict[str, str] = Field(
        default_factory=dict,
        description='JSON object: triage intent -> team id, e.g. `{"payments_billing": "billing"}`; other '
        "intents (and unknown teams) go to the `default` team's queue.",
    )
    assignment_skill_wait_s: float = Field(
        60.0,
        ge=0,
        description="A queued conversation no online agent with matching skills (language, intent) can "
        "take goes to any agent of its team after waiting this long.",
    )
    assignment_interval_s: float = Field(
        2.0,
        gt=0,
        description="Every process looks for conversations to assign at least this often (besides at once "
        "on a handoff, a release and an agent coming online).",
    )
    sla_first_reply_s: int = Field(
        300,
        ge=0,
        description="Target from handoff to the first agent reply (teams may set their own); 0: none.",
    )
    sla_resolution_s: int = Field(
        3600, ge=0, description="Target from handoff to resolution (teams may set their own); 0: none."
    )


class MailSettings(BaseSettings):
    """Outbound e-mail (SMTP): agent replies to customers who left an address in the widget."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_SMTP_", extra="ignore")

    host: str | None = Field(
        None,
        description="SMTP server host. Unset: no e-mail is sent, and the widget does not offer to leave an "
        "address.",
    )
    port: int = Field(587, ge=1, le=65535, description="SMTP server port (587 submission, 465 TLS, 25).")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description="`starttls` (upgrade after connecting, required), `tls` (TLS from the start, port "
        "465) or `none` (plain text: only for a relay on the same host or network).",
    )
    username: str | None = Field(None, description="SMTP login name; unset: no authentication.")
    password: SecretStr | None = Field(None, description="SMTP password (with `username`).")
    from_address: str = Field(
        "support@localhost", description="The `From` address of the e-mails customers get."
    )
    from_name: str = Field("Support", description="The display name in the `From` header.")
    timeout_s: float = Field(30.0, gt=0, description="Connect and command timeout of one attempt.")
    max_attempts: int = Field(
        6, ge=1, description="Attempts per e-mail (the first included), with exponential backoff."
    )

    @property
    def enabled(self) -> bool:
        """Whether e-mail can be sent at all."""
        return bool(self.host)


class SavedReplySettings(BaseSettings):
    """Saved replies: the library agents insert into the composer by shortcut (docs/console.md)."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_SAVED_REPLIES_", extra="ignore")

    max_team: int = Field(500, ge=1, description="Team saved replies at most (a picker, not an archive).")
    max_personal: int = Field(100, ge=1, description="Personal saved replies per agent at most.")
    max_text_chars: int = Field(
        4000, ge=1, le=8000, description="Characters of one saved reply's text at most (a reply is 8000)."
    )


# --- attachments ---------------------------------------------------------------------------------------
ATTACHMENT_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")


class AttachmentSettings(BaseSettings):
    """Files customers, agents and tickets attach: limits, and where they are stored."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_ATTACHMENTS_", extra="ignore")

    max_bytes: int = Field(
        5 * 1024 * 1024,
        gt=0,
        le=50 * 1024 * 1024,
        description="Largest attachment (bytes); a larger upload is answered 413 `too_large`.",
    )
    allowed_types: list[str] = Field(
        default_factory=lambda: list(ATTACHMENT_TYPES),
        description="JSON list of the media types accepted, a subset of "
        "`image/png`, `image/jpeg`, `image/gif`, `image/webp`, `application/pdf`. The type is read from "
        "the file's content, never from its name or the declared type.",
    )
    max_per_conversation: int = Field(
        20, ge=1, description="Attachments one conversation (or ticket) may hold; more is answered 429."
    )
    images_to_model: bool = Field(
        False,
        description="Send customers' images to the model as image blocks. Off: the model sees only a "
        "marker such as `[customer attached an image]`. PDFs are never sent.",
    )
    dir: Path | None = Field(
        None, description="Directory of stored files without S3. Unset: `<data dir>/attachments`."
    )
    s3_bucket: str | None = Field(
        None, description="S3 bucket: when set, files are stored there instead of on disk."
    )
    s3_endpoint_url: str | None = Field(
        None, description="Endpoint of an S3-compatible store (MinIO, R2...); unset: AWS."
    )
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_access_key_id: str | None = Field(None, description="S3 access key; unset: the AWS default chain.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    s3_prefix: str = Field("attachments/", description="Key prefix of stored objects.")

    @field_validator("allowed_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ATTACHMENT_TYPES))
        if unknown:
            raise ValueError(f"unsupported attachment types {unknown}; allowed: {list(ATTACHMENT_TYPES)}")
        return value


class SearchSettings(BaseSettings):
    """Agents' search over conversations, tickets, notes and customers (docs/search.md)."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_SEARCH_", extra="ignore")

    index_interval_s: float = Field(
        5.0,
        ge=1,
        description="How often new messages of active conversations are added to the search index (one "
        "process at a time): a message is findable at most about this long after it was sent.",
    )


class Settings(BaseModel):
    """All settings of one process, each concern in its own object."""

    app: AppSettings = Field(default_factory=AppSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)
    redaction: RedactionSettings = Field(default_factory=RedactionSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    tickets: TicketSettings = Field(default_factory=TicketSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    predicted_csat: PredictedCsatSettings = Field(default_factory=PredictedCsatSettings)
    teams: TeamSettings = Field(default_factory=TeamSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    saved_replies: SavedReplySettings = Field(default_factory=SavedReplySettings)
    attachments: AttachmentSettings = Field(default_factory=AttachmentSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    assignment: AssignmentSettings = Field(default_factory=AssignmentSettings)

    model_config = {"arbitrary_types_allowed": True}

    @cached_property
    def database_url(self) -> str:
        """The SQL URL in use: the configured one or SQLite in the data dir."""
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.app.data_dir / 'switchboard.sqlite3').resolve()}"


def load_settings() -> Settings:
    """Read every settings object from the environment (called once per process)."""
    settings = Settings()
    settings.app.check_production()
    return settings
