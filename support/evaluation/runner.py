"""Runs evaluation cases through the production turn pipeline (or its prompts, through Message Batches),
grades them, and prices them from the ledger.

Isolation (docs/evaluation.md): an evaluation never touches the production stores. Its conversations live
in a Redis of their own (the CLI starts an embedded one in a temporary directory) under ids that start
with ``eval-``, and every model call's ledger row goes into a scratch SQLite database in a temporary
directory, so no report, fact or budget of the service ever counts them. Only the knowledge (the version
to evaluate) and the approved examples are *read* from the configured database: the prompt is then the
one production builds.

The streaming run drives :class:`support.conversation.pipeline.TurnRunner` exactly as the widget does
(``receive_customer_message`` then ``run``): the same triage, routing, answer prompt, examples and engine.
The batch run cannot stream, so it builds the same triage and answer requests with the same code
(:func:`support.llm.triage.triage_params`, :func:`support.llm.answer.build_answer_request`), sends them as
one Message Batch per round of turns, and routes them with the same routing policy and engine rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from anthropic.types import Message
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from support.conversation import engine as e
from support.conversation.pipeline import TurnDeps, TurnRunner
from support.conversation.ports import ExamplesPort, RoutingPort
from support.conversation.store import ConversationStore
from support.db.models import ModelUsage
from support.errors import ModelError
from support.evaluation.cases import Case
from support.evaluation.judge import (
    Verdict,
    combine,
    judge_request,
    parse_verdict,
    phrase_check,
)
from support.llm.answer import build_answer_request, draft_from_message, request_documents
from support.llm.gateway import CallPurpose, ModelGateway
from support.llm.offline import OfflineResponder
from support.llm.policy import Policy
from support.llm.triage import fallback_triage, parse_triage, redacted_triage_prompt, triage_params
from support.settings import LLMSettings

CONVERSATION_PREFIX = "eval-"  # eval conversations are recognisable in any log line or ledger row
WIDGET_KEY = "eval"
BATCH_POLL_S = 10.0  # how often a pending batch is polled (the API takes minutes to hours)
Progress = Callable[[str], None]


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class CaseResult:
    """One case's outcome as report.json carries it."""

    id: str
    outcome: str = "answered"  # answered | handed_off
    reason: str | None = None  # the handoff reason code
    replies: list[str] = field(default_factory=list)
    judge: Verdict | None = None
    cost_usd: Decimal = Decimal(0)
    intent: str | None = None
    conversation_id: str = ""
    transcript: list[tuple[str, str]] = field(default_factory=list)  # (customer|assistant, text)
    # Per reply (same order as ``replies``): the knowledge sections it cites (support.llm.grounding).
    sources: list[list[dict[str, str]]] = field(default_factory=list)


@dataclass
class EvalEnv:
    """What a run needs; the caller owns (and closes) every client in it."""

    store: ConversationStore  # on the evaluation's own Redis
    gateway: ModelGateway  # its ledger on the scratch database
    scratch: async_sessionmaker[AsyncSession]  # the scratch database (ledger rows of this run)
    settings: LLMSettings
    routing: RoutingPort
    examples: ExamplesPort | None = None
    examples_in_prompt: int = 3
    examples_min_score: float = 0.3
    batch_poll_s: float = BATCH_POLL_S


