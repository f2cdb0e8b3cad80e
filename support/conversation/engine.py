"""The conversation state machine: events in, actions out, no I/O.

Like websockets' ``protocol.py``, this module owns the *rules* of a conversation and nothing else: no
Redis, sockets, clock or randomness. The pipeline feeds it what happened (a customer message arrived,
triage finished, the draft produced a delta, routing decided) and carries out the actions it returns.
That keeps every ordering of concurrent triage/draft results testable by feeding events in that order.

One turn in ``bot`` state::

    CustomerMessage -> StartDraft + StartTriage      (run concurrently by the pipeline; the draft's
                                                      request goes out first: it is the customer's wait)
    DraftDelta      -> held, nothing reaches the customer before a verdict
    TriageDone      -> RequestDecision               (routing decides, outside this module)
    Decision(answer)-> StreamDelta(held text), later deltas streamed, DraftDone -> PersistReply
    Decision(hand off) / wants_human / draft declined / draft failed / Timeout
                    -> Handoff + EmitStatus(queued); nothing of the draft reaches the customer

An answer with no ground (its draft cites no knowledge section although citations were asked for) to a
message that needs one (triage's ``needs_ground``: a question, not small talk) is a handoff signal
(reason ``ungrounded``), checked where routing said "answer": a verdict to answer a finished ungrounded
draft hands off instead of streaming it; an ungrounded draft that finishes after its reply started
streaming hands off and withdraws the reply (``AbortReply``), as a late decline does. Routing's own
handoff reasons come first (a low-confidence verdict stays ``low_confidence``).

Turn-scoped events carry the ``seq`` of the customer message that started the turn; events of a turn
that is no longer current are stale (a task raced its cancellation) and are ignored, not errors.

Who owns the conversation is decided in the store, where the bytes leave: a bot turn's frame or reply is
refused once people own the conversation. The pipeline reports such a refusal as ``OwnershipLost``::

    OwnershipLost   -> AbortReply (if the customer saw deltas) + StopDraft; the turn ends, nothing persisted
    FallbackAnswer  -> (triage failed, the offline responder is confident) StopDraft, the offline answer
                       streamed and persisted instead of the draft
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from support.errors import InvalidTransition


class State(StrEnum):
    """The conversation states of PROTOCOL.md's ``status`` frame."""

    BOT = "bot"
    QUEUED = "queued"
    AGENT = "agent"
    RESOLVED = "resolved"


class Reason(StrEnum):
    """Handoff reason codes the engine itself produces; routing may pass others through ``Decision``."""

    WANTS_HUMAN = "wants_human"
    CUSTOMER_REQUEST = "customer_request"
    DRAFT_DECLINED = "draft_declined"
    UNGROUNDED = "ungrounded"
    DRAFT_FAILED = "draft_failed"
    TIMEOUT = "timeout"


# --- events (inputs) -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerMessage:
    """A customer message, already persisted with ``seq``; ``reply_id`` defaults to ``r<seq>``."""

    seq: int
    text: str
    reply_id: str | None = None


@dataclass(frozen=True, slots=True)
class TriageDone:
    """The triage verdict for the turn started by customer message ``seq``."""

    seq: int
    wants_human: bool
    confidence: float
    intent: str | None = None
    urgency: str | None = None
    sentiment: str | None = None
    language: str | None = None  # BCP-47, for assignment by language skill
    # The message asks something the knowledge should ground (not small talk, thanks or "solved").
    needs_ground: bool = False


@dataclass(frozen=True, slots=True)
class DraftDelta:
    """A piece of the streamed draft answer."""

    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class DraftDone:
    """The draft finished; ``text`` is the whole draft, ``declined`` says the model declined/escalated.

    ``sources`` are the knowledge sections the draft cites; ``grounding_checked`` says citations were
    asked for, so that no sources means no ground (an offline answer is not checked)."""

    seq: int
    text: str
    declined: bool = False
    sources: tuple[dict[str, str], ...] = ()
    grounding_checked: bool = False

    @property
    def ungrounded(self) -> bool:
        """Citations were asked for and the draft (not a decline) has none."""
        return self.grounding_checked and not self.sources and not self.declined


@dataclass(frozen=True, slots=True)
class DraftFailed:
    """The draft could not be produced (model unavailable, stream stalled...)."""

    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """Routing's verdict for the turn: answer, or hand off with ``reason`` as the reason code."""

    seq: int
    answer: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Timeout:
    """The turn's deadline passed before it finished."""

    seq: int


@dataclass(frozen=True, slots=True)
class OwnershipLost:
    """A write of the turn started by ``seq`` was refused: the bot does not own the conversation any more
    (a person took it, the customer asked for one or closed it)."""

    seq: int


