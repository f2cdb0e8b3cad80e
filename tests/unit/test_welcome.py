"""What the start-up lines and ``/`` say the model is, and which account to use, from what is configured."""

from __future__ import annotations

import pytest

from support.settings import AppSettings, LLMSettings, Settings
from support.welcome import model_mode, next_steps


def settings(*, demo: bool, key: str | None, base_url: str | None) -> Settings:
    return Settings(
        app=AppSettings(demo=demo),
        llm=LLMSettings(ANTHROPIC_API_KEY=key, ANTHROPIC_BASE_URL=base_url),  # type: ignore[call-arg]
    )


@pytest.mark.parametrize(
    ("demo", "key", "base_url", "mode"),
    [
        (True, "demo-model", "http://127.0.0.1:41234", "demo"),  # what `switchboard demo` sets
        (True, "demo-model", "http://localhost:8090", "demo"),
        # SWITCHBOARD_DEMO=true by hand with a real key: the real API answers, not the demo model.
        (True, "sk-ant-real", None, "live"),
        (True, "sk-ant-real", "https://api.anthropic.com", "live"),
        (True, None, None, "offline"),
        (False, "sk-ant-real", None, "live"),
        (False, "test", "http://127.0.0.1:8090", "live"),
        (False, None, None, "offline"),
    ],
)
def test_the_mode_shown_is_what_is_configured(
    demo: bool, key: str | None, base_url: str | None, mode: str
) -> None:
    assert model_mode(settings(demo=demo, key=key, base_url=base_url)) == mode


def test_the_demo_account_replaces_the_create_agent_suggestion() -> None:
    made = next_steps("http://127.0.0.1:8000", "demo", demo_account="demo-agent@example.com")
    assert "Sign in to the console and the reports as demo-agent@example.com" in made
    assert "create-agent" not in made
    existing = next_steps("http://127.0.0.1:8000", "demo", accounts_exist=True)
    assert "existing agent account" in existing
    assert "create-agent" not in existing
    fresh = next_steps("http://127.0.0.1:8000", "offline")
    assert "create the first one" in fresh
    assert "switchboard create-agent --email" in fresh
