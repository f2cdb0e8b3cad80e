"""The served OpenAPI document describes the error envelope every error really has.

Litestar documents a handler's 400 with its own exception shape (``{"status_code", "detail", "extra"}``),
but ``support.app`` answers every error as ``{"error": {"code", "message", "details"?}}``. This rewrites
each documented error response to that envelope (one ``Error`` component) and adds a ``4XX`` response
to every operation, since any of them can refuse a request (too large, malformed, unauthorized ...).
"""

from __future__ import annotations

from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
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


def _operations(openapi: OpenAPI) -> list[Operation]:
    methods = ("get", "put", "post", "delete", "patch")
    return [
        op
        for item in (openapi.paths or {}).values()
        for op in (getattr(item, method) for method in methods)
        if isinstance(op, Operation)
    ]


def describe_error_envelope(openapi: OpenAPI) -> None:
    """Point every 4xx/5xx response of ``openapi`` at the ``Error`` component (in place)."""
    if openapi.components is None or isinstance(openapi.components, list):
        return
    openapi.components.schemas["Error"] = ERROR_SCHEMA
    envelope = {"application/json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Error"))}
    for operation in _operations(openapi):
        responses = operation.responses if operation.responses is not None else {}
        for status, response in responses.items():
            if status[0] in "45" and isinstance(response, OpenAPIResponse):
                response.content = dict(envelope)
        responses.setdefault(
            "4XX", OpenAPIResponse(description="The request was refused", content=dict(envelope))
        )
        operation.responses = responses
