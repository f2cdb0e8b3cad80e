"""How the fault tests count a turn as ended (tests/faults/accounting.py), on hand-written transcripts."""

from __future__ import annotations

from typing import Any

from tests.faults.accounting import tally, turn_ended


def customer(seq: int) -> dict[str, Any]:
    return {"type": "message", "seq": seq, "role": "customer", "text": f"question {seq}"}


def assistant(seq: int) -> dict[str, Any]:
    return {"type": "message", "seq": seq, "role": "assistant", "text": "an answer"}


def status(seq: int, state: str) -> dict[str, Any]:
    return {"type": "status", "seq": seq, "state": state}


def test_a_message_written_while_queued_ended_with_people() -> None:
    # The bot handed message 3 off; message 5 went to the agents' side, where nothing is written back.
    transcript = [customer(1), assistant(2), customer(3), status(4, "queued"), customer(5)]
    assert turn_ended(transcript, 5) == status(4, "queued")
    assert tally([([1, 3, 5], transcript, 0.1)]).never_ended == 0


def test_a_message_written_while_an_agent_holds_the_conversation_ended_with_people() -> None:
    transcript = [customer(1), status(2, "queued"), status(3, "agent"), customer(4)]
    assert turn_ended(transcript, 4) == status(3, "agent")


def test_a_bot_conversation_message_with_nothing_after_it_never_ended() -> None:
    transcript = [customer(1), assistant(2), customer(3)]
    assert turn_ended(transcript, 3) is None
    assert tally([([1, 3], transcript, 0.1)]).never_ended == 1


def test_a_conversation_returned_to_the_bot_owes_its_next_message_an_answer() -> None:
    transcript = [customer(1), status(2, "queued"), status(3, "bot"), customer(4)]
    assert turn_ended(transcript, 4) is None
    transcript = [customer(1), status(2, "queued"), status(3, "resolved"), customer(4)]
    assert turn_ended(transcript, 4) is None


def test_a_later_answer_or_status_ends_a_turn_and_the_first_one_is_returned() -> None:
    delta = {"type": "delta", "reply_id": "r1", "text": "a"}  # live only: no seq
    transcript = [customer(1), delta, assistant(2), status(3, "queued")]
    assert turn_ended(transcript, 1) == assistant(2)
    assert turn_ended([customer(1), status(2, "queued")], 1) == status(2, "queued")
