"""The app's logging follows SWITCHBOARD_LOG_LEVEL and keeps per-request HTTP client lines out."""

from __future__ import annotations

import logging

import pytest

from support.app import QUIET_LOGGERS, logging_config


@pytest.mark.parametrize("level", ["warning", "DEBUG"])
def test_the_setting_is_the_root_level_and_the_http_client_stays_at_warning(level: str) -> None:
    config = logging_config(level)
    assert config.root["level"] == level.upper()
    for name in QUIET_LOGGERS:
        assert config.loggers[name]["level"] == "WARNING"


def test_configured_logging_drops_the_sdk_request_lines_but_not_the_apps() -> None:
    root, quiet = logging.getLogger(), logging.getLogger("httpx2")
    saved = (root.level, list(root.handlers), quiet.level)
    try:
        logging_config("INFO").configure()
        assert not quiet.isEnabledFor(logging.INFO)
        assert quiet.isEnabledFor(logging.WARNING)
        assert logging.getLogger("support.runtime").isEnabledFor(logging.INFO)
    finally:  # the rest of the suite keeps pytest's logging
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        quiet.setLevel(saved[2])
