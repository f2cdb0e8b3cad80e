"""Admin HTTP for evaluation runs: start one (a job), follow its progress, read its comparison.

Thin handlers over :class:`~support.evaluation.runs.EvaluationRuns`; the console's Evaluate screen uses
them. Admins only. See docs/evaluation.md ("From the console").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.status_codes import HTTP_202_ACCEPTED

from support.channels.staff import admin_guard, staff_id_of
from support.evaluation.runs import RunView
from support.openapi_errors import ADMIN_SECURITY, errors
from support.runtime import Runtime

S400 = "A malformed body, or a case file with bad lines (`cases_invalid`, each bad line named)"
S404 = "An unknown knowledge version (`not_found`)"
S409 = "Another evaluation run is under way in this workspace (`evaluation_running`)"
S413 = (
    "A case file over `SWITCHBOARD_EVAL_MAX_UPLOAD_CHARS` or with more cases than "
    "`SWITCHBOARD_EVAL_MAX_CASES`, or a body over `SWITCHBOARD_HTTP_MAX_BODY_BYTES` (`too_large`)"
)
S503 = "No model API key (offline mode), or Redis or the database unreachable (`unavailable`)"


@dataclass
class EvaluationIn:
    """What to evaluate: ``knowledge_version`` (a draft, usually), compared with ``compare`` (default: the
    active version), over ``cases`` (JSONL text, one case per line; default: the shipped starter set)."""

    knowledge_version: str
    compare: str | None = None
    cases: str | None = None


class EvaluationController(Controller):
    """``/api/v1/admin/evaluations``: evaluation runs of knowledge versions."""

    path = "/api/v1/admin/evaluations"
    tags = ["admin"]  # noqa: RUF012 - Litestar reads it as a class attribute
    guards = [admin_guard]  # noqa: RUF012
    security = ADMIN_SECURITY

    @post(
        "/", status_code=HTTP_202_ACCEPTED, summary="Start an evaluation run (one at a time per workspace)",
        responses=errors(404, 409, 503, s400=S400, s404=S404, s409=S409, s413=S413, s503=S503),
    )  # fmt: skip
    async def start(self, data: EvaluationIn, request: Request[Any, Any, Any], runtime: Runtime) -> RunView:
        """Queued as a job; ``GET /{id}`` follows it (cases done of total) and has its report at the end."""
        return await runtime.evaluations.start(
            knowledge_version=data.knowledge_version, compare=data.compare, cases=data.cases,
            by=staff_id_of(request),
        )  # fmt: skip

    @get("/", summary="The latest evaluation runs, newest first (without their reports)",
         responses=errors(503))  # fmt: skip
    async def recent(self, runtime: Runtime) -> list[RunView]:
        """At most 20; a run is kept ``SWITCHBOARD_EVAL_KEEP_S``."""
        return await runtime.evaluations.recent()

    @get("/{run_id:str}", summary="One evaluation run: its progress, and its report once finished",
         responses=errors(404, 503))  # fmt: skip
    async def run(self, run_id: str, runtime: Runtime) -> RunView:
        """``report`` holds both versions' summaries and the cases whose outcome or verdict changed."""
        return await runtime.evaluations.get(run_id)
