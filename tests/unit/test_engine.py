"""The conversation engine, driven by feeding events in every order the pipeline can produce them."""

from __future__ import annotations

import pytest

from support.conversation.engine import (
    AbortReply,
    AgentClaimed,
    AgentReleased,
    ConversationEngine,
    CustomerClosed,
    CustomerMessage,
    Decision,
    DraftDelta,
    DraftDone,
    DraftFailed,
    DraftForAgent,
    EmitStatus,
    FallbackAnswer,
    Handoff,
    OwnershipLost,
    PersistReply,
    PublishToAgent,
    Reason,
    RequestDecision,
    RequestHuman,
    RequestRating,
    Resolved,
    ReturnedToBot,
    StartDraft,
    StartTriage,
    State,
    StopDraft,
    StreamDelta,
    Timeout,
    TriageDone,
)
from support.errors import InvalidTransition

TRIAGE_OK = TriageDone(seq=1, wants_human=False, confidence=0.9, intent="billing")


def started() -> ConversationEngine:
    engine = ConversationEngine()
    assert engine.handle(CustomerMessage(1, "hi")) == [StartDraft(1, "hi", "r1"), StartTriage(1, "hi")]
    return engine


def test_deltas_are_held_until_the_verdict_then_flushed_and_streamed() -> None:
    engine = started()
    assert engine.handle(DraftDelta(1, "Hel")) == []
    assert engine.handle(DraftDelta(1, "lo")) == []
    assert engine.handle(TRIAGE_OK) == [RequestDecision(1, TRIAGE_OK)]
    assert engine.handle(Decision(1, answer=True, reason="confident")) == [StreamDelta("r1", "Hello")]
    assert engine.handle(DraftDelta(1, "!")) == [StreamDelta("r1", "!")]
    assert engine.handle(DraftDone(1, "Hello!")) == [PersistReply(1, "r1", "Hello!")]
    assert engine.state is State.BOT
    assert engine.turn is None


def test_verdict_before_first_delta_streams_every_delta_directly() -> None:
    engine = started()
    engine.handle(TRIAGE_OK)
    assert engine.handle(Decision(1, answer=True, reason="confident")) == []
    assert engine.handle(DraftDelta(1, "A")) == [StreamDelta("r1", "A")]
    assert engine.handle(DraftDone(1, "A")) == [PersistReply(1, "r1", "A")]


def test_verdict_after_the_draft_finished_flushes_and_persists_at_once() -> None:
    engine = started()
    engine.handle(DraftDelta(1, "Done"))
    assert engine.handle(DraftDone(1, "Done")) == []
    engine.handle(TRIAGE_OK)
    assert engine.handle(Decision(1, answer=True, reason="ok")) == [
        StreamDelta("r1", "Done"),
        PersistReply(1, "r1", "Done"),
    ]


def test_human_verdict_hands_off_and_keeps_the_late_draft_for_the_agent_only() -> None:
    engine = started()
    engine.handle(DraftDelta(1, "secret"))
    engine.handle(TRIAGE_OK)
    assert engine.handle(Decision(1, answer=False, reason="low_confidence")) == [
        Handoff(1, "low_confidence", TRIAGE_OK, None),
        EmitStatus(State.QUEUED, reason="low_confidence"),
    ]
    assert engine.state is State.QUEUED
    assert engine.handle(DraftDelta(1, " more")) == []
    assert engine.handle(DraftDone(1, "secret more")) == [DraftForAgent(1, "r1", "secret more")]


def test_wants_human_hands_off_without_asking_routing() -> None:
    engine = started()
    triage = TriageDone(1, wants_human=True, confidence=0.99)
    assert engine.handle(triage) == [
        Handoff(1, Reason.WANTS_HUMAN, triage, None),
        EmitStatus(State.QUEUED, reason=Reason.WANTS_HUMAN),
    ]


