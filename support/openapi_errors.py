"""The served OpenAPI document says what each operation really answers, errors included.

Every error Switchboard answers is ``{"error": {"code", "message", "details"?}}`` (``support.app`` maps every
exception to it), never Litestar's ``{"status_code", "detail"}``. Two sources say which statuses an
operation answers:

- its handler, with Litestar's ``responses=`` (:func:`errors`): what its own code raises (404, 409, 429,
  503 for a handler that reaches Redis or the database ...);
- :func:`describe_errors`, for what the app does in front of every handler, which Litestar cannot see:
  400 for a malformed query or body (and a NUL in a query string), 413 for a body over the size limit,
  500 for a bug, 401 for a route with a security requirement (the guards), 403 when that requirement
  names a role or scope (``admin``, ``tickets:write`` ...), 429 for a route behind an integration key
  (failed key attempts are limited per address).

:func:`describe_errors` then gives every error response the one ``Error`` body and a 429 its
``Retry-After`` header. An operation lists each status it can answer: no ``4XX`` catch-all.
"""

from __future__ import annotations

from http import HTTPStatus

from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)

ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["code", "message"],
            properties={
                "code": Schema(type=OpenAPIType.STRING, description="Stable code to branch on."),
                "message": Schema(type=OpenAPIType.STRING, description="For people; may change."),
                "details": Schema(
                    type=OpenAPIType.ARRAY,
                    items=Schema(type=OpenAPIType.OBJECT),
                    description="Validation failures, one per field (`invalid_request` only).",
                ),
            },
        )
    },
    description="Every error Switchboard answers (docs/protocol.md, Errors).",
)

AGENT_TOKEN = "agentToken"
ADMIN_ROLE = "admin"
# A route any signed-in agent may use, and one for admins only (OpenAPI 3.1: a bearer scheme's
# requirement may list the roles it needs).
AGENT_SECURITY: list[SecurityRequirement] = [{AGENT_TOKEN: []}]
ADMIN_SECURITY: list[SecurityRequirement] = [{AGENT_TOKEN: [ADMIN_ROLE]}]
INTEGRATION_KEY = "integrationKey"


def integration_security(*scopes: str) -> list[SecurityRequirement]:
    """A route behind an integration key with these scopes (none: any live key)."""
    return [{INTEGRATION_KEY: list(scopes)}]


SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    AGENT_TOKEN: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description=(
            "`Authorization: Bearer <token>` with the `token` of `POST /api/v1/agent/login`. 401 without a "
            "valid, current token; 403 on an admin route for an agent. The agent WebSocket takes the same "
            "token as `?token=` (see /schema/asyncapi.json)."
        ),
    ),
    INTEGRATION_KEY: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="sbk_…",
        description=(
            "`Authorization: Bearer sbk_…` with an integration key an admin created (docs/tickets.md). 401 "
            "(with `WWW-Authenticate: Bearer`) for a missing, unknown or revoked key; 403 for a key without "
            "the scope the route names; 429 for an address with too many failed attempts."
        ),
    ),
}

# What each status means wherever it is answered.
DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request: a query or body that fails validation (`invalid_request`, with `details`), "
    "JSON nested too deep (`too_deep`), a NUL character",
    401: "Missing, invalid, expired or revoked credentials (`unauthorized`)",
    403: "Not allowed (`forbidden`)",
    404: "No such resource (`not_found`)",
    409: "The resource's state does not allow this (`conflict`, `invalid_transition`)",
    413: "The body is larger than `SWITCHBOARD_HTTP_MAX_BODY_BYTES` (`too_large`)",
    429: "Too many requests (`rate_limited`); `Retry-After` says when to try again",
    500: "A bug (`internal_error`); logged, never described",
    503: "Redis or the database cannot be reached (`unavailable`); try again",
}

RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=0),
    required=True,
    description="Seconds until a retry can succeed.",
)


def errors(*statuses: int, **described: str) -> dict[int, ResponseSpec]:
    """A handler's ``responses=``: the error statuses its own code can answer (body and headers are added
    by :func:`describe_errors`). ``described`` overrides a status's description: ``errors(409,
    s403="...")``."""
    specs: dict[int, ResponseSpec] = {}
    for status in statuses:
        description = described.get(f"s{status}", DESCRIPTIONS.get(status, HTTPStatus(status).phrase))
        specs[status] = ResponseSpec(data_container=None, description=description, generate_examples=False)
    return specs


def components() -> Components:
    """What ``OpenAPIConfig`` starts from: the agent token scheme (the ``Error`` body is added by
    :func:`describe_errors`: Litestar replaces the schemas with the ones it generates)."""
    return Components(security_schemes=SECURITY_SCHEMES)


def _operations(openapi: OpenAPI) -> list[Operation]:
    methods = ("get", "put", "post", "delete", "patch")
    return [
        op
        for item in (openapi.paths or {}).values()
        for op in (getattr(item, method) for method in methods)
        if isinstance(op, Operation)
    ]


def _implied_statuses(operation: Operation) -> list[int]:
    """What the app in front of the handler can answer for this operation."""
    statuses = [400, 500]
    if operation.request_body is not None:
        statuses.append(413)
    requirements: list[SecurityRequirement] = list(operation.security or [])
    if requirements:
        statuses.append(401)
    if any(roles for requirement in requirements for roles in requirement.values()):
        statuses.append(403)
    if any(INTEGRATION_KEY in requirement for requirement in requirements):
        statuses.append(429)
    return statuses


def describe_errors(openapi: OpenAPI) -> None:
    """Add the statuses every operation can answer through the app, and point every error response at the
    ``Error`` body (in place). A response a handler documented with a body of its own (``/readyz``'s 503)
    keeps it; Litestar's own 400 (``{"status_code", "detail"}``) does not."""
    if isinstance(openapi.components, Components):
        openapi.components.schemas["Error"] = ERROR_SCHEMA
    envelope = {"application/json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Error"))}
    for operation in _operations(openapi):
        responses: dict[str, OpenAPIResponse | Reference] = dict(operation.responses or {})
        for implied in _implied_statuses(operation):
            responses.setdefault(str(implied), OpenAPIResponse(description=DESCRIPTIONS[implied]))
        for status, response in responses.items():
            if status[0] not in "45" or not isinstance(response, OpenAPIResponse):
                continue
            if status == "400":
                response.description = DESCRIPTIONS[400]
            if response.content is None or status == "400":
                response.content = dict(envelope)
            if status == "429":
                response.headers = {"Retry-After": RETRY_AFTER}
        operation.responses = dict(sorted(responses.items()))
