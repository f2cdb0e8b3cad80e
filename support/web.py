"""Where the static front end lives (``web/``: widget, console, reports pages, demo host page)."""

from __future__ import annotations

from pathlib import Path

from support.settings import AppSettings


def web_root(settings: AppSettings) -> Path:
    """The ``web/`` directory: the setting, else the source checkout's, else ``./web``."""
    if settings.web_dir is not None:
        return settings.web_dir
    beside_package = Path(__file__).resolve().parents[1] / "web"
    if beside_package.is_dir():
        return beside_package
    return Path.cwd() / "web"