def test_declined_draft_hands_off_even_before_triage() -> None:
    engine = started()
    assert engine.handle(DraftDone(1, "I can't help", declined=True)) == [
        Handoff(1, Reason.DRAFT_DECLINED, None, None),
        EmitStatus(State.QUEUED, reason=Reason.DRAFT_DECLINED),
    ]
    assert engine.handle(TRIAGE_OK) == []  # stale once the turn is over


def test_failed_draft_hands_off() -> None:
    engine = started()
    engine.handle(TRIAGE_OK)
    actions = engine.handle(DraftFailed(1, "model_unavailable"))
    assert actions == [
        Handoff(1, Reason.DRAFT_FAILED, TRIAGE_OK, None),
        EmitStatus(State.QUEUED, reason=Reason.DRAFT_FAILED),
    ]


def test_a_draft_that_failed_before_the_verdict_ends_the_turn_at_once() -> None:
    """Nothing more can come of a failed draft: the turn (and its lock) must not wait for its deadline,
    and the triage verdict that arrives afterwards changes nothing."""
    engine = started()
    actions = engine.handle(DraftFailed(1, "model_unavailable"))
    assert actions == [
        Handoff(1, Reason.DRAFT_FAILED, None, None),
        EmitStatus(State.QUEUED, reason=Reason.DRAFT_FAILED),
    ]
    assert engine.turn is None
    assert engine.handle(TRIAGE_OK) == []


def test_failure_while_streaming_aborts_the_partial_reply() -> None:
    engine = started()
    engine.handle(TRIAGE_OK)
    engine.handle(Decision(1, answer=True, reason="ok"))
    engine.handle(DraftDelta(1, "par"))
    assert engine.handle(Timeout(1)) == [
        AbortReply("r1"),
        Handoff(1, Reason.TIMEOUT, TRIAGE_OK, None),
        EmitStatus(State.QUEUED, reason=Reason.TIMEOUT),
    ]


def test_finished_draft_goes_into_the_handoff_packet() -> None:
    engine = started()
    engine.handle(DraftDone(1, "draft"))
    engine.handle(TRIAGE_OK)
    assert engine.handle(Decision(1, answer=False, reason="refund")) == [
        Handoff(1, "refund", TRIAGE_OK, "draft"),
        EmitStatus(State.QUEUED, reason="refund"),
    ]


def test_message_during_a_turn_waits_and_starts_the_next_turn() -> None:
    engine = started()
    assert engine.handle(CustomerMessage(2, "also")) == []
    engine.handle(TRIAGE_OK)
    engine.handle(Decision(1, answer=True, reason="ok"))
    assert engine.handle(DraftDone(1, "x")) == [
        PersistReply(1, "r1", "x"),
        StartDraft(2, "also", "r2"),
        StartTriage(2, "also"),
    ]


def test_stale_events_of_another_turn_are_ignored() -> None:
    engine = started()
    assert engine.handle(DraftDelta(7, "zzz")) == []
    assert engine.handle(Decision(7, answer=True, reason="ok")) == []
    assert engine.turn is not None
    assert engine.turn.held == []


def test_with_humans_customer_messages_only_go_to_agents() -> None:
    engine = ConversationEngine(State.QUEUED)
    assert engine.handle(CustomerMessage(5, "hello?")) == [PublishToAgent(5, "hello?")]
    assert engine.handle(AgentClaimed("Ada")) == [EmitStatus(State.AGENT, "Ada")]
    assert engine.handle(CustomerMessage(6, "hi Ada")) == [PublishToAgent(6, "hi Ada")]


def test_agent_lifecycle_and_rating() -> None:
    engine = ConversationEngine(State.AGENT)
    assert engine.handle(AgentReleased()) == [EmitStatus(State.QUEUED)]
    assert engine.handle(AgentClaimed("Bo")) == [EmitStatus(State.AGENT, "Bo")]
    assert engine.handle(ReturnedToBot()) == [EmitStatus(State.BOT)]
    assert engine.handle(Resolved()) == [EmitStatus(State.RESOLVED), RequestRating()]
    assert engine.handle(CustomerClosed()) == []


