"""Settings, one object per concern, read from the environment once at start-up.

Every field is documented here and in docs/configuration.md. Public variable names (PROTOCOL.md) are
kept exactly: ``SWITCHBOARD_REDIS_URL``, ``SWITCHBOARD_DATABASE_URL``, ``SWITCHBOARD_POLICY_PATH``,
``SWITCHBOARD_DATA_DIR``, ``SWITCHBOARD_WIDGET_KEYS``, ``SWITCHBOARD_TRIAGE_MODEL``,
``SWITCHBOARD_ANSWER_MODEL``, ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from support.errors import ConfigurationError

_PLACEHOLDER_SECRET = "dev-insecure-placeholder-secret-change-me"
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
        "development", description="`production` refuses placeholder secrets."
    )
    data_dir: Path = Field(
        Path("./switchboard-data"),
        description="Where the embedded Redis and the SQLite database keep their files.",
    )
    secret_key: SecretStr = Field(
        SecretStr(_PLACEHOLDER_SECRET),
        description="Signs widget session tokens and agent tokens. Must be set in production.",
    )
    web_dir: Path | None = Field(
        None,
        description="Directory of the static front end (widget, console, reports pages, demo). "
        "Unset: the `web/` directory next to the installed `support` package, else `./web`.",
    )
    log_level: str = Field("INFO", description="Python logging level name.")
    drain_timeout_s: float = Field(
        10.0, description="On SIGTERM, how long in-flight turns may finish before sockets are closed."
    )
    widget_keys: dict[str, list[str]] = Field(
        default_factory=lambda: {"pk_demo": ["http://127.0.0.1:8000", "http://localhost:8000"]},
        description="JSON object: widget key -> allowed origins.",
    )
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
        """Refuse to run production with the shipped placeholder secret."""
        if self.environment == "production" and self.secret_key.get_secret_value() == _PLACEHOLDER_SECRET:
            raise ConfigurationError("SWITCHBOARD_SECRET_KEY must be set in production")


class RedisSettings(BaseSettings):
    """Redis: hot conversation state, queues, pub/sub, rate budgets."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_REDIS_", extra="ignore")

    url: str | None = Field(
        None,
        description="redis:// or unix:// URL. Unset: an embedded Redis server is started under the data dir.",
    )
    embedded_start_timeout_s: float = Field(10.0, description="How long to wait for the embedded server.")


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
    window_tokens: int = Field(
        3000,
        description=(
            "Token budget of summary + verbatim window in answer prompts; over it, the oldest turns are "
            "folded into the running summary."
        ),
    )
    turn_deadline_s: float = Field(
        45.0, description="A customer turn ends (answer or handoff) within this, even if the model stalls."
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


class PolicySettings(BaseSettings):
    """The support policy document the answer model works from."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_POLICY_", extra="ignore")

    path: Path = Field(DEFAULT_POLICY_PATH, description="UTF-8 text or Markdown support policy.")


class Settings(BaseModel):
    """All settings of one process, each concern in its own object."""

    app: AppSettings = Field(default_factory=AppSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)

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
