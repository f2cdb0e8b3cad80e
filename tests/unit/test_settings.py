"""Settings come from the public environment names, with safe defaults."""

from __future__ import annotations

import pytest

from support.errors import ConfigurationError
from support.settings import PUBLIC_ENV_NAMES, load_settings

PUBLIC_ENV = (
    *PUBLIC_ENV_NAMES, "SWITCHBOARD_ENVIRONMENT", "SWITCHBOARD_SECRET_KEY", "SWITCHBOARD_SECRET_KEY_FILE",
)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PUBLIC_ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_embedded_and_offline(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.redis.url is None
    assert settings.llm.offline
    assert settings.llm.triage_model == "claude-haiku-4-5"
    assert settings.llm.answer_model == "claude-sonnet-4-6"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/switchboard.sqlite3"
    assert settings.policy.path.name == "sample_policy.md"


def test_public_environment_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("SWITCHBOARD_POLICY_PATH", "/tmp/policy.md")
    monkeypatch.setenv("SWITCHBOARD_WIDGET_KEYS", '{"pk_x": ["https://shop.example"]}')
    monkeypatch.setenv("SWITCHBOARD_TRIAGE_MODEL", "claude-haiku-4-5-20251001")
    monkeypatch.setenv("SWITCHBOARD_ANSWER_MODEL", "claude-opus-4-7")
    settings = load_settings()
    assert not settings.llm.offline
    assert settings.llm.base_url == "http://127.0.0.1:9"
    assert settings.redis.url == "redis://127.0.0.1:6379/3"
    assert settings.database_url == "postgresql+asyncpg://u@h/db"  # async driver chosen for a plain URL
    assert str(settings.policy.path) == "/tmp/policy.md"
    assert settings.app.widget_keys == {"pk_x": ["https://shop.example"]}
    assert settings.llm.triage_model == "claude-haiku-4-5-20251001"
    assert settings.llm.answer_model == "claude-opus-4-7"


def test_production_refuses_a_short_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_ENVIRONMENT", "production")
    monkeypatch.setenv("SWITCHBOARD_SECRET_KEY", "a-real-secret")
    with pytest.raises(ConfigurationError, match="SWITCHBOARD_SECRET_KEY"):
        load_settings()
    monkeypatch.setenv("SWITCHBOARD_SECRET_KEY", "a-real-secret-from-the-vault-0123456789")
    assert load_settings().app.environment == "production"


def test_no_secret_is_built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, the key is generated at start-up (support/signing_key.py), never a shipped default."""
    assert load_settings().app.secret_key is None