def test_request_human_during_a_turn_hands_off() -> None:
    engine = started()
    assert engine.handle(RequestHuman()) == [
        Handoff(1, Reason.CUSTOMER_REQUEST, None, None),
        EmitStatus(State.QUEUED, reason=Reason.CUSTOMER_REQUEST),
    ]
    assert engine.handle(RequestHuman()) == []


def test_claim_by_another_agent_is_a_transfer() -> None:
    engine = ConversationEngine(State.AGENT)
    assert engine.handle(AgentClaimed("Bo")) == [EmitStatus(State.AGENT, "Bo")]
    assert engine.state is State.AGENT


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (State.BOT, AgentReleased()),
        (State.RESOLVED, AgentClaimed("x")),
        (State.RESOLVED, Resolved()),
        (State.RESOLVED, RequestHuman()),
        (State.BOT, ReturnedToBot()),
    ],
)
def test_invalid_transitions_raise(state: State, event: object) -> None:
    engine = ConversationEngine(state)
    with pytest.raises(InvalidTransition):
        engine.handle(event)  # type: ignore[arg-type]
    assert engine.state is state


def streaming() -> ConversationEngine:
    engine = started()
    engine.handle(TRIAGE_OK)
    assert engine.handle(Decision(1, answer=True, reason="confident")) == []
    assert engine.handle(DraftDelta(1, "Hel")) == [StreamDelta("r1", "Hel")]
    return engine


def test_ownership_lost_while_streaming_withdraws_the_reply_and_stops_the_model() -> None:
    engine = streaming()
    assert engine.handle(OwnershipLost(1)) == [AbortReply("r1"), StopDraft(1)]
    assert engine.turn is None
    assert engine.handle(DraftDelta(1, "lo")) == [], "the stream's late deltas are stale"
    assert engine.handle(DraftDone(1, "Hello")) == [], "and so is its end: nothing is persisted"


def test_ownership_lost_before_the_verdict_stops_the_model_without_a_frame() -> None:
    engine = started()
    engine.handle(DraftDelta(1, "held"))
    assert engine.handle(OwnershipLost(1)) == [StopDraft(1)]
    assert engine.handle(TRIAGE_OK) == [], "a late verdict starts nothing"


def test_refused_reply_withdraws_the_deltas_the_customer_saw() -> None:
    engine = streaming()
    assert engine.handle(DraftDone(1, "Hello")) == [PersistReply(1, "r1", "Hello")]
    assert engine.handle(OwnershipLost(1)) == [AbortReply("r1")]
    assert engine.handle(OwnershipLost(1)) == [], "withdrawn once"


def test_ownership_lost_of_another_turn_is_stale() -> None:
    engine = streaming()
    assert engine.handle(OwnershipLost(7)) == []
    assert engine.turn is not None


def test_fallback_answer_replaces_a_draft_still_waiting_for_its_verdict() -> None:
    engine = started()
    engine.handle(DraftDelta(1, "model words"))
    assert engine.handle(FallbackAnswer(1, "Offline answer")) == [
        StopDraft(1), StreamDelta("r1", "Offline answer"), PersistReply(1, "r1", "Offline answer"),
    ]  # fmt: skip
    assert engine.turn is None
    assert engine.handle(DraftDone(1, "model words")) == []


def test_fallback_answer_after_the_draft_finished_needs_no_stop() -> None:
    engine = started()
    engine.handle(DraftDone(1, "model words"))
    assert engine.handle(FallbackAnswer(1, "Offline")) == [
        StreamDelta("r1", "Offline"),
        PersistReply(1, "r1", "Offline"),
    ]


def test_fallback_answer_leaves_a_streaming_reply_and_a_handed_off_turn_alone() -> None:
    engine = streaming()
    assert engine.handle(FallbackAnswer(1, "Offline")) == []
    handed = started()
    handed.handle(Decision(1, answer=False, reason="low_confidence"))
    assert handed.handle(FallbackAnswer(1, "Offline")) == []
    assert handed.state is State.QUEUED
