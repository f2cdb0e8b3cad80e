"""Evaluation runs started from the console (``POST /api/v1/admin/evaluations``), run as jobs.

An admin picks a knowledge version (a draft, usually), optionally another to compare it with (default: the
active one) and a case file (uploaded JSONL, default the shipped starter set). The run is a job on the job
engine (support/jobs.py), so any worker process may carry it out, and it calls the same evaluation as
``switchboard eval --compare`` (support/evaluation/service.py): the same isolated environment, the same
turn pipeline, judge and report. Its record lives in Redis (``keys.evaluation_run``): what it evaluates,
how many cases are done out of how many, and at the end the report (both summaries, the changed cases,
the costs).

One run at a time per workspace: starting one takes the run slot (``keys.evaluation_running``) in the same
Lua script that writes the run's record, so two admins pressing "Run" at once get one run and one 409.
The running job renews the slot after every case; if its worker dies, the slot lapses after
``SWITCHBOARD_EVAL_LEASE_S`` and the run reads as failed (its record still says running, but it no longer
holds the slot), so nobody waits on a run that will never finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from support import keys
from support.errors import (
    EvaluationRunning,
    NotFound,
    ServiceUnavailable,
    SwitchboardError,
    TooLarge,
    ValidationFailed,
)
from support.evaluation import report as rep
from support.evaluation.cases import Case, parse_cases
from support.evaluation.runner import Evaluator
from support.evaluation.service import open_env
from support.jobs import JobEngine
from support.knowledge.service import KnowledgeService
from support.redis_client import RedisClient
from support.settings import EvaluationSettings, Settings

log = logging.getLogger(__name__)

RUN_JOB = "evaluation-run"
RECENT_MAX = 20  # runs the list endpoint (and the Evaluate screen's history) shows
STARTER_SOURCE = "starter"
UPLOAD_SOURCE = "upload"
LOST = "the run stopped before it finished (its worker ended or never took it); start it again"

# Take the run slot and write the run's record, or name the run that holds the slot.
# KEYS: running, run, recent. ARGV: run id, lease ms, keep s, recent max, field, value, ...
_START = """
local holder = redis.call('GET', KEYS[1])
if holder then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
return false
"""
# Renew the slot if this run still holds it. KEYS: running. ARGV: run id, lease ms. Returns 1 | 0.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Free the slot if this run holds it. KEYS: running. ARGV: run id.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class RunView:
    """One evaluation run as the API shows it. ``done`` / ``total`` count cases run (each case once per
    version); ``report`` is the finished run's report.json (``compare`` included when two versions ran)."""

    id: str
    status: str  # queued | running | finished | failed
    knowledge_version: str
    compare_version: str | None
    cases_source: str  # starter | upload
    cases: int
    done: int
    total: int
    created_by: str | None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    cost_usd: float | None = None  # both versions' runs together, the judge's calls included
    report: dict[str, Any] | None = None


def starter_cases_path(settings: EvaluationSettings) -> Path:
    """The starter case set: the setting, else the source checkout's ``evals/``, else ``./evals/``."""
    if settings.starter_cases is not None:
        return settings.starter_cases
    beside_package = Path(__file__).resolve().parents[2] / "evals" / "starter.jsonl"
    if beside_package.is_file():
        return beside_package
    return Path.cwd() / "evals" / "starter.jsonl"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _str(value: bytes | str | None) -> str | None:
    """A Redis reply as text (the service's client answers bytes); None for a missing or empty value."""
    if not value:
        return None
    return value.decode() if isinstance(value, bytes) else value


