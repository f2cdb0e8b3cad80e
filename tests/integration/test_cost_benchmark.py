"""The cost benchmark (benchmarks/cost.py): its dataset, its long policy, and a small real replay that shows
Switchboard's answer prompts reading the shared policy prefix across conversations and the history across
turns, against a naive baseline that caches nothing."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import cost
from benchmarks.data import make_conversations
from support.llm.tokens import estimate_tokens
from support.llm.triage import Triage
from support.settings import DEFAULT_INTENTS, DEFAULT_POLICY_PATH
from support.testing.fake_anthropic import estimate_tokens as fake_tokens


def test_the_committed_dataset_is_what_its_seeded_script_generates() -> None:
    committed = cost.CONVERSATIONS_PATH.read_text(encoding="utf-8").splitlines()
    regenerated = make_conversations.generate(len(committed), make_conversations.DEFAULT_SEED)
    assert [json.dumps(c, ensure_ascii=False) for c in regenerated] == committed


def test_dataset_has_200_conversations_of_4_to_12_turns_with_valid_verdicts_and_late_handoffs() -> None:
    conversations = cost.load_conversations()
    assert len(conversations) >= 200
    seen: dict[str, tuple[str, int]] = {}
    for conv in conversations:
        turns = conv["turns"]
        assert 4 <= len(turns) <= 12, conv["id"]
        # Only the last turn may go to a person: both systems then replay exactly the same turns.
        assert all(t["expected"] == "answer" for t in turns[:-1]), conv["id"]
        for turn in turns:
            verdict = Triage.model_validate(turn["triage"], context={"taxonomy": DEFAULT_INTENTS})
            assert verdict.intent in DEFAULT_INTENTS
            assert turn["answer_tokens"] > 0
            key = (json.dumps(turn["triage"], sort_keys=True), turn["answer_tokens"])
            # The fake answers from the customer's words alone, so equal words must mean equal replies.
            assert seen.setdefault(turn["text"], key) == key
    assert make_conversations.expected_routes(conversations[0]["turns"]) == [
        t["expected"] for t in conversations[0]["turns"]
    ]


def test_long_policy_is_about_20000_tokens_and_contains_the_sample_policy() -> None:
    long_text = cost.LONG_POLICY_PATH.read_text(encoding="utf-8")
    assert 19_000 <= estimate_tokens(long_text) <= 21_000
    sample = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    headings = [line for line in sample.splitlines() if line.startswith("## ")]
    assert headings
    assert all(h in long_text.splitlines() for h in headings)


def test_answer_text_has_exactly_the_requested_tokens_and_is_deterministic() -> None:
    text = cost.answer_text("can I return my tent?", 137)
    assert fake_tokens(text) == 137
    assert cost.answer_text("can I return my tent?", 137) == text
    assert cost.answer_text("can I return my boots?", 137) != text


async def test_replay_reads_the_policy_prefix_across_conversations_and_the_history_across_turns(
    tmp_path: Path,
) -> None:
    conversations = cost.load_conversations(limit=4)
    turns = [t for c in conversations for t in c["turns"]]
    lines: list[str] = []
    result = await cost.run_policy("sample", DEFAULT_POLICY_PATH, conversations, 2, lines.append)

    assert not any(result["checks"].values()), result["checks"]  # routes as expected, every reply scripted
    sb, naive = result["switchboard"], result["naive"]
    assert sb["calls_by_purpose"] == {"answer": len(turns), "triage": len(turns)}
    assert naive["calls_by_purpose"] == {"answer": len(turns)}
    prefix = sb["cold_cache_cost_per_conversation_usd"]["prefix_tokens"]
    answer = sb["tokens_by_purpose"]["answer"]
    # The shared prefix is written once for all four conversations, and every later call reads it.
    assert prefix < answer["cache_write_5m"] < 2 * prefix
    assert answer["cache_read"] >= (len(turns) - 1) * prefix
    # Each turn pays full price only for the new customer message: the history is read from the cache.
    assert answer["input"] == sum(fake_tokens(t["text"]) for t in turns)
    assert sb["answer_cache_hit_ratio"] > 0.9
    naive_answer = naive["tokens_by_purpose"]["answer"]
    assert naive_answer["cache_read"] == naive_answer["cache_write_5m"] == 0
    assert naive_answer["input"] > answer["cache_read"]
    assert result["reduction_pct"]["mean"] > 60
    per_conversation = sb["cost_per_conversation_usd"]
    assert per_conversation["n"] == 4
    assert per_conversation["total"] > 0
