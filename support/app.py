"""The application factory: routes, plugins, lifespan, error mapping; nothing else."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar, MediaType, Request, Response, Router, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import ExternalDocumentation

from handoff.auth import AgentStaffAuth
from handoff.console import AdminController, AgentController, AgentLoginController
from handoff.console_pages import console_router
from handoff.replies_console import SavedReplyController
from handoff.search_api import WorkspaceController
from handoff.team_admin import TeamAdminController
from support import __version__, log_redaction
from support.channels.admin_audit import AuditController
from support.channels.admin_customers import CustomerDataController
from support.channels.admin_evaluations import EvaluationController
from support.channels.admin_knowledge import KnowledgeController
from support.channels.asyncapi import ASYNCAPI_PATH, asyncapi_document
from support.channels.attachments import AgentAttachmentController, WidgetAttachmentController
from support.channels.integration_keys import IntegrationKeyController, OwnIntegrationKeyController
from support.channels.metrics import prometheus_metrics
from support.channels.staff import STAFF_AUTH_STATE_KEY
from support.channels.tickets import AgentTicketController, TicketController
from support.channels.web_assets import WebAssetsController
from support.channels.webhooks import WebhookController
from support.channels.widget import WidgetController
from support.errors import RateLimited, SwitchboardError, Unauthorized, unavailable_from
from support.health import healthz, readyz
from support.http_input import RejectNul, bounded_request_class
from support.openapi_errors import components, describe_errors
from support.reports.api import ReportsController
from support.reports.pages import reports_router
from support.reports.sla_api import SlaReportController
from support.runtime import Runtime, open_runtime
from support.settings import Settings, load_settings

log = logging.getLogger(__name__)


def error_response(_request: Request[object, object, State], exc: SwitchboardError) -> Response[object]:
    """Every typed error becomes ``{"error": {"code", "message"}}`` with its HTTP status; a rate limit
    also says when to retry (``Retry-After``, seconds), and a 401 with a challenge how to authenticate
    (``WWW-Authenticate``)."""
    headers = {}
    if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, Unauthorized) and exc.challenge is not None:
        headers["WWW-Authenticate"] = exc.challenge
    return Response(
        {"error": {"code": exc.code, "message": exc.message}},
        status_code=exc.http_status,
        media_type=MediaType.JSON,
        headers=headers,
    )


HTTP_ERROR_CODES = {
    400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "too_large", 429: "rate_limited",
}  # fmt: skip


def http_error_response(_request: Request[object, object, State], exc: HTTPException) -> Response[object]:
    """Framework errors (body validation, unknown route, wrong method) in the same envelope."""
    code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
    error: dict[str, object] = {"code": code, "message": exc.detail}
    if isinstance(exc, ValidationException) and exc.extra:
        error["details"] = exc.extra
    return Response({"error": error}, status_code=exc.status_code, media_type=MediaType.JSON)


def internal_error_response(request: Request[object, object, State], exc: Exception) -> Response[object]:
    """A dependency that cannot be reached (Redis, the database) is 503 ``unavailable``, logged as a
    warning without a traceback (it is expected, and each request would repeat it); anything else is a bug:
    logged with its traceback here, never shown to the client."""
    unavailable = unavailable_from(exc)
    if unavailable is not None:
        log.warning("%s %s: %s (%r)", request.method, request.url.path, unavailable.code, exc)
        return error_response(request, unavailable)
    log.error("unhandled error", exc_info=exc)
    return Response(
        {"error": {"code": "internal_error", "message": "internal error"}},
        status_code=500,
        media_type=MediaType.JSON,
    )


# The SDK's HTTP layer logs every request at INFO ("HTTP Request: POST ..."): noise at the volume of a
# support desk (two lines per customer message), and a cost per call. Its warnings still show.
# aiosqlite logs every statement with its parameters at DEBUG: customers' words and password hashes.
# saq logs every job it queues and runs at INFO: a line per job drowns the service's own (its job failures
# are ERROR and stay).
QUIET_LOGGERS = ("httpx2", "httpcore2", "httpx", "httpcore", "aiosqlite", "saq")


def logging_config(level: str) -> LoggingConfig:
    """Litestar's queue-based logging at ``SWITCHBOARD_LOG_LEVEL`` (its default would be INFO whatever
    the setting said), with the HTTP client libraries held at WARNING."""
    level = level.upper()
    return LoggingConfig(
        root={"handlers": ["queue_listener"], "level": level},
        loggers={
            "litestar": {"level": level, "handlers": ["queue_listener"], "propagate": False},
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
        },
    )


OPENAPI_DESCRIPTION = (
    'Switchboard\'s HTTP API. Every error is `{"error": {"code", "message"}}` with the status listed '
    "for the operation (docs/protocol.md). The widget and agent WebSockets are described by the AsyncAPI "
    f"document at [{ASYNCAPI_PATH}]({ASYNCAPI_PATH})."
)

ASYNCAPI = asyncapi_document()  # built once: it depends on the frame types only


@get(ASYNCAPI_PATH.removeprefix("/schema"), include_in_schema=False, sync_to_thread=False)
def asyncapi_json() -> dict[str, object]:
    """The WebSocket protocol as an AsyncAPI 3.0 document (built from the typed frames)."""
    return ASYNCAPI


def openapi_config() -> OpenAPIConfig:
    """``/schema/openapi.json`` (with the error body and the agent token scheme) and, beside it,
    ``/schema/asyncapi.json``."""
    return OpenAPIConfig(
        title="Switchboard",
        version=__version__,
        description=OPENAPI_DESCRIPTION,
        external_docs=ExternalDocumentation(url=ASYNCAPI_PATH, description="The WebSockets (AsyncAPI 3.0)"),
        components=components(),
        openapi_router=Router("/schema", route_handlers=[asyncapi_json], include_in_schema=False),
    )


def create_app(settings: Settings | None = None, *, own_runtime: bool = True) -> Litestar:
    """Build the Litestar app; the lifespan owns every client (see support.runtime), unless
    ``own_runtime`` is False: then whoever serves it opens the runtime and sets ``app.state.runtime``
    before the lifespan starts (``support.server`` does, to report a start-up failure in one line)."""
    settings = settings or load_settings()
    log_redaction.install()  # before anything logs: no credential in any log line

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if not own_runtime:
            yield
            return
        async with open_runtime(settings) as runtime:
            app.state.runtime = runtime
            yield

    def provide_runtime(state: State) -> Runtime:
        runtime: Runtime = state.runtime
        return runtime

    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            prometheus_metrics,
            WidgetController,
            WidgetAttachmentController,
            AgentAttachmentController,
            AgentLoginController,
            AgentController,
            AdminController,
            WorkspaceController,
            CustomerDataController,
            KnowledgeController,
            EvaluationController,
            IntegrationKeyController,
            OwnIntegrationKeyController,
            TicketController,
            AgentTicketController,
            WebhookController,
            WebAssetsController,
            SavedReplyController,
            AuditController,
            ReportsController,
            SlaReportController,
            TeamAdminController,
            reports_router(settings.app),
            console_router(settings.app),
        ],
        dependencies={"runtime": Provide(provide_runtime, sync_to_thread=False)},
        # The customer side's admin endpoints are guarded by the human side's agent tokens, passed in
        # here: support never imports handoff (docs/architecture.md, "Layers").
        state=State({STAFF_AUTH_STATE_KEY: AgentStaffAuth()}),
        lifespan=[lifespan],
        exception_handlers={
            SwitchboardError: error_response,
            HTTPException: http_error_response,
            Exception: internal_error_response,
        },
        middleware=[RejectNul()],
        request_class=bounded_request_class(settings.http.max_json_depth),
        request_max_body_size=settings.http.max_body_bytes,
        openapi_config=openapi_config(),
        logging_config=logging_config(settings.app.log_level),
        debug=False,
    )
    describe_errors(app.openapi_schema)
    return app
