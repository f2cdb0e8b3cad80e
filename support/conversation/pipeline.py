"""One customer turn, from a persisted message to a streamed answer or a handoff.

The rules live in :class:`support.conversation.engine.ConversationEngine`; this module carries out its
actions: triage (Haiku) and the draft answer (Sonnet stream) run concurrently, draft deltas are held by the
engine until routing decides, then flushed as ``delta`` frames; the final reply is persisted with its
``seq``. Every frame goes out through the store's pub/sub channel, so a customer connected to any process
receives it. A turn always ends within ``turn_deadline_s``: a stalled model ends in a handoff.

A turn runs under a lease (the conversation's turn lock, ``turn_lease_s`` long) that a heartbeat renews
while it runs, so a turn whose process died frees the conversation within the lease, and recovery
(:mod:`support.conversation.recovery`) re-runs it. Redis away mid-turn does not end the turn: live deltas
that cannot be published are skipped (the stored reply has the whole text), and the reply or the handoff is
retried until Redis answers or the deadline passes; a turn that could not write its outcome stays owed.

A bot turn writes only while the bot owns the conversation in the bot epoch the turn began in: its deltas,
its reply and its own handoff are checked by the store in the same script that would send or store them.
A refusal (someone asked for or took a person meanwhile, on any process) ends the turn: its model stream
is closed (the gateway still records its cost), and the customer gets ``reply_aborted`` for a reply they
had started to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from support import metrics, tracing
from support.attachments.prompt import model_text
from support.conversation import engine as e
from support.conversation.ports import ExamplesPort, HandoffPort, RoutingPort
from support.conversation.store import ConversationStore, Event, LockToken, TurnContext
from support.conversation.window import maybe_fold
from support.errors import REDIS_OUTAGES, BotDisowned, ModelError, TurnSuperseded
from support.llm.answer import build_answer_request, draft_from_message, request_documents
from support.llm.gateway import ModelGateway
from support.llm.offline import Example, OfflineResponder
from support.llm.policy import Policy
from support.llm.tokens import TokenEstimator, estimate_tokens
from support.llm.triage import triage
from support.settings import LLMSettings

log = logging.getLogger(__name__)

# Cap on verbatim messages even when summarisation cannot run (offline, model down): prompts stay bounded.
HISTORY_CAP_MESSAGES = 200
# A message that arrives while its conversation's turn runs retries the turn lock this often: the earlier
# turn ends when its reply is out, and the next one should start within a frame's time, not 100 ms later.
TURN_LOCK_POLL_S = 0.02
# How long a finished turn waits for its model calls' bookkeeping (ledger write, budget settlement).
BOOKKEEPING_GRACE_S = 5.0
# A turn's write that failed because Redis is away is tried again this often, until the turn's deadline.
REDIS_RETRY_S = 0.5
# After the deadline, how long the turn may take to write its handoff (Redis may be away still).
HANDOFF_GRACE_S = 3.0


def _now() -> datetime:
    return datetime.now(UTC)


ImageLoader = Callable[[Sequence[dict[str, Any]], str], Awaitable[list[dict[str, Any]]]]


@dataclass
class TurnDeps:
    """What a turn needs; built once per process from the runtime."""

    store: ConversationStore
    gateway: ModelGateway | None  # None: offline mode
    settings: LLMSettings
    policy: Policy
    offline: OfflineResponder
    estimator: TokenEstimator = field(default_factory=TokenEstimator)
    turn_deadline_s: float = 25.0
    lease_s: float = 6.0  # the turn lock's lease; a heartbeat renews it every heartbeat_s while it runs
    heartbeat_s: float = 2.0
    handoff: HandoffPort | None = None  # None: handoffs only change the conversation state (unit use)
    examples: ExamplesPort | None = None
    routing: RoutingPort = field(kw_only=True)  # handoff.routing.RoutingPolicy, passed in (ports.py)
    examples_in_prompt: int = 3
    examples_min_score: float = 0.3
    # E-mail can be sent (SMTP configured): a customer nobody can answer is offered to leave an address.
    email_replies: bool = False
    # A customer message's image blocks for the model (attachments, when configuration allows; else []).
    attachment_images: ImageLoader | None = None


class Turn:
    """Drives one engine turn for one conversation; not reused."""

    def __init__(
        self,
        deps: TurnDeps,
        conversation_id: str,
        state: e.State,
        bot_epoch: int | None = None,
        lease: LockToken | None = None,
    ) -> None:
        """``bot_epoch``: the bot epoch a bot turn began in (its writes are checked against it); None for
        a conversation-level change (an agent's or the customer's action), which owns what it writes.
        ``lease``: a bot turn's lease; its outcome is written only while it holds it."""
        self.deps = deps
        self.conversation_id = conversation_id
        self.engine = e.ConversationEngine(state)
        self.bot_epoch = bot_epoch
        self.lease = lease
        self.streamed = False  # the turn's first delta went out (and was recorded for recovery)
        self.redis_away = False  # a write failed for want of Redis during this turn (logged once)
        self.seq = 0  # the customer message this turn answers
        self.inbox: asyncio.Queue[e.Input] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self.drafts: dict[int, asyncio.Task[None]] = {}  # seq -> the task streaming its draft
        self.message_text = ""
        self.attachments: list[dict[str, Any]] = []  # the customer message's (public descriptions)
        self.summary = ""
        self.history: list[tuple[str, str]] = []
        self.route_history: list[tuple[str, str]] = []  # (customer|assistant|agent, text) for routing
        self.triage: e.TriageDone | None = None
        # Set once the customer-facing part of the turn is over (reply published, or handed off): the
        # model calls' bookkeeping waits for it, so it never competes with the reply for the event loop.
        self.reply_out = asyncio.Event()
        # How the turn ended, for the turns counter (support/metrics.py): answered, offline, handed_off,
        # to_person, disowned; the runner adds superseded, cancelled and failed.
        self.outcome: str | None = None
        self.offline_answer = False  # the reply came from the offline responder (a model call failed)
        self.reply_span: Any = None  # the trace's ``reply`` span, from the first delta to the stored reply

    async def run(self, message: Event, context: TurnContext, reply_id: str | None = None) -> None:
        """Run the turn started by ``message`` until the engine has no turn in flight; ``reply_id`` for a
        re-run (the earlier run's reply id was withdrawn and may not be used again)."""
        # The model reads a marker per attachment ("[customer attached an image: a.png]"), not the file.
        self.message_text = model_text(message.role, message.text, message.extra)
        self.attachments = list(message.extra.get("attachments") or [])
        self.seq = message.seq
        self.summary = context.summary
        earlier = [
            ev
            for ev in context.window
            if ev.seq < message.seq and ev.role in ("customer", "assistant", "agent")
        ][-HISTORY_CAP_MESSAGES:]
        self.history = [
            ("user" if ev.role == "customer" else "assistant", model_text(ev.role, ev.text, ev.extra))
            for ev in earlier
        ]
        self.route_history = [(ev.role, ev.text) for ev in earlier]
        finished = False
        try:
            async with asyncio.timeout(self.deps.turn_deadline_s):
                start = e.CustomerMessage(seq=message.seq, text=self.message_text, reply_id=reply_id)
                await self.apply(self.engine.handle(start))
                while self.engine.turn is not None:
                    actions = self.engine.handle(await self.inbox.get())
                    # Inputs that queued up while the last actions ran (deltas from a fast stream, the
                    # stream's end) are handled together: their frames can then be merged.
                    while self.engine.turn is not None and not self.inbox.empty():
                        actions += self.engine.handle(self.inbox.get_nowait())
                    await self.apply(coalesce(actions))
            finished = True
        except TimeoutError:
            log.warning("turn %s/%s hit its deadline", self.conversation_id, message.seq)
            if self.engine.turn is not None:
                # Bounded too (Redis may still be away): a handoff not written leaves the turn owed.
                async with asyncio.timeout(HANDOFF_GRACE_S):
                    await self.apply(self.engine.handle(e.Timeout(seq=message.seq)))
            else:
                raise  # the outcome was being written when the deadline hit: the turn is still owed
        finally:
            self.reply_out.set()
            tracing.end(self.reply_span, outcome="unfinished")  # None unless a started reply was cut off
            self.reply_span = None
            if not finished:  # deadline, error or cancellation: the model calls are not wanted any more
                for task in self.tasks:
                    task.cancel()

    async def settle(self) -> None:
        """Wait (bounded) for the model calls' bookkeeping (ledger row, budget settlement) that a finished
        turn leaves running; the turn lock need not be held for it."""
        pending = [task for task in self.tasks if not task.done()]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=BOOKKEEPING_GRACE_S)
            for task in still:
                task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        async def runner() -> None:
            await coro

        task = asyncio.create_task(runner())
        self.tasks.append(task)
        return task

    async def apply(self, actions: list[e.Action]) -> None:
        try:
            await self._apply(actions)
        except BotDisowned:
            # People own the conversation now: what remains of these actions is not the bot's to do. The
            # engine says what is left (withdraw the started reply, stop the model); none of it is a bot
            # word, so none of it can be refused.
            self.outcome = "disowned"
            log.info("turn %s/%s: the bot lost the conversation; ending", self.conversation_id, self.seq)
            await self._apply(self.engine.handle(e.OwnershipLost(seq=self.seq)))

    async def _apply(self, actions: list[e.Action]) -> None:
        i = 0
        while i < len(actions):
            action, after = actions[i], actions[i + 1] if i + 1 < len(actions) else None
            if (
                isinstance(action, e.StreamDelta)
                and isinstance(after, e.PersistReply)
                and after.reply_id == action.reply_id
            ):
                # The reply's last delta goes out with the reply itself: one script, in order.
                await self._until_written(functools.partial(self._persist_reply, after, last_delta=action))
                i += 2
                continue
            if isinstance(action, e.StreamDelta):
                await self._do(action)
            elif isinstance(action, e.PersistReply):
                await self._until_written(functools.partial(self._persist_reply, action))
            else:
                await self._until_written(functools.partial(self._do, action))
            i += 1

    def _redis_lost(self, exc: BaseException) -> None:
        if not self.redis_away:
            log.warning(
                "turn %s/%s: Redis unreachable (%s); the turn goes on and retries its writes",
                self.conversation_id, self.seq, type(exc).__name__,
            )  # fmt: skip
        self.redis_away = True

    async def _until_written(self, write: Callable[[], Awaitable[None]]) -> None:
        """Run one of the turn's writes, again every REDIS_RETRY_S while Redis is unreachable: the turn's
        deadline (the timeout around the turn) bounds the wait, and the finished draft is kept meanwhile."""
        while True:
            try:
                await write()
                return
            except REDIS_OUTAGES as exc:
                self._redis_lost(exc)
            await asyncio.sleep(REDIS_RETRY_S)

    async def _persist_reply(self, action: e.PersistReply, last_delta: e.StreamDelta | None = None) -> None:
        store = self.deps.store
        if self.reply_span is None:
            self.reply_span = tracing.start("reply")
        if self.redis_away and await store.has_reply(self.conversation_id, action.reply_id):
            self._replied()
            return  # an earlier attempt was stored but its answer lost with the connection
        first = None
        if last_delta is not None:
            first = {"type": "delta", "reply_id": last_delta.reply_id, "text": last_delta.text}
        await store.append_event(
            self.conversation_id, type="message", role="assistant", text=action.text,
            reply_id=action.reply_id, now=_now(), publish=True, publish_first=first,
            bot_epoch=self.bot_epoch, ends_turn=action.seq if self.bot_epoch is not None else None,
            lease=self.lease, extra={"sources": list(action.sources)} if action.sources else None,
        )  # fmt: skip
        self._replied()

    def _replied(self) -> None:
        self.outcome = "offline" if self.deps.gateway is None or self.offline_answer else "answered"
        tracing.end(self.reply_span, outcome=self.outcome)
        self.reply_span = None

    async def _publish(self, frame: dict[str, Any]) -> None:
        await self.deps.store.publish(self.conversation_id, frame)

    async def _do(self, action: e.Action) -> None:
        store, cid = self.deps.store, self.conversation_id
        match action:
            case e.StartTriage(seq=seq, text=text):
                self._spawn(self._triage(seq, text))
            case e.StartDraft(seq=seq, text=text, reply_id=reply_id):
                self.drafts[seq] = self._spawn(self._draft(seq, text, reply_id))
            case e.StopDraft(seq=seq):
                # Cancelling exits the gateway's stream block: the HTTP stream is closed and the call's
                # ledger row (outcome error:abandoned, billed input) is still written; settle() waits for it.
                draft = self.drafts.get(seq)
                if draft is not None:
                    draft.cancel()
            case e.RequestDecision(seq=seq, triage=t):
                self.triage = t
                verdict = self.deps.routing.decide(
                    wants_human=t.wants_human,
                    confidence=t.confidence,
                    urgency=t.urgency,
                    message=self.message_text,
                    intent=t.intent,
                    sentiment=t.sentiment,
                    history=self.route_history,
                )
                self.inbox.put_nowait(e.Decision(seq=seq, answer=verdict.answer, reason=verdict.reason))
            case e.StreamDelta(reply_id=reply_id, text=text):
                if self.reply_span is None:
                    self.reply_span = tracing.start("reply")
                frame = {"type": "delta", "reply_id": reply_id, "text": text}
                try:
                    if self.bot_epoch is None:
                        await self._publish(frame)
                    else:
                        first = "" if self.streamed else reply_id
                        await store.publish_bot(cid, self.bot_epoch, frame, starts_reply=first)
                        self.streamed = True
                except REDIS_OUTAGES as exc:
                    # Live frames only: the stored reply carries the whole text, and a customer whose
                    # socket broke with Redis resumes from the log.
                    self._redis_lost(exc)
            case e.AbortReply(reply_id=reply_id):
                await self._publish({"type": "reply_aborted", "reply_id": reply_id})
            case e.PersistReply():
                await self._persist_reply(action)
            case e.Handoff(seq=seq, reason=reason, draft=draft, triage=t):
                # draft None (still streaming) deletes a stale draft; DraftForAgent attaches it later. A bot
                # turn hands off only what it still owns (people may have taken it meanwhile).
                owned = await store.set_state(
                    cid, bot_epoch=self.bot_epoch, handoff_reason=reason, draft_text=draft,
                    draft_id=f"d{seq}" if draft else None, handoff_seq=seq,
                )  # fmt: skip
                if not owned:
                    raise BotDisowned(f"the bot no longer owns {cid}")
                t = t or self.triage
                if self.deps.handoff is not None:
                    await self.deps.handoff.enqueue(
                        cid, reason=reason, preview=self.message_text, intent=t.intent if t else None,
                        urgency=t.urgency if t else None, sentiment=t.sentiment if t else None,
                        language=t.language if t else None,
                    )  # fmt: skip
                self.outcome = "handed_off"
                tracing.end(self.reply_span, outcome="withdrawn")
                self.reply_span = None
            case e.DraftForAgent(seq=seq, text=text):
                draft_id = f"d{seq}"
                await store.set_state(cid, draft_text=text, draft_id=draft_id)
                await store.publish_agent(
                    cid, {"type": "draft", "conversation_id": cid, "draft": {"id": draft_id, "text": text}}
                )
            case e.EmitStatus(state=state, agent_name=agent_name, reason=reason):
                extra: dict[str, Any] = {"state": str(state)}
                if agent_name:
                    extra["agent"] = {"name": agent_name}
                if reason:
                    extra["reason"] = reason  # the widget words "why a person" by it
                handoff = self.deps.handoff
                if state is e.State.QUEUED and handoff is not None:
                    position = await handoff.queue.position(cid)
                    if position is not None:
                        extra["queue_position"] = position
                    who = await handoff.availability()
                    extra["agents_online"] = who.online
                    extra["agents_available"] = who.available
                    if not who.available and self.deps.email_replies:
                        extra["email_reply"] = True  # the widget offers to leave an e-mail address
                # The state change, its status event and the frame are one script: from the moment the
                # customer can see "queued" or "agent", no bot frame or reply is let out. A bot turn's own
                # handoff moves the state only if the bot still owns it.
                leaving_bot = self.bot_epoch is not None and state is not e.State.BOT
                await store.append_event(
                    cid, type="status", role="system", text="", extra=extra, now=_now(), publish=True,
                    new_state=str(state), bot_epoch=self.bot_epoch if leaving_bot else None,
                    ends_turn=self.seq if leaving_bot and self.seq else None,
                    lease=self.lease if leaving_bot else None,
                )  # fmt: skip
                if state is e.State.QUEUED and handoff is not None:
                    await handoff.queue_changed(announced=cid)
            case e.PublishToAgent(seq=seq, text=text):
                # A human owns (or is about to own) the conversation: the message goes to the agent side.
                self.outcome = self.outcome or "to_person"
                await store.publish_agent(
                    cid, {"type": "customer_message", "conversation_id": cid, "seq": seq, "text": text}
                )
            case e.RequestRating():
                await self._publish({"type": "rating_request"})

    async def _triage(self, seq: int, text: str) -> None:
        gateway = self.deps.gateway
        offline_match = (
            self.deps.offline.answer(text, exclude_conversation=self.conversation_id)
            if gateway is None
            else None
        )
        if gateway is None:
            # Offline: no triage model. Confidence is the lexical match: answer only from policy/examples.
            self.inbox.put_nowait(
                e.TriageDone(seq=seq, wants_human=False, confidence=1.0 if offline_match else 0.0)
            )
            return
        try:
            with tracing.span("triage", model=self.deps.settings.triage_model) as triage_span:
                result = await triage(
                    gateway,
                    model=self.deps.settings.triage_model,
                    message=text,
                    summary=self.summary,
                    recent=self.history[-6:],
                    taxonomy=self.deps.settings.taxonomy,
                    conversation_id=self.conversation_id,
                    policy_version=self.deps.policy.version,
                )
                tracing.annotate(triage_span, intent=result.triage.intent, fallback=result.fallback)
            t = result.triage
            # The verdict is kept for agents and reports; Redis away must not cost the turn its verdict.
            with contextlib.suppress(*REDIS_OUTAGES):
                await self.deps.store.record_triage(
                    self.conversation_id, seq, {**t.model_dump(), "fallback": result.fallback}
                )
            self.inbox.put_nowait(
                e.TriageDone(
                    seq=seq,
                    wants_human=t.wants_human,
                    confidence=t.confidence,
                    intent=t.intent,
                    urgency=t.urgency,
                    sentiment=t.sentiment,
                    language=t.language,
                    needs_ground=not t.solved
                    and t.intent not in self.deps.settings.ungrounded_exempt_intents,
                )
            )
        except ModelError as exc:
            # The model cannot judge this turn. A confident offline answer (policy passage or approved
            # example) is better than a person's queue; without one, zero confidence hands off and the
            # draft, if the answer stream produces one, is kept for the agent.
            match = self.deps.offline.answer(text, exclude_conversation=self.conversation_id)
            if match is not None:
                log.warning("triage failed (%s): answering from the offline responder", exc.code)
                self.offline_answer = True
                self.inbox.put_nowait(e.FallbackAnswer(seq=seq, text=match.text))
                return
            log.warning("triage failed (%s): routing on zero confidence", exc.code)
            self.inbox.put_nowait(e.TriageDone(seq=seq, wants_human=False, confidence=0.0))

    async def _draft(self, seq: int, text: str, reply_id: str) -> None:
        gateway = self.deps.gateway
        if gateway is None:
            match = self.deps.offline.answer(text, exclude_conversation=self.conversation_id)
            if match is None:
                self.inbox.put_nowait(e.DraftFailed(seq=seq, reason="offline_no_match"))
            else:
                self.inbox.put_nowait(e.DraftDelta(seq=seq, text=match.text))
                self.inbox.put_nowait(e.DraftDone(seq=seq, text=match.text))
            return
        curated: list[Example] = []
        retrieved: list[Example] = []
        examples = self.deps.examples
        if examples is not None:
            curated = examples.curated
            retrieved = examples.for_prompt(
                text, self.deps.examples_in_prompt, self.deps.examples_min_score,
                exclude_conversation=self.conversation_id,
            )  # fmt: skip
        images: list[dict[str, Any]] = []
        if self.attachments and self.deps.attachment_images is not None:
            images = await self.deps.attachment_images(self.attachments, self.conversation_id)
        request = build_answer_request(
            images=images,
            policy=self.deps.policy,
            curated_examples=curated,
            summary=self.summary,
            history=self.history,
            retrieved_examples=retrieved,
            message=text,
            model=self.deps.settings.answer_model,
            max_tokens=self.deps.settings.answer_max_tokens,
            system_cache_ttl=self.deps.settings.system_cache_ttl,
            redactor=gateway.redactor,
        )
        parts: list[str] = []
        finished = False
        answer_span = tracing.start("answer", model=self.deps.settings.answer_model)
        try:
            async with gateway.stream(
                purpose="answer",
                conversation_id=self.conversation_id,
                policy_version=self.deps.policy.version,
                **request,
            ) as stream:
                async for delta in stream.text_deltas():
                    parts.append(delta)
                    self.inbox.put_nowait(e.DraftDelta(seq=seq, text=delta))
                final = stream.final_message
                # The reply can be persisted now: the gateway's bookkeeping when the block exits (breaker,
                # budget settlement, ledger row) finishes off the customer's path; run() waits for it.
                draft = draft_from_message(final, request_documents(self.deps.policy))
                declined = draft.declined
                self.inbox.put_nowait(
                    e.DraftDone(
                        seq=seq, text="".join(parts), declined=declined, sources=draft.sources,
                        grounding_checked=True,
                    )
                )  # fmt: skip
                finished = True
                tracing.end(answer_span, declined=declined, output_tokens=final.usage.output_tokens)
                answer_span = None
                await self.reply_out.wait()
            usage = final.usage
            actual = usage.input_tokens + (usage.cache_read_input_tokens or 0)
            actual += usage.cache_creation_input_tokens or 0
            # observe() takes the UNcalibrated estimate (the calibrated one would correct its own correction)
            self.deps.estimator.observe(estimate_tokens(_prompt_text(request)) or 1, actual)
        except ModelError as exc:
            tracing.end(answer_span, error=exc.code)
            answer_span = None
            if finished:
                return  # the draft was complete; only bookkeeping after it failed (logged by the gateway)
            # Breaker open, budget exhausted, stalled or failed stream: the offline responder may still
            # answer from the policy; otherwise the engine hands off.
            match = (
                self.deps.offline.answer(text, exclude_conversation=self.conversation_id)
                if not parts
                else None
            )
            if match is not None:
                self.offline_answer = True
                self.inbox.put_nowait(e.DraftDelta(seq=seq, text=match.text))
                self.inbox.put_nowait(e.DraftDone(seq=seq, text=match.text))
            else:
                self.inbox.put_nowait(e.DraftFailed(seq=seq, reason=exc.code))
            return
        finally:
            tracing.end(answer_span, abandoned=True)  # stopped (a handoff, the deadline): None otherwise


