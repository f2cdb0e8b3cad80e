"""Where the static front end lives (``web/``: widget, console, reports pages, demo host page), and the
file system the static routes read it through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.file_system import BaseLocalFileSystem
from litestar.types import PathType
from litestar.types.file_types import FileInfo

from support.settings import AppSettings


def web_root(settings: AppSettings) -> Path:
    """The ``web/`` directory: the setting, else the source checkout's, else ``./web``."""
    if settings.web_dir is not None:
        return settings.web_dir
    beside_package = Path(__file__).resolve().parents[1] / "web"
    if beside_package.is_dir():
        return beside_package
    return Path.cwd() / "web"


class StaticFileSystem(BaseLocalFileSystem):
    """The local file system, where every path that cannot be served is simply not found.

    A request path is the client's: ``%00`` makes ``stat`` raise ``ValueError``, a 300-character name
    ``ENAMETOOLONG``, a file used as a directory ``ENOTDIR``. Litestar turns those into 500s; here each
    is a 404, as for any other name that is not a file of the front end. (``..`` and encoded slashes
    never leave the directory: Litestar checks the resolved path first.)"""

    async def info(self, path: PathType, **kwargs: Any) -> FileInfo:
        try:
            return await super().info(path, **kwargs)
        except (ValueError, OSError) as exc:  # FileNotFoundError is an OSError: one answer for all
            raise FileNotFoundError(str(path)) from exc
