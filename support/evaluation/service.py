"""``switchboard eval`` end to end: resolve the knowledge, open an isolated environment (its own Redis and
a scratch ledger database), run the cases (and the ``--compare`` version), write the report, apply the
``--fail-under`` gate. The CLI (support/cli.py) only parses arguments and prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handoff.examples import ExampleService
from handoff.routing import RoutingPolicy
from handoff.scrub import (
    AGENT_NAME_PLACEHOLDER,
    DEFAULT_REFERENCE_PATTERNS,
    MIN_NAME_PART_CHARS,
    NAME_PLACEHOLDER,
    ExampleScrubber,
    review_flags,
)
from handoff.scrub import People as ScrubPeople
from support.conversation.store import ConversationStore
from support.db.engine import make_engine, session_factory
from support.db.migrate import upgrade_to_head
from support.embedded_redis import EmbeddedRedis
from support.errors import NotFound, SwitchboardError
from support.evaluation import report as rep
from support.evaluation.cases import Case, load_cases
from support.evaluation.export import People
from support.evaluation.runner import EvalEnv, Evaluator, Progress, stderr_progress
from support.knowledge.service import KnowledgeService
from support.llm.gateway import ModelGateway, make_client
from support.llm.policy import Policy, load_policy
from support.redaction import Redactor
from support.redis_client import RedisClient, cluster_client, is_cluster, single_client
from support.settings import REDACTION_KINDS, Settings

log = logging.getLogger(__name__)

# The evaluation keeps to the account's rate limits (SWITCHBOARD_LLM_*_PER_MINUTE, counted in its own Redis)
# but waits for budget instead of failing over: a case answered by the offline responder because the
# suite ran faster than the limit would grade the limit, not the knowledge.
EVAL_BUDGET_WAIT_S = 120.0
EVAL_TURN_DEADLINE_S = 180.0  # above the budget wait, so a waiting turn is not cut off as a stalled model


class EvalArgumentError(SwitchboardError):
    """An ``eval`` argument cannot be used (unknown version, unreadable policy, no model API)."""

    code = "eval_arguments"


@dataclass
class EvalOptions:
    """The parsed command line."""

    cases: Path
    out: Path
    knowledge_version: str | None = None
    policy: Path | None = None
    batch: bool = False
    compare: str | None = None
    fail_under: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class EvalOutcome:
    """What the CLI prints and its exit code."""

    report: dict[str, Any]
    misses: list[str]

    @property
    def exit_code(self) -> int:
        return 1 if self.misses else 0


async def resolve_policy(settings: Settings, version: str | None, policy_file: Path | None) -> Policy:
    """The knowledge to evaluate: a file, a stored version, or the version activated last (else the
    configured policy file, as a fresh install would seed it)."""
    if policy_file is not None:
        try:
            return load_policy(policy_file)
        except SwitchboardError as exc:
            raise EvalArgumentError(exc.message) from exc
    engine = make_engine(settings.database_url)
    try:
        found = await KnowledgeService.policy_in(session_factory(engine), version)
    except NotFound as exc:
        raise EvalArgumentError(exc.message) from exc
    except Exception as exc:
        if version is not None:
            raise EvalArgumentError(f"cannot read knowledge version {version!r}: {exc}") from exc
        log.warning(
            "the configured database holds no knowledge (%s); using the policy file", type(exc).__name__
        )
        found = None
    finally:
        await engine.dispose()
    if found is not None:
        return found
    try:
        return load_policy(settings.policy.path)
    except SwitchboardError as exc:
        raise EvalArgumentError(exc.message) from exc


@contextlib.asynccontextmanager
async def open_env(settings: Settings, *, redis_url: str | None = None) -> AsyncIterator[EvalEnv]:
    """An isolated environment: a Redis of its own (an embedded one unless ``redis_url`` is given, which
    tests use), a scratch SQLite database for the ledger, a gateway on both, and the configured database's
    approved examples (read only; none when it has none). Everything is closed and removed at the end."""
    llm = settings.llm.model_copy(update={
        "budget_wait_s": max(settings.llm.budget_wait_s, EVAL_BUDGET_WAIT_S),
        "turn_deadline_s": max(settings.llm.turn_deadline_s, EVAL_TURN_DEADLINE_S),
    })  # fmt: skip
    if llm.offline:
        raise EvalArgumentError(
            "ANTHROPIC_API_KEY is not set: an evaluation needs the model API "
            "(or a fake one at ANTHROPIC_BASE_URL)"
        )
    with tempfile.TemporaryDirectory(prefix="switchboard-eval-") as tmp:
        embedded: EmbeddedRedis | None = None
        if redis_url is None:
            embedded = EmbeddedRedis(Path(tmp) / "redis", persistent=False)
            await asyncio.to_thread(embedded.start, settings.redis.embedded_start_timeout_s)
            redis_url = embedded.url
        scratch_url = f"sqlite+aiosqlite:///{Path(tmp) / 'eval-ledger.sqlite3'}"
        await upgrade_to_head(scratch_url)
        scratch_engine = make_engine(scratch_url)
        production_engine = make_engine(settings.database_url)
        client: RedisClient = (
            cluster_client(redis_url, decode_responses=False)
            if is_cluster(redis_url)
            else single_client(redis_url, decode_responses=False)
        )
        anthropic_client = make_client(llm)
        try:
            hs = settings.handoff
            examples: ExampleService | None = ExampleService(session_factory(production_engine), client)
            try:
                await examples.refresh()  # type: ignore[union-attr]
            except Exception as exc:
                log.warning(
                    "no examples from the configured database (%s); evaluating without", type(exc).__name__
                )
                examples = None
            yield EvalEnv(
                store=ConversationStore(client),
                gateway=ModelGateway(
                    anthropic_client, client, session_factory(scratch_engine), llm,
                    redactor=Redactor(settings.redaction),
                ),
                scratch=session_factory(scratch_engine),
                settings=llm,
                routing=RoutingPolicy(
                    confidence_threshold=hs.confidence_threshold, intent_thresholds=hs.intent_thresholds,
                    negative_sentiment=hs.negative_sentiment, max_bot_turns=hs.max_bot_turns,
                    repeat_similarity=hs.repeat_similarity,
                ),
                examples=examples,
                examples_in_prompt=hs.examples_in_prompt,
                examples_min_score=hs.examples_min_score,
            )  # fmt: skip
        finally:
            await anthropic_client.close()
            await client.aclose()
            await scratch_engine.dispose()
            await production_engine.dispose()
            if embedded is not None:
                embedded.stop()


async def run_cases(
    env: EvalEnv, cases: list[Case], policy: Policy, *, batch: bool, label: str, progress: Progress
) -> list[Any]:
    evaluator = Evaluator(env, policy, progress=progress)
    if batch:
        return await evaluator.run_batch(cases, label=label)
    return await evaluator.run(cases, label=label)


async def evaluate(
    settings: Settings,
    options: EvalOptions,
    *,
    redis_url: str | None = None,
    progress: Progress = stderr_progress,
    batch_poll_s: float | None = None,
) -> EvalOutcome:
    """Run ``switchboard eval``; :class:`CasesInvalid` or :class:`EvalArgumentError` for bad input."""
    cases = load_cases(options.cases)
    policy = await resolve_policy(settings, options.knowledge_version, options.policy)
    other = await resolve_policy(settings, options.compare, None) if options.compare else None
    progress(
        f"{len(cases)} cases, knowledge version {policy.version}"
        + (f", compared with {other.version}" if other else "")
    )
    async with open_env(settings, redis_url=redis_url) as env:
        if batch_poll_s is not None:
            env.batch_poll_s = batch_poll_s
        results = await run_cases(env, cases, policy, batch=options.batch, label="", progress=progress)
        other_results = None
        if other is not None:
            other_results = await run_cases(
                env, cases, other, batch=options.batch, label=f"[{other.version}] ", progress=progress
            )
    report = rep.Report(
        cases=cases, results=results, knowledge_version=policy.version, batch=options.batch,
        compare_version=other.version if other else None, compare_results=other_results,
    )  # fmt: skip
    data = rep.write(report, options.out)
    return EvalOutcome(report=data, misses=rep.below(data["summary"], options.fail_under))


class ExportScrubber:
    """``switchboard eval export``'s scrubbing: the one stored examples get (support/runtime.py builds the
    same), PII detection on whatever the redaction of model calls is set to."""

    def __init__(self, settings: Settings) -> None:
        self._scrubber = ExampleScrubber(
            Redactor(settings.redaction.model_copy(update={"enabled": True, "kinds": list(REDACTION_KINDS)})),
            reference_patterns={**DEFAULT_REFERENCE_PATTERNS, **settings.handoff.examples_reference_patterns},
        )

    def scrub(self, text: str, people: People) -> str:
        who = ScrubPeople(people.customer_name, people.customer_email, people.agent_name)
        out = self._scrubber.scrub(text, who).text
        # Stricter than examples, which match the parts of a name only as written ("Will" the name,
        # not "will" the verb): an exported file leaves the product, so a name part is replaced in any
        # case, at the price of the odd common word.
        for name, placeholder in ((people.customer_name, NAME_PLACEHOLDER),
                                  (people.agent_name, AGENT_NAME_PLACEHOLDER)):  # fmt: skip
            for part in sorted(set(re.split(r"[\s,.]+", name or "")), key=len, reverse=True):
                if len(part) >= MIN_NAME_PART_CHARS:
                    out = re.sub(rf"(?<!\w){re.escape(part)}(?!\w)", placeholder, out, flags=re.IGNORECASE)
        return out

    def leaks(self, text: str) -> bool:
        return "pii_shaped" in review_flags(self._scrubber, question=text, reply=text)
