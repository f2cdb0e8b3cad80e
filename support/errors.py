"""The one exception hierarchy of Switchboard.

Every error a client can see derives from :class:`SwitchboardError` and carries a stable ``code``,
an HTTP status and a WebSocket close code; ``support.app`` maps them in one place, so a client always
gets a typed JSON error and never a stack trace.
"""

from __future__ import annotations

from typing import ClassVar

from redis import exceptions as redis_errors
from sqlalchemy import exc as sql_errors


class SwitchboardError(Exception):
    """Base of every error Switchboard raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    ws_close_code: ClassVar[int] = 1011

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()


class ConfigurationError(SwitchboardError):
    """The process is misconfigured."""

    code = "configuration_error"


class StartupFailed(SwitchboardError):
    """The process cannot start: a dependency unreachable at start, a failed migration, bad settings.

    Never sent to a client; ``switchboard serve`` prints its message as one line and exits non-zero.
    """

    code = "startup_failed"


class ValidationFailed(SwitchboardError):
    """The request is malformed."""

    code = "invalid_request"
    http_status = 400
    ws_close_code = 1008


class TooDeeplyNested(ValidationFailed):
    """The JSON body nests arrays and objects deeper than the server accepts."""

    code = "too_deep"


class NotFound(SwitchboardError):
    """No such resource."""

    code = "not_found"
    http_status = 404


class Forbidden(SwitchboardError):
    """Not allowed."""

    code = "forbidden"
    http_status = 403
    ws_close_code = 1008


class IdentityInvalid(Forbidden):
    """The visitor's identity could not be verified, or would change a conversation's visitor id."""

    code = "identity_invalid"


class Unauthorized(SwitchboardError):
    """Missing or invalid credentials."""

    code = "unauthorized"
    http_status = 401
    ws_close_code = 1008

    def __init__(self, message: str | None = None, *, challenge: str | None = None) -> None:
        super().__init__(message)
        # The HTTP ``WWW-Authenticate`` value (RFC 7235) telling the client how to authenticate, if any.
        self.challenge = challenge


class Conflict(SwitchboardError):
    """The resource is in a state that does not allow this."""

    code = "conflict"
    http_status = 409


class BotDisowned(Conflict):
    """The bot no longer owns the conversation (a person took it, or it was closed): a bot turn's frame or
    reply was refused where it would have left. Raised inside a turn, which ends on it; never sent."""

    code = "bot_disowned"


class TurnSuperseded(Conflict):
    """A turn's lease was taken by another turn of the same conversation (it lapsed while Redis was away
    and recovery re-ran the turn): the old turn's write was refused and it ends. Raised inside a turn;
    never sent."""

    code = "turn_superseded"


class TooLarge(SwitchboardError):
    """The content is larger than the server accepts."""

    code = "too_large"
    http_status = 413
    ws_close_code = 1009


class KnowledgeConflict(Conflict):
    """The change conflicts with the knowledge as it is now (a stale base version, a name of the other kind,
    removing the policy)."""

    code = "knowledge_conflict"


class EvaluationRunning(Conflict):
    """An evaluation run is already under way in this workspace (one at a time)."""

    code = "evaluation_running"


class UnsupportedType(ValidationFailed):
    """An attachment whose content is not an accepted type, or not the type it was declared to be."""

    code = "unsupported_type"
    http_status = 415


class RateLimited(SwitchboardError):
    """Too many requests."""

    code = "rate_limited"
    http_status = 429
    ws_close_code = 1008

    def __init__(
        self, message: str | None = None, *, retry_after_s: int | None = None, limit: str | None = None
    ) -> None:
        super().__init__(message)
        # Seconds until a retry can succeed (HTTP ``Retry-After``); None: unknown (a per-socket limit).
        self.retry_after_s = retry_after_s
        # Which limit refused (a ``SWITCHBOARD_LIMIT_*`` name in lower case), for logs and metrics.
        self.limit = limit


class ServiceUnavailable(SwitchboardError):
    """A dependency is not reachable."""

    code = "unavailable"
    http_status = 503
    ws_close_code = 1011


# Redis failures that say it cannot be reached or cannot serve right now (down, restarting, loading its
# data, a failover in progress), as opposed to a command it refused: that is a bug on our side.
REDIS_OUTAGES: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # refused, reset, or no pooled connection came free in time
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a replica being promoted
    redis_errors.MasterDownError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
)
# The database cannot be reached or gave up (a lost connection, a pool with no connection in time,
# SQLite's "database is locked" after its busy timeout).
DATABASE_OUTAGES: tuple[type[BaseException], ...] = (sql_errors.OperationalError, sql_errors.TimeoutError)


def unavailable_from(exc: BaseException) -> ServiceUnavailable | None:
    """The typed ``unavailable`` for a failure of a dependency (Redis, the database), else None.

    Raised by the client libraries, not by us, so every edge (the HTTP error mapping, the sockets) asks
    here instead of knowing each library's exceptions. A refused command or a constraint violation is not
    an outage: it stays a bug (``internal_error``).
    """
    if isinstance(exc, ServiceUnavailable):
        return exc
    if isinstance(exc, REDIS_OUTAGES):
        return ServiceUnavailable("the conversation store is unreachable; try again")
    if isinstance(exc, DATABASE_OUTAGES) or (
        isinstance(exc, sql_errors.DBAPIError) and exc.connection_invalidated
    ):
        return ServiceUnavailable("the database is unreachable; try again")
    if isinstance(exc, ConnectionError):  # a driver that does not wrap its socket errors (asyncpg connecting)
        return ServiceUnavailable("a dependency is unreachable; try again")
    return None


def one_line(exc: BaseException) -> str:
    """``exc`` as one line (a driver's message may span several), with its type when it says nothing."""
    words = " ".join(str(exc).split())
    return words or type(exc).__name__


class InternalError(SwitchboardError):
    """A bug or an unexpected failure; logged with its traceback, never described to the client."""

    code = "internal_error"
    http_status = 500
    ws_close_code = 1011


# --- model API -----------------------------------------------------------------------------------


class ModelError(SwitchboardError):
    """The model API call failed."""

    code = "model_error"
    http_status = 502


class ModelUnavailable(ModelError):
    """The model API is unreachable, overloaded or timed out after retries; callers fall back."""

    code = "model_unavailable"
    http_status = 503


class CircuitOpen(ModelUnavailable):
    """The breaker for this model is open; the call was not attempted."""

    code = "circuit_open"


class OverBudget(ModelUnavailable):
    """The shared requests/tokens-per-minute budget has no room within the allowed wait."""

    code = "over_budget"
    http_status = 429


class ModelRejected(ModelError):
    """The model API refused the request (4xx other than 408/409/429): a bug on our side, not retried."""

    code = "model_rejected"


class ModelRetriesExhausted(ModelUnavailable):
    """Every allowed attempt at the model API failed with a retryable error."""

    code = "model_unavailable"

    def __init__(self, message: str | None = None, *, last_status: int | None, attempts: int) -> None:
        super().__init__(message)
        # HTTP status of the last failed attempt (None: connection error or timeout), for logs and callers.
        self.last_status = last_status
        self.attempts = attempts


class ModelTimedOut(ModelUnavailable):
    """The model API call exceeded its purpose's deadline, or a started stream stalled."""

    code = "model_timeout"


class UnpricedModel(ConfigurationError):
    """The model has no entry in the price table, so its calls cannot be costed."""

    code = "unpriced_model"


# --- conversation --------------------------------------------------------------------------------


class InvalidTransition(Conflict):
    """The conversation's state does not allow this event (e.g. releasing a conversation no agent holds)."""

    code = "invalid_transition"
