"""Liveness and readiness: thin handlers over the runtime's clients."""

from __future__ import annotations

import asyncio

from litestar import Response, get
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from support.db.engine import ping
from support.redis_client import ping as ping_redis
from support.runtime import Runtime

READY_CHECK_TIMEOUT_S = 2.0  # a load balancer's probe must get an answer, not hang with a dead dependency


@get("/healthz", tags=["operations"], summary="The process is up")
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@get(
    "/readyz", tags=["operations"], summary="Redis and the database are reachable",
    responses={
        503: ResponseSpec(
            data_container=dict[str, str], generate_examples=False,
            description="Not ready (a check failed, or the process is draining): the same checks as a 200",
        )
    },
)  # fmt: skip
async def readyz(runtime: Runtime) -> Response[dict[str, str]]:
    """200 when Redis and SQL answer and the process is not draining; 503 otherwise."""
    checks: dict[str, str] = {}

    async def check(name: str, probe: asyncio.Future[object] | object) -> None:
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
                await probe  # type: ignore[misc]
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"

    await asyncio.gather(check("redis", ping_redis(runtime.redis)), check("database", ping(runtime.engine)))
    checks["model_api"] = "offline" if runtime.offline else "online"
    ready = checks["redis"] == "ok" and checks["database"] == "ok" and not runtime.draining.is_set()
    checks["status"] = "ready" if ready else ("draining" if runtime.draining.is_set() else "not ready")
    return Response(checks, status_code=HTTP_200_OK if ready else HTTP_503_SERVICE_UNAVAILABLE)