class EvaluationRuns:
    """Start, follow and carry out evaluation runs (the job function is :meth:`execute`)."""

    def __init__(
        self,
        redis: RedisClient,
        sessions: async_sessionmaker[AsyncSession],
        jobs: JobEngine,
        knowledge: KnowledgeService,
        settings: Settings,
    ) -> None:
        self._redis = redis
        self._sessions = sessions
        self._jobs = jobs
        self._knowledge = knowledge
        self._settings = settings
        self.limits = settings.evaluation
        self._start = redis.register_script(_START)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def register_jobs(self, jobs: JobEngine) -> None:
        jobs.register(RUN_JOB, self.execute)

    # --- starting --------------------------------------------------------------------------------

    def _cases(self, text: str | None) -> tuple[str, str, list[Case]]:
        """(source, JSONL text, parsed cases) of an upload, or of the starter set when there is none."""
        source = UPLOAD_SOURCE
        if text is None:
            source = STARTER_SOURCE
            try:
                text = starter_cases_path(self.limits).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValidationFailed(
                    "no case file was uploaded and the starter set cannot be read "
                    "(SWITCHBOARD_EVAL_STARTER_CASES); upload a case file"
                ) from exc
        if len(text) > self.limits.max_upload_chars:
            raise TooLarge(
                f"the case file has {len(text)} characters; at most {self.limits.max_upload_chars} "
                "(SWITCHBOARD_EVAL_MAX_UPLOAD_CHARS)"
            )
        cases = parse_cases(text, source="cases")  # CasesInvalid (400) names every bad line
        if len(cases) > self.limits.max_cases:
            raise TooLarge(
                f"the case file has {len(cases)} cases; a run holds at most {self.limits.max_cases} "
                "(SWITCHBOARD_EVAL_MAX_CASES)"
            )
        return source, text, cases

    async def start(
        self, *, knowledge_version: str, compare: str | None, cases: str | None, by: str | None
    ) -> RunView:
        """Queue a run of ``cases`` against ``knowledge_version``, compared with ``compare`` (default: the
        active version; the same version as the one evaluated: no comparison)."""
        if self._settings.llm.offline:
            raise ServiceUnavailable(
                "no model API key is set (offline mode): an evaluation needs the model API"
            )
        source, text, parsed = self._cases(cases)
        await self._knowledge.version(knowledge_version, with_text=False)  # NotFound: 404
        other: str | None = compare if compare is not None else self._knowledge.active.version
        if compare is not None:
            await self._knowledge.version(compare, with_text=False)
        if other == knowledge_version:
            other = None  # evaluating the active version itself: one run, nothing to compare
        run_id = secrets.token_hex(8)
        fields: dict[str, str] = {
            "id": run_id, "status": "queued", "knowledge_version": knowledge_version,
            "compare_version": other or "", "cases_source": source, "cases": str(len(parsed)),
            "done": "0", "total": str(len(parsed) * (2 if other else 1)), "created_by": by or "",
            "created_at": _now(), "cases_text": text,
        }  # fmt: skip
        args: list[str | int] = [run_id, self.limits.lease_s * 1000, self.limits.keep_s, RECENT_MAX]
        for name, value in fields.items():
            args += [name, value]
        holder = await self._start(
            keys=[keys.evaluation_running(), keys.evaluation_run(run_id), keys.evaluation_recent()], args=args
        )
        if holder is not None:
            held = holder.decode() if isinstance(holder, bytes) else str(holder)
            raise EvaluationRunning(f"evaluation run {held} is under way; one run at a time")
        try:
            await self._jobs.enqueue(
                RUN_JOB, key=f"evaluation:{run_id}", timeout_s=self.limits.run_timeout_s, run_id=run_id
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self._fail(run_id, "the run could not be queued")
            raise
        log.info("evaluation run %s queued by %s: version %s vs %s, %d cases (%s)",
                 run_id, by, knowledge_version, other, len(parsed), source)  # fmt: skip
        return await self.get(run_id)

    # --- reading ---------------------------------------------------------------------------------

    async def get(self, run_id: str, *, with_report: bool = True) -> RunView:
        """One run; :class:`NotFound` for an unknown (or expired) id."""
        names = [
            "id", "status", "knowledge_version", "compare_version", "cases_source", "cases", "done", "total",
            "created_by", "created_at", "started_at", "finished_at", "error", "cost_usd",
        ]  # fmt: skip
        if with_report:
            names.append("report")
        values = await self._redis.hmget(keys.evaluation_run(run_id), names)
        raw = {name: _str(value) for name, value in zip(names, values, strict=True)}
        if not raw["id"]:
            raise NotFound(f"no evaluation run {run_id!r}")
        status = raw["status"] or "failed"
        error = raw["error"]
        if status in ("queued", "running") and not await self._holds(run_id):
            status, error = "failed", LOST
        report, cost = raw.get("report"), raw["cost_usd"]
        return RunView(
            id=run_id, status=status, knowledge_version=raw["knowledge_version"] or "",
            compare_version=raw["compare_version"], cases_source=raw["cases_source"] or "",
            cases=int(raw["cases"] or 0), done=int(raw["done"] or 0), total=int(raw["total"] or 0),
            created_by=raw["created_by"], created_at=raw["created_at"] or "", started_at=raw["started_at"],
            finished_at=raw["finished_at"], error=error, cost_usd=float(cost) if cost else None,
            report=json.loads(report) if report else None,
        )  # fmt: skip

    async def recent(self) -> list[RunView]:
        """The latest runs, newest first, without their reports (expired ones left out)."""
        ids = await self._redis.lrange(keys.evaluation_recent(), 0, RECENT_MAX - 1)
        out = []
        for raw_id in ids:
            with contextlib.suppress(NotFound):
                out.append(await self.get(_str(raw_id) or "", with_report=False))
        return out

    async def _holds(self, run_id: str) -> bool:
        return _str(await self._redis.get(keys.evaluation_running())) == run_id

    # --- carrying out (the job) ------------------------------------------------------------------

    async def _set(self, run_id: str, **fields: str) -> None:
        await self._redis.hset(keys.evaluation_run(run_id), mapping=fields)  # type: ignore[arg-type]

    async def _fail(self, run_id: str, error: str) -> None:
        await self._set(run_id, status="failed", error=error, finished_at=_now())
        await self._redis.hdel(keys.evaluation_run(run_id), "cases_text")
        await self._release(keys=[keys.evaluation_running()], args=[run_id])

    async def execute(self, *, run_id: str) -> None:
        """The job: run the cases against the version (and the compared one), keep the report."""
        key = keys.evaluation_run(run_id)
        status, text = (_str(v) for v in await self._redis.hmget(key, ["status", "cases_text"]))
        if status != "queued" or text is None:
            # Expired, or a second attempt at a run that was cut short (it reads as failed already).
            log.warning("evaluation run %s: not queued (%r); nothing to do", run_id, status)
            return
        if not await self._renew(keys=[keys.evaluation_running()], args=[run_id, self.limits.lease_s * 1000]):
            await self._fail(run_id, LOST)
            return
        await self._set(run_id, status="running", started_at=_now())
        try:
            await self._run(run_id, text)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._fail(run_id, "the run was stopped (its worker shut down)"))
            raise
        except SwitchboardError as exc:
            log.warning("evaluation run %s failed: %s", run_id, exc.message)
            await self._fail(run_id, exc.message)
        except Exception:
            log.exception("evaluation run %s failed", run_id)
            await self._fail(run_id, "internal error (the server log has the details)")

    async def _run(self, run_id: str, text: str) -> None:
        stored = await self._redis.hmget(
            keys.evaluation_run(run_id), ["knowledge_version", "compare_version"]
        )
        version, other_version = (_str(v) for v in stored)
        cases = parse_cases(text, source="cases")
        policy = await KnowledgeService.policy_in(self._sessions, version) if version else None
        other = await KnowledgeService.policy_in(self._sessions, other_version) if other_version else None
        if policy is None or (other_version and other is None):
            raise NotFound("a knowledge version of this run is gone")
        done = 0

        async def on_case() -> None:
            nonlocal done
            done += 1
            await self._set(run_id, done=str(done))
            await self._renew(keys=[keys.evaluation_running()], args=[run_id, self.limits.lease_s * 1000])

        def progress(line: str) -> None:
            log.debug("evaluation run %s: %s", run_id, line)

        async with open_env(self._settings) as env:
            results = await Evaluator(env, policy, progress=progress, on_case=on_case).run(cases)
            other_results = None
            if other is not None:
                evaluator = Evaluator(env, other, progress=progress, on_case=on_case)
                other_results = await evaluator.run(cases, label=f"[{other.version}] ")
        report = rep.Report(
            cases=cases, results=results, knowledge_version=policy.version, batch=False,
            compare_version=other.version if other else None, compare_results=other_results,
        ).to_json()  # fmt: skip
        cost = report["summary"]["cost_usd"] + (report["compare"]["summary"]["cost_usd"] if other else 0.0)
        await self._set(
            run_id, status="finished", finished_at=_now(), report=json.dumps(report, ensure_ascii=False),
            cost_usd=f"{cost:.6f}",
        )  # fmt: skip
        await self._redis.hdel(keys.evaluation_run(run_id), "cases_text")
        await self._release(keys=[keys.evaluation_running()], args=[run_id])
        log.info("evaluation run %s finished: %d cases, %.6f USD", run_id, len(cases), cost)