class Evaluator:
    """Runs a case set against one knowledge version."""

    def __init__(
        self,
        env: EvalEnv,
        policy: Policy,
        *,
        progress: Progress = stderr_progress,
        on_case: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.env = env
        self.policy = policy
        self.progress = progress
        # Awaited after each case of a streaming run is judged (the console's runs count cases done).
        self.on_case = on_case
        self.run_id = secrets.token_hex(4)

    def _cid(self, index: int) -> str:
        return f"{CONVERSATION_PREFIX}{self.run_id}-{index:05d}"

    # -- streaming: the real turn pipeline ------------------------------------------------------------

    async def run(self, cases: Sequence[Case], *, label: str = "") -> list[CaseResult]:
        """Run every case through the turn pipeline, one after another, then judge the answered ones."""
        env = self.env
        if env.examples is not None:
            await env.examples.refresh()
        tasks: set[asyncio.Task[None]] = set()

        def spawn(coro: Awaitable[None], name: str) -> asyncio.Task[None]:
            async def runner() -> None:
                await coro

            task = asyncio.create_task(runner(), name=name)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return task

        deps = TurnDeps(
            store=env.store, gateway=env.gateway, settings=env.settings, policy=self.policy,
            offline=OfflineResponder(self.policy.facts), turn_deadline_s=env.settings.turn_deadline_s,
            lease_s=env.settings.turn_lease_s, heartbeat_s=env.settings.turn_heartbeat_s,
            handoff=None, examples=env.examples, routing=env.routing,
            examples_in_prompt=env.examples_in_prompt, examples_min_score=env.examples_min_score,
        )  # fmt: skip
        turns = TurnRunner(deps, spawn)
        results: list[CaseResult] = []
        try:
            for index, case in enumerate(cases):
                self.progress(f"{label}case {index + 1}/{len(cases)} {case.id}")
                result = await self._run_case(turns, self._cid(index), case)
                result.judge = await self._judge_one(case, result)
                results.append(result)
                if self.on_case is not None:
                    await self.on_case()
        finally:
            if tasks:  # summaries folded after a turn: owned here, awaited before the run returns
                await asyncio.gather(*tasks, return_exceptions=True)
        await self._price(results)
        return results

    async def _run_case(self, turns: TurnRunner, cid: str, case: Case) -> CaseResult:
        store = self.env.store
        result = CaseResult(id=case.id, conversation_id=cid)
        await store.create_conversation(cid, widget_key=WIDGET_KEY, visitor={"id": cid})
        for n, text in enumerate(case.turns):
            event, _created, context = await store.receive_customer_message(
                cid, f"c{n}", text, now=datetime.now(UTC), lock_ttl_ms=turns.lock_ttl_ms
            )
            result.transcript.append(("customer", text))
            await turns.run(cid, event, context)
            verdict = await store.triage_of(cid, event.seq)
            if verdict is not None and verdict.get("intent"):
                result.intent = str(verdict["intent"])
            for later in await store.events_after(cid, event.seq):
                if later.type == "message" and later.role == "assistant":
                    result.replies.append(later.text)
                    result.sources.append(list(later.extra.get("sources") or []))
                    result.transcript.append(("assistant", later.text))
            state = await store.get_state(cid)
            if state is not None and state.state != str(e.State.BOT):
                result.outcome = "handed_off"
                result.reason = state.extra.get("handoff_reason") or "handed_off"
                break
            if not result.replies or result.transcript[-1][0] != "assistant":
                # The turn ended with neither a reply nor a handoff (it stays owed): a failure to answer.
                result.outcome, result.reason = "handed_off", "no_reply"
                break
        return result

    async def _judge_one(self, case: Case, result: CaseResult) -> Verdict | None:
        if result.outcome != "answered":
            return None
        params = self._judge_params(case, result)
        model = params.pop("model")
        try:
            reply = await self.env.gateway.create(
                purpose="other", model=model, conversation_id=result.conversation_id,
                policy_version=self.policy.version, **params,
            )  # fmt: skip
            judged: Verdict | None = parse_verdict(reply)
        except ModelError as exc:
            judged = Verdict(False, f"the judge call failed ({exc.code})")
        return combine(judged, phrase_check(case, result.replies))

    def _judge_params(self, case: Case, result: CaseResult) -> dict[str, Any]:
        # The customer's words reach the judge redacted, as they reach the answer model.
        texts = self.env.gateway.redactor.redact_many([text for _, text in result.transcript])
        transcript = [(role, r.text) for (role, _), r in zip(result.transcript, texts, strict=True)]
        return judge_request(
            case,
            self.policy.text,
            transcript,
            model=self.env.settings.triage_model,
            guidance=self.policy.guidance,
        )

    async def _price(self, results: list[CaseResult]) -> None:
        """Each case's cost: the sum of its calls' ledger rows (triage, answer, summary, judge)."""
        ids = [r.conversation_id for r in results]
        async with self.env.scratch() as session:
            rows = await session.execute(
                select(ModelUsage.conversation_id, func.sum(ModelUsage.cost_usd))
                .where(col(ModelUsage.conversation_id).in_(ids))
                .group_by(ModelUsage.conversation_id)
            )
            costs = {cid: Decimal(str(total or 0)) for cid, total in rows.all()}
        for result in results:
            result.cost_usd = costs.get(result.conversation_id, Decimal(0))

    # -- batch: the same prompts through Message Batches ---------------------------------------------

    async def run_batch(self, cases: Sequence[Case], *, label: str = "") -> list[CaseResult]:
        """Run the cases' turns as rounds of one batch each (turn k of every case still with the bot), then
        judge the answered ones in one more batch."""
        env = self.env
        if env.examples is not None:
            await env.examples.refresh()
        results = [CaseResult(id=c.id, conversation_id=self._cid(i)) for i, c in enumerate(cases)]
        history: list[list[tuple[str, str]]] = [[] for _ in cases]  # (user|assistant, text) per case
        taxonomy = env.settings.taxonomy
        open_cases = list(range(len(cases)))
        for round_no in range(max(len(c.turns) for c in cases)):
            live = [i for i in open_cases if round_no < len(cases[i].turns)]
            if not live:
                break
            requests: list[dict[str, Any]] = []
            for i in live:
                text = cases[i].turns[round_no]
                prompt, _ = redacted_triage_prompt(
                    env.gateway.redactor, message=text, summary="", recent=history[i][-6:]
                )
                triage_call = {"model": env.settings.triage_model, **triage_params(prompt, taxonomy)}
                requests.append({"custom_id": f"t-{i}", "params": triage_call})
                requests.append({"custom_id": f"a-{i}", "params": self._answer_params(text, history[i])})
            answers = await self._batch(requests, f"{label}round {round_no + 1}", self._purposes(results))
            for i in live:
                case, result = cases[i], results[i]
                text = case.turns[round_no]
                route_history = [("customer" if r == "user" else r, t) for r, t in history[i]]
                result.transcript.append(("customer", text))
                t_msg, a_msg = answers.get(f"t-{i}"), answers.get(f"a-{i}")
                t = fallback_triage(taxonomy)
                if t_msg is not None:
                    # An invalid verdict falls back (the streaming triage retries once first; a batch
                    # round would have to wait for a second batch).
                    with contextlib.suppress(ValueError):
                        t = parse_triage(t_msg, taxonomy)
                result.intent = t.intent
                reason = self._route(t, text, route_history, a_msg)
                if reason is not None:
                    result.outcome, result.reason = "handed_off", reason
                    open_cases.remove(i)
                    continue
                assert a_msg is not None  # _route hands off a missing answer
                draft = draft_from_message(a_msg, request_documents(self.policy))
                reply = draft.text
                result.replies.append(reply)
                result.sources.append(list(draft.sources))
                result.transcript.append(("assistant", reply))
                history[i] += [("user", text), ("assistant", reply)]
        answered = [i for i, r in enumerate(results) if r.outcome == "answered"]
        if answered:
            requests = [
                {"custom_id": f"j-{i}", "params": self._judge_params(cases[i], results[i])} for i in answered
            ]
            verdicts = await self._batch(requests, f"{label}judge", self._purposes(results))
            for i in answered:
                msg = verdicts.get(f"j-{i}")
                judged = parse_verdict(msg) if msg is not None else Verdict(False, "the judge call failed")
                results[i].judge = combine(judged, phrase_check(cases[i], results[i].replies))
        await self._price(results)
        return results

    def _answer_params(self, text: str, history: list[tuple[str, str]]) -> dict[str, Any]:
        env = self.env
        curated, retrieved = [], []
        if env.examples is not None:
            curated = env.examples.curated
            retrieved = env.examples.for_prompt(text, env.examples_in_prompt, env.examples_min_score)
        request = build_answer_request(
            policy=self.policy, curated_examples=curated, summary="", history=history,
            retrieved_examples=retrieved, message=text, model=env.settings.answer_model,
            max_tokens=env.settings.answer_max_tokens, system_cache_ttl=env.settings.system_cache_ttl,
            redactor=env.gateway.redactor,
        )  # fmt: skip
        request.pop("redactions", None)  # a ledger field of the gateway, not an API parameter
        return request

    def _route(
        self, t: Any, text: str, route_history: list[tuple[str, str]], answer: Message | None
    ) -> str | None:
        """The engine's decision for a turn whose triage and draft are both known: a handoff reason, or None
        to answer."""
        if t.wants_human:
            return str(e.Reason.WANTS_HUMAN)
        verdict = self.env.routing.decide(
            wants_human=t.wants_human, confidence=t.confidence, urgency=t.urgency, message=text,
            intent=t.intent, sentiment=t.sentiment, history=route_history,
        )  # fmt: skip
        if not verdict.answer:
            return verdict.reason
        if answer is None:
            return str(e.Reason.DRAFT_FAILED)
        draft = draft_from_message(answer, request_documents(self.policy))
        if draft.declined:
            return str(e.Reason.DRAFT_DECLINED)
        needs_ground = not t.solved and t.intent not in self.env.settings.ungrounded_exempt_intents
        if needs_ground and not draft.sources:  # the engine's rule: an answer citing nothing hands off
            return str(e.Reason.UNGROUNDED)
        return None

    @staticmethod
    def _purposes(results: list[CaseResult]) -> dict[str, tuple[CallPurpose, str]]:
        by_index = {str(i): r.conversation_id for i, r in enumerate(results)}
        purposes: dict[str, tuple[CallPurpose, str]] = {}
        for index, cid in by_index.items():
            purposes[f"t-{index}"] = ("triage", cid)
            purposes[f"a-{index}"] = ("answer", cid)
            purposes[f"j-{index}"] = ("other", cid)
        return purposes

    async def _batch(
        self, requests: list[dict[str, Any]], what: str, purposes: dict[str, tuple[CallPurpose, str]]
    ) -> dict[str, Message]:
        """Submit one batch, poll it to the end (progress on stderr), record each result's ledger row at the
        batch price, and return the succeeded messages by custom id."""
        gateway = self.env.gateway
        models = {r["custom_id"]: str(r["params"]["model"]) for r in requests}
        batch = await gateway.create_batch(requests)
        started = time.monotonic()
        self.progress(f"{what}: batch {batch.id} submitted ({len(requests)} requests)")
        while batch.processing_status != "ended":
            await asyncio.sleep(self.env.batch_poll_s)
            batch = await gateway.retrieve_batch(batch.id)
            counts = batch.request_counts
            done = counts.succeeded + counts.errored + counts.canceled + counts.expired
            self.progress(f"{what}: batch {batch.id} {batch.processing_status}, {done}/{len(requests)} done, "
                          f"{time.monotonic() - started:.0f} s")  # fmt: skip
        out: dict[str, Message] = {}
        async for item in gateway.batch_results(batch.id):
            purpose, cid = purposes[item.custom_id]
            await gateway.record_batch_result(
                item, model=models[item.custom_id], purpose=purpose, conversation_id=cid,
                policy_version=self.policy.version,
            )  # fmt: skip
            if item.result.type == "succeeded":
                out[item.custom_id] = item.result.message
        self.progress(f"{what}: {len(out)}/{len(requests)} succeeded")
        return out