@dataclass(frozen=True, slots=True)
class FallbackAnswer:
    """The model could not judge the turn (triage failed), but the offline responder answers it confidently
    with ``text``: the customer gets that instead of the model's draft."""

    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class RequestHuman:
    """The customer asked for a person."""


@dataclass(frozen=True, slots=True)
class AgentClaimed:
    """An agent took the conversation."""

    agent_name: str


@dataclass(frozen=True, slots=True)
class AgentReleased:
    """The agent put the conversation back in the queue."""


@dataclass(frozen=True, slots=True)
class ReturnedToBot:
    """An agent handed the conversation back to the bot."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """An agent resolved the conversation."""


@dataclass(frozen=True, slots=True)
class CustomerClosed:
    """The customer ended the conversation."""


Input = (
    CustomerMessage
    | TriageDone
    | DraftDelta
    | DraftDone
    | DraftFailed
    | Decision
    | Timeout
    | OwnershipLost
    | FallbackAnswer
    | RequestHuman
    | AgentClaimed
    | AgentReleased
    | ReturnedToBot
    | Resolved
    | CustomerClosed
)

# --- actions (outputs) -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTriage:
    """Run triage on customer message ``seq``."""

    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class StartDraft:
    """Start streaming a draft answer to customer message ``seq``; its deltas belong to ``reply_id``."""

    seq: int
    text: str
    reply_id: str


@dataclass(frozen=True, slots=True)
class RequestDecision:
    """Ask routing to decide the turn from this triage; answer with a ``Decision`` event."""

    seq: int
    triage: TriageDone


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """Send a ``delta`` frame to the customer (not persisted)."""

    reply_id: str
    text: str


@dataclass(frozen=True, slots=True)
class AbortReply:
    """A reply already partly streamed will not be completed: tell the widget to drop its deltas."""

    reply_id: str


@dataclass(frozen=True, slots=True)
class StopDraft:
    """The draft of turn ``seq`` is not wanted any more: close its model stream (its cost still recorded)."""

    seq: int


@dataclass(frozen=True, slots=True)
class PersistReply:
    """Persist the finished assistant reply (its ``text`` is the concatenation of the streamed deltas)
    with the knowledge ``sources`` it cites."""

    seq: int
    reply_id: str
    text: str
    sources: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Handoff:
    """Queue the conversation for a human; ``draft`` is the finished draft for the agent, if any yet."""

    seq: int | None
    reason: str
    triage: TriageDone | None = None
    draft: str | None = None


@dataclass(frozen=True, slots=True)
class DraftForAgent:
    """A draft that finished after its turn was handed off: attach it to the handoff packet."""

    seq: int
    reply_id: str
    text: str


@dataclass(frozen=True, slots=True)
class PublishToAgent:
    """Publish customer message ``seq`` to the agent side; no bot turn happens."""

    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class EmitStatus:
    """Persist and send a ``status`` event; a handoff's ``queued`` status carries its ``reason`` code."""

    state: State
    agent_name: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RequestRating:
    """Send a ``rating_request`` frame."""


Action = (
    StartTriage
    | StartDraft
    | RequestDecision
    | StreamDelta
    | AbortReply
    | StopDraft
    | PersistReply
    | Handoff
    | DraftForAgent
    | PublishToAgent
    | EmitStatus
    | RequestRating
)


class Phase(StrEnum):
    """Where the current turn is."""

    PENDING = "pending"  # waiting for a verdict; deltas are held
    STREAMING = "streaming"  # verdict was "answer"; deltas go to the customer
    HANDED_OFF = "handed_off"  # verdict was "human"; the draft is collected for the agent only


@dataclass(slots=True)
class Turn:
    """The bot turn in flight: mutable, owned by the engine."""

    seq: int
    reply_id: str
    phase: Phase = Phase.PENDING
    triage: TriageDone | None = None
    held: list[str] = field(default_factory=list)
    draft: str | None = None  # the finished draft text, once DraftDone arrived
    declined: bool = False
    ungrounded: bool = False  # the finished draft cites nothing although citations were asked for
    sources: tuple[dict[str, str], ...] = ()


