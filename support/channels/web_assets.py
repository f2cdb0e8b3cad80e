"""Static front-end assets served by the app: the landing page, the widget script and the demo host pages.

The widget is embedded on other sites by one ``<script>`` tag, so ``/widget.js`` must be cheap to fetch
again: it carries a strong ETag (a hash of its bytes) and a short ``max-age`` so that a deploy reaches
every host page within minutes while unchanged copies are revalidated with a 304 and no body.
"""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from support.errors import NotFound
from support.runtime import Runtime
from support.web import web_root
from support.welcome import ACCOUNT_TEXT, CREATE_AGENT_COMMAND, DEMO_ACCOUNT_TEXT, MODE_TEXT, model_mode

WIDGET_MAX_AGE_S = 300  # a fixed widget reaches every embedding page within five minutes of a deploy
WIDGET_STALE_S = 86400  # meanwhile a cached copy may be used while it is revalidated in the background
DEMO_KEY_PLACEHOLDER = "__WIDGET_KEY__"


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise NotFound(f"{path.name} is not installed (web directory {path.parent})")
    return path.read_bytes()


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def cached_asset(request: Request[Any, Any, Any], body: bytes, media_type: str) -> Response[bytes]:
    """``body`` with an ETag and cache headers; 304 when the client already holds this version."""
    etag = _etag(body)
    headers = {
        "ETag": etag,
        "Cache-Control": f"public, max-age={WIDGET_MAX_AGE_S}, stale-while-revalidate={WIDGET_STALE_S}",
        "Access-Control-Allow-Origin": "*",  # a public script; allows `crossorigin` / SRI on host pages
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _html(page: str) -> Response[str]:
    return Response(page, media_type="text/html", headers={"Cache-Control": "no-cache"})


class WebAssetsController(Controller):
    """``/``, ``/widget.js``, ``/demo`` and ``/demo/hostile``."""

    path = "/"
    include_in_schema = False

    @get("/", summary="The landing page: where the demo, console and reports are")
    async def landing(self, runtime: Runtime) -> Response[str]:
        """Links to the demo page, console and reports, the model mode, and how to create an agent."""
        mode = model_mode(runtime.settings)
        title, text = MODE_TEXT[mode]
        page = _read(web_root(runtime.settings.app) / "index.html").decode()
        for placeholder, value in (
            ("__MODE_TITLE__", title), ("__MODE_TEXT__", text), ("__MODE__", mode),
            ("__ACCOUNT_TEXT__", DEMO_ACCOUNT_TEXT if mode == "demo" else ACCOUNT_TEXT),
            # One option per line (a shell continuation), so no width breaks the command inside an option.
            ("__CREATE_AGENT__", CREATE_AGENT_COMMAND.replace(" --", " \\\n    --")),
        ):  # fmt: skip
            page = page.replace(placeholder, _prose(value))
        return _html(page)

    @get("/widget.js", summary="The embeddable chat widget")
    async def widget_js(self, request: Request[Any, Any, Any], runtime: Runtime) -> Response[bytes]:
        """The widget script (no build step: the file in ``web/widget/`` as written)."""
        body = _read(web_root(runtime.settings.app) / "widget" / "widget.js")
        return cached_asset(request, body, "text/javascript")

    @get("/demo", summary="A demo host page with the widget embedded")
    async def demo(self, runtime: Runtime, key: str | None = None) -> Response[str]:
        """Northwind Outfitters' shop page; ``?key=`` picks a configured widget key (default: the first)."""
        return _html(_demo_page(runtime, "index.html", key))

    @get("/demo/hostile", summary="A host page with hostile CSS (the widget's isolation test page)")
    async def demo_hostile(self, runtime: Runtime, key: str | None = None) -> Response[str]:
        """The same shop with style rules that would break a widget not isolated in its Shadow DOM."""
        return _html(_demo_page(runtime, "hostile.html", key))


def _prose(text: str) -> str:
    """``text`` escaped for HTML, its `backquoted` commands as <code> (the console lines print them as is)."""
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", html.escape(text, quote=True))


def _demo_page(runtime: Runtime, name: str, key: str | None) -> str:
    keys = runtime.settings.app.widget_keys
    if key is None:
        key = next(iter(keys), "")
    elif key not in keys:
        raise NotFound(f"no widget key {key!r}")
    page = _read(web_root(runtime.settings.app) / "demo" / name).decode()
    return page.replace(DEMO_KEY_PLACEHOLDER, html.escape(key, quote=True))
