"""docs/configuration.md is generated from the settings classes and must be current."""

from __future__ import annotations

from pathlib import Path

from support.config_doc import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_doc_matches_the_settings_classes() -> None:
    assert DOC.read_text() == render(), "run: python -m support.config_doc > docs/configuration.md"


def test_public_environment_names_are_documented() -> None:
    text = DOC.read_text()
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "SWITCHBOARD_REDIS_URL",
        "SWITCHBOARD_DATABASE_URL",
        "SWITCHBOARD_POLICY_PATH",
        "SWITCHBOARD_DATA_DIR",
        "SWITCHBOARD_WIDGET_KEYS",
        "SWITCHBOARD_TRIAGE_MODEL",
        "SWITCHBOARD_ANSWER_MODEL",
    ):
        assert f"`{name}`" in text