class ConversationEngine:
    """The rules of one conversation. Built per process from the stored state; holds one turn at most.

    A customer message arriving while a bot turn is in flight waits in a small queue and starts the
    next turn, so the next draft sees the previous reply; if the turn is handed off, the waiting
    messages go to the agent side instead.
    """

    def __init__(self, state: State = State.BOT) -> None:
        self._state = state
        self._turn: Turn | None = None
        self._waiting: deque[CustomerMessage] = deque()
        # The turn whose reply was handed to PersistReply last: a refused persist withdraws its deltas.
        self._replied: Turn | None = None

    @property
    def state(self) -> State:
        """The conversation state."""
        return self._state

    @property
    def turn(self) -> Turn | None:
        """The bot turn in flight (including a handed-off turn whose draft is still running)."""
        return self._turn

    def handle(self, event: Input) -> list[Action]:
        """Apply ``event``; return what the caller must do, in order. Raises ``InvalidTransition``."""
        match event:
            case CustomerMessage():
                return self._customer_message(event)
            case TriageDone() | DraftDelta() | DraftDone() | DraftFailed() | Decision() | Timeout():
                return self._turn_event(event)
            case FallbackAnswer():
                return self._fallback_answer(event)
            case OwnershipLost():
                return self._ownership_lost(event)
            case RequestHuman():
                return self._request_human()
            case AgentClaimed():
                return self._agent_claimed(event)
            case AgentReleased():
                self._require(event, State.AGENT)
                return self._set(State.QUEUED)
            case ReturnedToBot():
                self._require(event, State.AGENT, State.QUEUED)
                return self._set(State.BOT)
            case Resolved():
                self._require(event, State.BOT, State.QUEUED, State.AGENT)
                return [*self._detach_turn(), *self._set(State.RESOLVED), RequestRating()]
            case CustomerClosed():
                # Closing twice (two tabs, a retried frame) is harmless, so it is not an error.
                if self._state is State.RESOLVED:
                    return []
                return [*self._detach_turn(), *self._set(State.RESOLVED), RequestRating()]
        raise InvalidTransition(f"unknown event {event!r}")  # pragma: no cover - exhaustive match

    # --- customer side ----------------------------------------------------------------------------

    def _customer_message(self, event: CustomerMessage) -> list[Action]:
        if self._state in (State.QUEUED, State.AGENT):
            return [PublishToAgent(event.seq, event.text)]
        actions: list[Action] = []
        if self._state is State.RESOLVED:
            # A customer writing again after resolution reopens the conversation with the bot.
            actions += self._set(State.BOT)
        if self._turn is not None and self._turn.phase is not Phase.HANDED_OFF:
            self._waiting.append(event)
            return actions
        return actions + self._start_turn(event)

    def _start_turn(self, event: CustomerMessage) -> list[Action]:
        reply_id = event.reply_id or f"r{event.seq}"
        self._turn = Turn(seq=event.seq, reply_id=reply_id)
        return [StartDraft(event.seq, event.text, reply_id), StartTriage(event.seq, event.text)]

    def _request_human(self) -> list[Action]:
        if self._state in (State.QUEUED, State.AGENT):
            return []  # already with humans
        self._require(RequestHuman(), State.BOT)
        return self._handoff(Reason.CUSTOMER_REQUEST)

    def _agent_claimed(self, event: AgentClaimed) -> list[Action]:
        # From AGENT: a transfer to another agent (the status names the new one).
        self._require(event, State.BOT, State.QUEUED, State.AGENT)
        actions = self._detach_turn()
        waiting = [PublishToAgent(m.seq, m.text) for m in self._waiting]
        self._waiting.clear()
        self._state = State.AGENT
        return [*actions, EmitStatus(State.AGENT, event.agent_name), *waiting]

    # --- the turn ---------------------------------------------------------------------------------

    def _turn_event(
        self, event: TriageDone | DraftDelta | DraftDone | DraftFailed | Decision | Timeout
    ) -> list[Action]:
        turn = self._turn
        if turn is None or turn.seq != event.seq:
            return []  # stale: a task of an earlier turn finished after the turn ended
        if turn.phase is Phase.HANDED_OFF:
            return self._after_handoff(turn, event)
        match event:
            case TriageDone():
                turn.triage = event
                if event.wants_human:
                    return self._handoff(Reason.WANTS_HUMAN)
                if turn.phase is Phase.PENDING:
                    return [RequestDecision(turn.seq, event)]
                return []
            case DraftDelta():
                if turn.phase is Phase.STREAMING:
                    return [StreamDelta(turn.reply_id, event.text)]
                turn.held.append(event.text)
                return []
            case DraftDone():
                turn.draft = event.text
                turn.declined = event.declined
                turn.ungrounded, turn.sources = event.ungrounded, event.sources
                if event.declined:
                    return self._handoff(Reason.DRAFT_DECLINED)
                if turn.phase is Phase.STREAMING:
                    if self._ungrounded(turn):
                        return self._handoff(Reason.UNGROUNDED)
                    return self._finish_reply(turn)
                return []
            case DraftFailed():
                handed_off = self._handoff(Reason.DRAFT_FAILED)
                # No draft will ever come: the turn is over now, not at its deadline (a turn left waiting
                # for it held the conversation's turn lock, and the customer's next message, for 45 s).
                self._turn = None
                return handed_off
            case Timeout():
                return self._handoff(Reason.TIMEOUT)
            case Decision():
                if turn.phase is Phase.STREAMING:
                    return []  # routing already said answer; a duplicate verdict changes nothing
                if not event.answer:
                    return self._handoff(event.reason)
                if turn.draft is not None and self._ungrounded(turn):
                    return self._handoff(Reason.UNGROUNDED)
                turn.phase = Phase.STREAMING
                actions: list[Action] = []
                if turn.held:
                    actions.append(StreamDelta(turn.reply_id, "".join(turn.held)))
                    turn.held.clear()
                if turn.draft is not None:
                    actions += self._finish_reply(turn)
                return actions
        return []  # pragma: no cover - exhaustive match

    def _fallback_answer(self, event: FallbackAnswer) -> list[Action]:
        turn = self._turn
        # Only a turn still waiting for its verdict: a streaming reply is the model's and stays; a
        # handed-off turn is with people already.
        if turn is None or turn.seq != event.seq or turn.phase is not Phase.PENDING:
            return []
        actions: list[Action] = [] if turn.draft is not None else [StopDraft(turn.seq)]
        turn.held.clear()
        turn.phase = Phase.STREAMING
        turn.draft, turn.declined, turn.ungrounded, turn.sources = event.text, False, False, ()
        return [*actions, StreamDelta(turn.reply_id, event.text), *self._finish_reply(turn)]

    def _ownership_lost(self, event: OwnershipLost) -> list[Action]:
        """The store refused the turn's write: end the turn without another bot word. The state is not
        changed here (whoever took the conversation changed it); this engine only stops talking."""
        actions: list[Action] = []
        turn = self._turn
        if turn is not None and turn.seq == event.seq:
            self._turn = None
            if turn.phase is Phase.STREAMING:
                actions.append(AbortReply(turn.reply_id))
            if turn.draft is None:
                actions.append(StopDraft(turn.seq))
        elif self._replied is not None and self._replied.seq == event.seq:
            # The reply itself was refused: its deltas reached the customer, its message never will.
            actions.append(AbortReply(self._replied.reply_id))
            self._replied = None
        else:
            return []  # stale: not this engine's turn
        actions += [PublishToAgent(m.seq, m.text) for m in self._waiting]
        self._waiting.clear()
        return actions

    def _after_handoff(
        self, turn: Turn, event: TriageDone | DraftDelta | DraftDone | DraftFailed | Decision | Timeout
    ) -> list[Action]:
        """The customer is with humans now; a draft still running is kept for the agent only."""
        if isinstance(event, DraftDone):
            self._turn = None
            if event.declined:
                return []
            return [DraftForAgent(turn.seq, turn.reply_id, event.text)]
        if isinstance(event, DraftFailed | Timeout):
            self._turn = None
        return []

    @staticmethod
    def _ungrounded(turn: Turn) -> bool:
        """The finished draft has no ground and the message needed one (a question, not small talk)."""
        return turn.ungrounded and turn.triage is not None and turn.triage.needs_ground

    def _finish_reply(self, turn: Turn) -> list[Action]:
        assert turn.draft is not None
        actions: list[Action] = [PersistReply(turn.seq, turn.reply_id, turn.draft, turn.sources)]
        self._turn = None
        self._replied = turn
        if self._waiting:
            actions += self._start_turn(self._waiting.popleft())
        return actions

    def _handoff(self, reason: str) -> list[Action]:
        turn = self._turn
        actions: list[Action] = []
        draft: str | None = None
        triage: TriageDone | None = None
        if turn is not None:
            triage = turn.triage
            if turn.phase is Phase.STREAMING:
                actions.append(AbortReply(turn.reply_id))
            if turn.draft is not None:
                draft = None if turn.declined else turn.draft
                self._turn = None
            else:
                turn.phase = Phase.HANDED_OFF
                turn.held.clear()
        self._state = State.QUEUED
        actions += [
            Handoff(turn.seq if turn else None, reason, triage, draft),
            EmitStatus(State.QUEUED, reason=reason),
        ]
        actions += [PublishToAgent(m.seq, m.text) for m in self._waiting]
        self._waiting.clear()
        return actions

    def _detach_turn(self) -> list[Action]:
        """End the bot turn because humans or the customer ended the conversation's bot phase."""
        turn, self._turn = self._turn, None
        if turn is not None and turn.phase is Phase.STREAMING:
            return [AbortReply(turn.reply_id)]
        return []

    # --- helpers ----------------------------------------------------------------------------------

    def _set(self, state: State) -> list[Action]:
        self._state = state
        return [EmitStatus(state)]

    def _require(self, event: Input, *allowed: State) -> None:
        if self._state not in allowed:
            raise InvalidTransition(f"{type(event).__name__} is not allowed in state {self._state}")
