"""docs/configuration.md is generated from the settings classes and must be current."""

from __future__ import annotations

from pathlib import Path

from support.config_doc import render
from support.settings import PUBLIC_ENV_NAMES

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_doc_matches_the_settings_classes() -> None:
    assert DOC.read_text() == render(), "run: python -m support.config_doc > docs/configuration.md"


PROTOCOL_ENV_NAMES = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "SWITCHBOARD_REDIS_URL",
    "SWITCHBOARD_DATABASE_URL",
    "SWITCHBOARD_POLICY_PATH",
    "SWITCHBOARD_DATA_DIR",
    "SWITCHBOARD_WIDGET_KEYS",
    "SWITCHBOARD_TRIAGE_MODEL",
    "SWITCHBOARD_ANSWER_MODEL",
)


def test_public_environment_names_are_documented() -> None:
    assert PUBLIC_ENV_NAMES == PROTOCOL_ENV_NAMES  # the contract's list, written out here as the oracle
    text = DOC.read_text()
    for name in PROTOCOL_ENV_NAMES:
        assert f"`{name}`" in text