def coalesce(actions: list[e.Action]) -> list[e.Action]:
    """Fewer frames, same text: adjacent deltas of one reply become one delta (their concatenation is
    unchanged, so the reply's deltas still add up to its ``message``). Everything else keeps its order."""
    out: list[e.Action] = []
    for action in actions:
        last = out[-1] if out else None
        if (
            isinstance(action, e.StreamDelta)
            and isinstance(last, e.StreamDelta)
            and last.reply_id == action.reply_id
        ):
            out[-1] = e.StreamDelta(action.reply_id, last.text + action.text)
            continue
        out.append(action)
    return out


def _prompt_text(request: dict[str, Any]) -> str:
    """The text a request's input tokens are counted over, for calibrating the local estimate."""
    return json.dumps([request.get("system"), request.get("tools"), request.get("messages")])


class TurnRunner:
    """Runs turns as owned background tasks, one at a time per conversation (a Redis lease)."""

    def __init__(self, deps: TurnDeps, spawn: Callable[[Awaitable[None], str], object]) -> None:
        self.deps = deps
        self._spawn = spawn
        self.in_flight: set[asyncio.Task[None]] = set()
        # Conversations with a turn started or running in this process: recovery leaves them alone.
        self.local: dict[str, int] = {}

    @property
    def lock_ttl_ms(self) -> int:
        """The turn lease's TTL: a turn renews it every ``heartbeat_s``; a dead turn frees it by then."""
        return int(self.deps.lease_s * 1000)

    def start(
        self,
        conversation_id: str,
        message: Event,
        context: TurnContext | None = None,
        examples_refreshed: Awaitable[None] | None = None,
    ) -> None:
        """Start the turn for a newly persisted customer message; ``context`` when the append already
        began the turn (took its lease: the turn owns it from here), ``examples_refreshed`` when the
        examples' version check is already under way."""
        self._enter(conversation_id)
        self._spawn(
            self._run_entered(conversation_id, message, context, examples_refreshed),
            f"turn:{conversation_id}:{message.seq}",
        )

    def recover(self, conversation_id: str, context: TurnContext) -> None:
        """Run an owed turn that recovery (or a resend) began: ``context.message`` is the owed message.
        A reply an earlier run of it began to stream is withdrawn first; the re-run answers with a new
        reply id (the withdrawn one never gets a ``message``)."""
        message = context.message
        self._enter(conversation_id)
        if message is None:  # the owed message is gone (erased meanwhile): nothing to answer
            self._spawn(self._end_lost(conversation_id, context), f"turn-lost:{conversation_id}")
            return
        self._spawn(
            self._run_entered(conversation_id, message, context, None, recovered=True),
            f"turn:{conversation_id}:{message.seq}",
        )

    def give_up(self, conversation_id: str, context: TurnContext) -> None:
        """An owed turn that was lost again each time it was re-run: hand the conversation to a person
        (as a failed draft would) instead of running it once more."""
        self._enter(conversation_id)
        self._spawn(self._give_up(conversation_id, context), f"turn-lost:{conversation_id}")

    async def _give_up(self, conversation_id: str, context: TurnContext) -> None:
        try:
            message, state = context.message, context.state
            if message is not None and state is not None and state.state == str(e.State.BOT):
                turn = Turn(
                    self.deps, conversation_id, e.State.BOT, bot_epoch=state.bot_epoch, lease=context.lock
                )
                turn.seq, turn.message_text = message.seq, message.text
                streamed = context.streamed_reply
                actions: list[e.Action] = [e.AbortReply(streamed)] if streamed else []
                actions += [e.Handoff(message.seq, e.Reason.DRAFT_FAILED), e.EmitStatus(e.State.QUEUED)]
                await turn.apply(actions)
                metrics.TURNS.labels(outcome=turn.outcome or "ended").inc()
            await self.deps.store.end_turn(conversation_id, context.lock, context.owed_seq or 0)
        finally:
            self._leave(conversation_id)

    def _enter(self, conversation_id: str) -> None:
        self.local[conversation_id] = self.local.get(conversation_id, 0) + 1

    def _leave(self, conversation_id: str) -> None:
        left = self.local.get(conversation_id, 1) - 1
        if left > 0:
            self.local[conversation_id] = left
        else:
            self.local.pop(conversation_id, None)

    async def _end_lost(self, conversation_id: str, context: TurnContext) -> None:
        try:
            await self.deps.store.end_turn(conversation_id, context.lock, context.owed_seq or 0)
        finally:
            self._leave(conversation_id)

    async def _run_entered(
        self,
        conversation_id: str,
        message: Event,
        context: TurnContext | None,
        examples_refreshed: Awaitable[None] | None,
        *,
        recovered: bool = False,
    ) -> None:
        try:
            await self.run(conversation_id, message, context, examples_refreshed, recovered=recovered)
        finally:
            self._leave(conversation_id)

    def refresh_examples(self) -> asyncio.Task[None]:
        """Start the examples' version check (one GET) now, to overlap another round trip."""
        return asyncio.ensure_future(self._refresh_examples())

    async def request_human(self, conversation_id: str) -> None:
        """The customer asked for a person (a ``request_human`` frame)."""
        state = await self.deps.store.get_state(conversation_id)
        last = await self.deps.store.events_after(
            conversation_id, max(0, (state.last_seq if state else 0) - 20)
        )
        customer = [ev for ev in last if ev.type == "message" and ev.role == "customer"]
        turn = Turn(self.deps, conversation_id, e.State(state.state) if state else e.State.BOT)
        turn.message_text = customer[-1].text if customer else ""
        await turn.apply(turn.engine.handle(e.RequestHuman()))

    async def close(self, conversation_id: str) -> None:
        """The customer ended the conversation (a ``close`` frame)."""
        state = await self.deps.store.get_state(conversation_id)
        await self.conversation_event(conversation_id, e.CustomerClosed())
        if self.deps.handoff is not None and state is not None and state.state in ("queued", "agent"):
            await self.deps.handoff.closed_by_customer(conversation_id)

    async def conversation_event(self, conversation_id: str, event: e.Input) -> None:
        """Apply a conversation-level event (agent claimed, released, resolved...) and carry out its
        actions; :class:`InvalidTransition` when the conversation's state does not allow it."""
        state = await self.deps.store.get_state(conversation_id)
        turn = Turn(self.deps, conversation_id, e.State(state.state) if state else e.State.BOT)
        await turn.apply(turn.engine.handle(event))

    async def run(
        self,
        conversation_id: str,
        message: Event,
        context: TurnContext | None = None,
        examples_refreshed: Awaitable[None] | None = None,
        *,
        recovered: bool = False,
    ) -> None:
        """Run one turn under the conversation's turn lease; waits for a turn already in flight.
        ``recovered``: ``context`` was begun for the owed ``message`` by recovery or a resend."""
        with tracing.span(
            "turn", conversation_id=conversation_id, seq=message.seq, recovered=recovered
        ) as turn_span:
            await self._run(conversation_id, message, context, examples_refreshed, recovered, turn_span)

    async def _run(
        self,
        conversation_id: str,
        message: Event,
        context: TurnContext | None,
        examples_refreshed: Awaitable[None] | None,
        recovered: bool,
        turn_span: Any,
    ) -> None:
        store = self.deps.store
        if context is not None:  # begun by the append, which overlapped the examples' check
            if examples_refreshed is not None:
                await examples_refreshed
        else:
            # The examples' version check (one GET, another cluster slot) overlaps the turn's first read.
            examples = asyncio.ensure_future(
                examples_refreshed if examples_refreshed is not None else self._refresh_examples()
            )
            try:
                context, waited = await self._wait_for_lease(conversation_id, message.seq)
            except BaseException:
                examples.cancel()  # owned here: not left running when the turn is cancelled
                raise
            await examples
            if context is None:
                log.error(
                    "turn lease for %s not acquired; message %s left to recovery",
                    conversation_id,
                    message.seq,
                )
                return
            owed = context.owed_seq
            if waited and (owed is None or owed < message.seq):
                # While this waited, another run answered it (recovery took the lease first and ran the
                # latest owed message's turn, this one's message in its history): the marker is cleared.
                # Answering again would repeat that answer. (Redis away now: the lease lapses by itself.)
                with contextlib.suppress(*REDIS_OUTAGES):
                    await store.end_turn(conversation_id, context.lock, None)
                return
        state = e.State(context.state.state) if context.state else e.State.BOT
        epoch = context.state.bot_epoch if context.state else 0
        turn = Turn(self.deps, conversation_id, state, bot_epoch=epoch, lease=context.lock)
        reply_id = None
        streamed = context.streamed_reply
        if streamed is not None:
            # An earlier turn (its process died) began a reply the customer is looking at: withdraw it.
            log.warning(
                "turn %s/%s: withdrawing reply %s of a lost turn", conversation_id, message.seq, streamed
            )
            with contextlib.suppress(*REDIS_OUTAGES):
                await store.publish(conversation_id, {"type": "reply_aborted", "reply_id": streamed})
        if recovered or streamed is not None:
            reply_id = f"r{message.seq}-{secrets.token_hex(3)}"
        running = asyncio.ensure_future(turn.run(message, context, reply_id))
        superseded = asyncio.Event()
        beat = asyncio.ensure_future(self._keep_lease(conversation_id, context.lock, running, superseded))
        ended = False
        outcome = "failed"
        try:
            await running
            ended = True
            outcome = turn.outcome or "ended"
        except asyncio.CancelledError:
            if not superseded.is_set():
                outcome = "cancelled"
                raise
            outcome = "superseded"
            log.warning(
                "turn %s/%s: another turn took its lease; this one ends", conversation_id, message.seq
            )
        except TurnSuperseded:
            outcome = "superseded"
            log.warning(
                "turn %s/%s: another turn took its lease; this one ends", conversation_id, message.seq
            )
        except Exception:
            # Left owed (the marker stays): recovery re-runs it once Redis answers again.
            log.exception("turn %s/%s failed; it stays owed", conversation_id, message.seq)
        finally:
            metrics.TURNS.labels(outcome=outcome).inc()
            tracing.annotate(turn_span, outcome=outcome, intent=turn.triage.intent if turn.triage else None)
            beat.cancel()
            # Released as soon as the reply is out: the customer's next message may start its turn while
            # this one's model calls still write their ledger rows. A turn that ended clears its marker.
            with contextlib.suppress(Exception):
                await store.end_turn(conversation_id, context.lock, message.seq if ended else None)
            await turn.settle()
        gateway = self.deps.gateway
        if gateway is not None and ended:
            # After the reply went out: fold old turns into the summary if the window is over budget.
            self._spawn(self._fold(gateway, conversation_id), f"summary:{conversation_id}")

    async def _wait_for_lease(self, conversation_id: str, seq: int) -> tuple[TurnContext | None, bool]:
        """Begin the turn of message ``seq`` once the conversation's turn lease is free (another turn of it
        may run), within the turn deadline: (the context or None, whether it had to wait).

        Redis away meanwhile is waited out like the lease itself: the message starts the moment the lease
        frees, rather than its task dying on the ``ConnectionError`` and the turn waiting a lease and a
        sweep for recovery."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deps.turn_deadline_s
        waited = away = False
        while True:
            try:
                context = await self.deps.store.begin_turn(conversation_id, self.lock_ttl_ms)
                away = False
            except REDIS_OUTAGES as exc:
                context = None
                if not away:
                    log.warning(
                        "turn %s/%s: Redis unreachable (%s) while it waits for the turn lease; waiting on",
                        conversation_id, seq, type(exc).__name__,
                    )  # fmt: skip
                away = True
            if context is not None or loop.time() >= deadline:
                return context, waited
            waited = True
            await asyncio.sleep(REDIS_RETRY_S if away else TURN_LOCK_POLL_S)

    async def _keep_lease(
        self, conversation_id: str, lease: LockToken, running: asyncio.Future[None], superseded: asyncio.Event
    ) -> None:
        """The turn's heartbeat: renew its lease every ``heartbeat_s`` (jittered); Redis away is waited
        out (the lease is taken again when it answers); another turn holding it ends this one."""
        beat = self.deps.heartbeat_s
        pause = 0.0  # the first beat at once: it claims the lease the message's append took
        while not running.done():
            await asyncio.sleep(pause)
            pause = beat * random.uniform(0.8, 1.0)
            try:
                held = await self.deps.store.renew_lease(conversation_id, lease, self.lock_ttl_ms)
            except REDIS_OUTAGES:
                continue
            if not held:
                superseded.set()
                running.cancel()
                return

    async def _refresh_examples(self) -> None:
        """Reload this process's examples if any changed anywhere (one GET when nothing did)."""
        if self.deps.examples is None:
            return
        try:
            await self.deps.examples.refresh()
        except Exception:  # examples improve answers; their store being down must not stop one
            log.exception("examples could not be refreshed; using the ones loaded")

    async def _fold(self, gateway: ModelGateway, conversation_id: str) -> None:
        await maybe_fold(
            self.deps.store,
            gateway,
            self.deps.estimator,
            conversation_id=conversation_id,
            model=self.deps.settings.triage_model,
            budget_tokens=self.deps.settings.window_tokens,
        )
