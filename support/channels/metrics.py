"""``GET /metrics``: the Prometheus scrape endpoint (text exposition format), a thin handler over
:mod:`support.metrics`.

With ``SWITCHBOARD_METRICS_TOKEN`` set a scrape must send ``Authorization: Bearer <token>`` (compared in
constant time; a token anywhere else, such as the query string, is not looked at); unset, the endpoint is
open (docs/security.md). The handoff queue's depth is read from Redis for each scrape; Redis not answering
leaves that one family out rather than failing the scrape.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from litestar import Request, Response, get
from litestar.datastructures import State

from support import metrics
from support.errors import REDIS_OUTAGES, Unauthorized
from support.runtime import Runtime

log = logging.getLogger(__name__)

QUEUE_DEPTH_TIMEOUT_S = 2.0  # a scrape must answer within Prometheus's scrape timeout, Redis or not
CHALLENGE = 'Bearer realm="metrics"'


def check_token(expected: str | None, authorization: str | None) -> None:
    """Return when the scrape may read the metrics; else :class:`Unauthorized` with a Bearer challenge."""
    if expected is None:
        return
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise Unauthorized("a valid metrics token is required", challenge=CHALLENGE)


async def _queue_depth(runtime: Runtime) -> int | None:
    try:
        async with asyncio.timeout(QUEUE_DEPTH_TIMEOUT_S):
            return await runtime.queue.depth()
    except REDIS_OUTAGES as exc:
        log.warning("metrics: queue depth left out, Redis unreachable (%r)", exc)
    except TimeoutError:
        log.warning("metrics: queue depth left out, Redis did not answer in %s s", QUEUE_DEPTH_TIMEOUT_S)
    return None


@get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request[object, object, State], runtime: Runtime) -> Response[bytes]:
    """The Prometheus text exposition of this process (of every process of the host in multiprocess mode)."""
    token = runtime.settings.metrics.token
    check_token(token.get_secret_value() if token else None, request.headers.get("authorization"))
    body = metrics.render(await _queue_depth(runtime))
    return Response(body, media_type=metrics.CONTENT_TYPE)
