"""The agent console's static files: ``GET /console/`` serves ``web/console/`` (plain JS, no build step).

The console talks only to the agent API (``/api/v1/agent/...``) and its WebSocket, so serving it is
nothing but files; ``html_mode`` answers ``/console/`` with ``index.html``.
"""

from __future__ import annotations

from litestar.datastructures import CacheControlHeader
from litestar.router import Router
from litestar.static_files import create_static_files_router

from support.settings import AppSettings
from support.web import StaticFileSystem, web_root

CONSOLE_PATH = "/console"


def console_router(settings: AppSettings) -> Router:
    """Routes for the console's files under ``web_root(settings)/console``."""
    return create_static_files_router(
        path=CONSOLE_PATH,
        directories=[web_root(settings) / "console"],
        file_system=StaticFileSystem(),
        html_mode=True,
        name="console",
        # Revalidate every time: a deploy must never leave an agent on a stale console script.
        cache_control=CacheControlHeader(no_cache=True),
        include_in_schema=False,
    )
