"""The application factory: routes, plugins, lifespan, error mapping; nothing else."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar, MediaType, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from support import __version__
from support.channels.widget import WidgetController
from support.errors import SwitchboardError
from support.health import healthz, readyz
from support.runtime import Runtime, open_runtime
from support.settings import Settings, load_settings

log = logging.getLogger(__name__)


def error_response(_request: Request[object, object, State], exc: SwitchboardError) -> Response[object]:
    """Every typed error becomes ``{"error": {"code", "message"}}`` with its HTTP status."""
    return Response(
        {"error": {"code": exc.code, "message": exc.message}},
        status_code=exc.http_status,
        media_type=MediaType.JSON,
    )


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the Litestar app; the lifespan owns every client (see support.runtime)."""
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            app.state.runtime = runtime
            yield

    def provide_runtime(state: State) -> Runtime:
        runtime: Runtime = state.runtime
        return runtime

    return Litestar(
        route_handlers=[healthz, readyz, WidgetController],
        dependencies={"runtime": Provide(provide_runtime, sync_to_thread=False)},
        lifespan=[lifespan],
        exception_handlers={SwitchboardError: error_response},
        openapi_config=OpenAPIConfig(title="Switchboard", version=__version__, path="/schema"),
        debug=False,
    )
