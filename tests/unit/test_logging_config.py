"""The app's logging follows SWITCHBOARD_LOG_LEVEL and keeps per-request HTTP client lines out."""

from __future__ import annotations

import logging

import pytest

from support.app import QUIET_LOGGERS, logging_config


@pytest.mark.parametrize(("level", "app_info"), [("INFO", True), ("warning", False)])
def test_configured_logging_follows_the_setting_and_drops_the_sdk_request_lines(
    level: str, app_info: bool
) -> None:
    root, quiet = logging.getLogger(), logging.getLogger("httpx2")
    saved = (root.level, list(root.handlers), quiet.level)
    try:
        logging_config(level).configure()
        assert logging.getLogger("support.runtime").isEnabledFor(logging.INFO) is app_info
        assert all(not logging.getLogger(name).isEnabledFor(logging.INFO) for name in QUIET_LOGGERS)
        assert quiet.isEnabledFor(logging.WARNING)
    finally:  # the rest of the suite keeps pytest's logging
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        quiet.setLevel(saved[2])
