"""Merging the frames of inputs handled together: fewer frames, the same text for the customer."""

from __future__ import annotations

from support.conversation import engine as e
from support.conversation.pipeline import coalesce


def test_adjacent_deltas_of_one_reply_become_one() -> None:
    actions: list[e.Action] = [
        e.StreamDelta("r1", "Hel"),
        e.StreamDelta("r1", "lo"),
        e.StreamDelta("r1", "!"),
    ]
    assert coalesce(actions) == [e.StreamDelta("r1", "Hello!")]


def test_deltas_before_their_reply_is_persisted_are_kept_merged() -> None:
    actions: list[e.Action] = [
        e.StreamDelta("r1", "ta"),
        e.StreamDelta("r1", "il"),
        e.PersistReply(seq=3, reply_id="r1", text="all of it, tail"),
        e.RequestRating(),
    ]
    assert coalesce(actions) == [
        e.StreamDelta("r1", "tail"),
        e.PersistReply(seq=3, reply_id="r1", text="all of it, tail"),
        e.RequestRating(),
    ]


def test_other_actions_and_other_replies_keep_their_order() -> None:
    abort = e.AbortReply("r1")
    actions: list[e.Action] = [
        e.StreamDelta("r1", "a"),
        abort,
        e.StreamDelta("r2", "b"),
        e.StreamDelta("r2", "c"),
        e.PersistReply(seq=4, reply_id="r1", text="a"),  # another reply's: r2's delta stays
    ]
    assert coalesce(actions) == [
        e.StreamDelta("r1", "a"),
        abort,
        e.StreamDelta("r2", "bc"),
        e.PersistReply(seq=4, reply_id="r1", text="a"),
    ]
    assert coalesce([]) == []
