"""The offline responder: answers from the shipped sample policy and approved examples, or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.llm.offline import (
    ANSWER_MAX_CHARS,
    MAX_PASSAGE_CHARS,
    OFFLINE_LABEL,
    OFFLINE_MATCH_THRESHOLD,
    Bm25Index,
    Example,
    OfflineResponder,
    split_passages,
    tokenize,
)

POLICY_PATH = Path(__file__).resolve().parents[2] / "support" / "policy" / "sample_policy.md"
POLICY = POLICY_PATH.read_text(encoding="utf-8")

FESTIVAL = Example(
    question="Can I rent a tent for a music festival?",
    answer="Yes, festival trips are fine. Please dry the tent before you send it back.",
)


@pytest.fixture(scope="module")
def responder() -> OfflineResponder:
    return OfflineResponder(POLICY, threshold=OFFLINE_MATCH_THRESHOLD)


def test_the_sample_policy_is_long_enough_to_be_cached_by_every_model() -> None:
    # 4,096 tokens is the smallest cacheable prefix (Claude Haiku); English runs about 4 characters a token.
    assert len(POLICY) >= 26_000


@pytest.mark.parametrize(
    ("question", "section", "fragment"),
    [
        ("How long do I have to return a tent?", "Returns and refunds › Return window", "30 days"),
        ("What does a rental deposit cost?", "Gear rentals › Rental prices and deposits", "EUR 150"),
        ("Do you ship to Canada?", "Shipping › Shipping zones and warehouses", "Canada"),
        ("How do I cancel my Trail Club membership?", "Trail Club membership › Upgrading", "cancel"),
        ("Do my points expire?", "Trail Club membership › Earning and using points", "24 months"),
        ("Can I pay with Klarna?", "Orders and payment › Payment methods", "Klarna"),
        ("Do you price match Amazon?", "Price matching and promotions › Price match promise", "Amazon"),
        ("What are your opening hours?", "Contact and opening hours", ""),
        ("How do I reset my password?", "Account, privacy and data requests › Your account", "reset"),
        ("Is there a recall on the stove I bought?", "Product safety and recalls", "stove"),
        ("How do I track my order?", "Shipping › Tracking your order", "tracking"),
        ("What happens if I return a rental late?", "Gear rentals › Late returns", "late fee"),
    ],
)
def test_a_policy_question_is_answered_from_the_section_that_covers_it(
    responder: OfflineResponder, question: str, section: str, fragment: str
) -> None:
    answer = responder.answer(question)
    assert answer is not None
    assert answer.source == "policy"
    assert answer.heading.startswith(section)
    assert fragment in answer.text
    assert OFFLINE_MATCH_THRESHOLD <= answer.score <= 1.0


@pytest.mark.parametrize(
    "question",
    [
        "What's the weather in Paris?",
        "Write me a poem about cats",
        "What is the capital of France?",
        "Who won the football match yesterday?",
        "Tell me a joke",
        "Best hiking trails in Scotland?",
        "",
        "?!",
        "how do I ...",
    ],
)
def test_an_off_topic_or_empty_question_gets_no_answer(responder: OfflineResponder, question: str) -> None:
    assert responder.answer(question) is None


def test_every_answer_carries_the_automatic_answer_label(responder: OfflineResponder) -> None:
    answer = responder.answer("How long do I have to return a tent?")
    assert answer is not None
    assert answer.text.startswith(f"{OFFLINE_LABEL}\n\n")
    assert "You can return most items" in answer.text


def test_an_example_that_matches_is_preferred_to_the_policy() -> None:
    responder = OfflineResponder(POLICY, threshold=OFFLINE_MATCH_THRESHOLD, examples=[FESTIVAL])
    answer = responder.answer("Can I rent a tent for a festival?")
    assert answer is not None
    assert (answer.source, answer.heading) == ("example", FESTIVAL.question)
    assert answer.text == f"{OFFLINE_LABEL}\n\n{FESTIVAL.answer}"


def test_an_example_below_the_threshold_leaves_the_policy_answer() -> None:
    responder = OfflineResponder(POLICY, threshold=OFFLINE_MATCH_THRESHOLD, examples=[FESTIVAL])
    answer = responder.answer("What does a rental deposit cost?")
    assert answer is not None
    assert answer.source == "policy"
    assert answer.heading == "Gear rentals › Rental prices and deposits"


def test_an_example_with_an_empty_answer_is_never_given() -> None:
    blank = Example(question="Can I rent a tent for a music festival?", answer="  ")
    responder = OfflineResponder(POLICY, threshold=OFFLINE_MATCH_THRESHOLD, examples=[blank])
    # without the example, "music festival" is nowhere in the policy: nothing matches well enough
    assert responder.answer("Can I rent a tent for a music festival?") is None


def test_examples_alone_answer_when_the_policy_is_empty() -> None:
    responder = OfflineResponder("", threshold=OFFLINE_MATCH_THRESHOLD, examples=[FESTIVAL])
    answer = responder.answer("can i rent a tent for a festival")
    assert answer is not None
    assert answer.source == "example"


def test_a_long_answer_is_trimmed_at_a_sentence_boundary() -> None:
    sentence = "Festival rentals are welcome and the tent comes with a repair kit for small tears. "
    long_answer = Example(question=FESTIVAL.question, answer=sentence * 20)
    responder = OfflineResponder("", threshold=OFFLINE_MATCH_THRESHOLD, examples=[long_answer])
    answer = responder.answer(FESTIVAL.question)
    assert answer is not None
    body = answer.text.removeprefix(f"{OFFLINE_LABEL}\n\n")
    assert len(body) <= ANSWER_MAX_CHARS
    assert body.endswith("small tears.")
    assert len(body) > ANSWER_MAX_CHARS - len(sentence)


def test_answers_are_deterministic_across_instances_and_calls() -> None:
    questions = ["How long do I have to return a tent?", "Do you ship to Canada?", "cancel my order"]
    first = OfflineResponder(POLICY, threshold=OFFLINE_MATCH_THRESHOLD, examples=[FESTIVAL])
    second = OfflineResponder(POLICY, threshold=OFFLINE_MATCH_THRESHOLD, examples=[FESTIVAL])
    answers = [first.answer(q) for q in questions]
    assert answers == [second.answer(q) for q in questions]
    assert answers == [first.answer(q) for q in questions]


@pytest.mark.parametrize("policy", ["", "   \n\n", "# Title only\n\n## Empty section\n"])
def test_an_empty_policy_answers_nothing(policy: str) -> None:
    responder = OfflineResponder(policy, threshold=OFFLINE_MATCH_THRESHOLD)
    assert responder.answer("How long do I have to return a tent?") is None


def test_a_stricter_threshold_hands_off_a_partial_match() -> None:
    question = "My zip broke, is it covered by warranty?"  # "broke" is not a word the policy uses
    lenient = OfflineResponder(POLICY, threshold=OFFLINE_MATCH_THRESHOLD).answer(question)
    assert lenient is not None
    assert lenient.heading.startswith("Warranty and repairs")
    assert lenient.score < 1.0
    assert OfflineResponder(POLICY, threshold=0.95).answer(question) is None


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_a_threshold_outside_zero_to_one_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        OfflineResponder(POLICY, threshold=threshold)


def test_passages_keep_their_heading_path_and_a_lead_in_stays_with_its_list() -> None:
    text = (
        "# Title\nIntro.\n\n## Shipping\n### Zones\nOur zones are:\n\n- EU\n- UK\n\nMore.\n## Gifts\nCards."
    )
    passages = split_passages(text)
    assert [(p.headings, p.text) for p in passages] == [
        (("Title",), "Intro."),
        (("Shipping", "Zones"), "Our zones are:\n- EU\n- UK"),
        (("Shipping", "Zones"), "More."),
        (("Gifts",), "Cards."),
    ]
    assert passages[1].heading == "Shipping › Zones"


def test_a_long_paragraph_is_cut_at_sentence_boundaries() -> None:
    paragraph = " ".join(f"Rule number {i} applies to every order we ship." for i in range(60))
    passages = split_passages(f"## Rules\n{paragraph}", max_chars=300)
    assert len(passages) > 1
    assert all(len(p.text) <= 300 and p.text.endswith(".") for p in passages)
    assert " ".join(p.text for p in passages) == paragraph


def test_every_sample_policy_passage_is_bounded_and_under_a_section() -> None:
    passages = split_passages(POLICY)
    assert len(passages) > 50
    assert all(0 < len(p.text) <= MAX_PASSAGE_CHARS for p in passages)
    assert all(p.headings and not p.text.startswith("#") for p in passages)


def test_tokenize_folds_case_drops_stopwords_and_meets_inflections() -> None:
    assert tokenize("How do I RETURN my Tents?") == tokenize("returned tent")
    assert tokenize("shipping") == tokenize("shipped") == tokenize("ships")
    assert tokenize("the of and what how") == []


def test_a_query_word_the_corpus_never_uses_keeps_the_score_below_one_half() -> None:
    index = Bm25Index([("returns", "", "Return a tent within 30 days."), ("gifts", "", "Gift cards.")])
    assert index.search("return tent", 1) == [("returns", 1.0)]
    [(item, score)] = index.search("tent paris", 1)
    assert item == "returns"
    assert 0.0 < score < 0.5
    assert index.search("poem about cats", 5) == []


def test_a_title_match_breaks_a_tie_in_coverage() -> None:
    index = Bm25Index(
        [("rentals", "Rentals", "Dry a tent before its return."), ("returns", "Returns", "Tents.")]
    )
    assert [item for item, _ in index.search("return a tent", 2)] == ["returns", "rentals"]
