"""The report pages: ``GET /reports/`` serves ``web/reports/`` (plain JS, no build step, charts as SVG).

The pages call the admin report API (``/api/v1/reports/...``) with the token from the agent login, so
serving them is nothing but files.
"""

from __future__ import annotations

from litestar.datastructures import CacheControlHeader
from litestar.router import Router
from litestar.static_files import create_static_files_router

from support.settings import AppSettings
from support.web import StaticFileSystem, web_root


def reports_router(settings: AppSettings) -> Router:
    """Routes for the files under ``web_root(settings)/reports``."""
    return create_static_files_router(
        path="/reports",
        directories=[web_root(settings) / "reports"],
        file_system=StaticFileSystem(),
        html_mode=True,
        name="reports",
        cache_control=CacheControlHeader(no_cache=True),
        include_in_schema=False,
    )
