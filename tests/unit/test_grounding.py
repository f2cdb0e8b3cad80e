"""Answers that show their ground: the knowledge as cited documents in the answer request, the fake API's
citations, the sources parsed from them, and the engine's rule for an answer with no ground."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from support.conversation.engine import (
    AbortReply,
    ConversationEngine,
    CustomerMessage,
    Decision,
    DraftDelta,
    DraftDone,
    EmitStatus,
    Handoff,
    PersistReply,
    Reason,
    RequestDecision,
    State,
    StreamDelta,
    TriageDone,
)
from support.conversation.reasons import REASON_TEXT
from support.conversation.store import Event
from support.llm.answer import (
    MAX_CACHE_BREAKPOINTS,
    build_answer_request,
    count_breakpoints,
    draft_from_message,
    request_documents,
)
from support.llm.grounding import (
    CITED_TEXT_MAX_CHARS,
    citable_documents,
    front_matter,
    sources_of,
    split_sections,
)
from support.llm.offline import Example
from support.llm.policy import Policy, PolicyDocument
from support.testing.fake_anthropic import FakeAnthropic

RETURNS = "## Return window\n\nTents can be returned within 30 days of delivery."
SHIPPING = "## Delivery times\n\nParcels to Austria arrive in 3 to 5 working days."
POLICY_TEXT = f"# Shop policy\n\nWe sell outdoor gear.\n\n{RETURNS}\n\n{SHIPPING}\n"
ARTICLE = (
    "---\nurl: https://shop.example/help/rentals\ntitle: ignored\n---\n"
    "## Tent rental\n\nTents rent for 10 EUR a day."
)
GUIDANCE = "Never promise a refund above 100 EUR."
POLICY = Policy(
    text="(rendered)",
    version="v1",
    guidance=f"# Guidance\n\n## Refund limit\n\n{GUIDANCE}\n",
    documents=(
        PolicyDocument("policy", "policy", POLICY_TEXT),
        PolicyDocument("Rentals", "article", ARTICLE),
        PolicyDocument("Refund limit", "guidance", GUIDANCE),
    ),
)


def request(history: list[tuple[str, str]], message: str, **kw: Any) -> dict[str, Any]:
    return build_answer_request(
        policy=POLICY, curated_examples=kw.pop("curated", []), summary=kw.pop("summary", ""), history=history,
        retrieved_examples=[], message=message, model="claude-sonnet-4-6", max_tokens=300, **kw,
    )  # fmt: skip


# --- sections and documents ---------------------------------------------------------------------------


def test_sections_split_on_headings_outside_code_fences_and_keep_the_text_before_the_first() -> None:
    text = "Intro line.\n\n# A\n\nalpha\n\n```\n# not a heading\n```\n\n## B ##\n\nbeta\n\n### \n"
    sections = split_sections(text, "Doc")
    assert [s.title for s in sections] == ["Doc", "A", "B"]
    assert sections[1].text == "# A\n\nalpha\n\n```\n# not a heading\n```"
    assert sections[2].text == "## B ##\n\nbeta\n\n###"  # "### " is no heading: it has no title
    assert split_sections("  \n", "Doc") == ()


def test_front_matter_gives_a_public_http_url_and_is_not_sent_to_the_model() -> None:
    fields, body = front_matter(ARTICLE)
    assert fields["url"] == "https://shop.example/help/rentals"
    assert body.startswith("## Tent rental")
    policy, rentals = citable_documents(POLICY)
    assert (policy.title, policy.url, [s.title for s in policy.sections]) == (
        "policy",
        None,
        ["Shop policy", "Return window", "Delivery times"],
    )
    assert (rentals.title, rentals.url) == ("Rentals", "https://shop.example/help/rentals")
    assert "url:" not in json.dumps(request([], "hi"))
    bad = Policy(
        text="x",
        version="v",
        documents=(PolicyDocument("A", "article", "---\nurl: javascript:alert(1)\n---\nx"),),
    )
    assert citable_documents(bad)[0].url is None
    # a policy from a file is one document, its guidance section (if it ends with one) left out
    plain = Policy(
        text=f"{RETURNS}\n\n# Guidance\n\n{GUIDANCE}\n", version="v", guidance=f"# Guidance\n\n{GUIDANCE}\n"
    )
    (only,) = citable_documents(plain)
    assert only.title == "Policy"
    assert GUIDANCE not in json.dumps([s.text for s in only.sections])


# --- the request layout --------------------------------------------------------------------------------


def test_documents_open_the_first_user_turn_one_block_per_section_guidance_in_the_system() -> None:
    body = request([], "Can I return my tent?", curated=[Example("CQ", "CA")])
    (system,) = body["system"]
    assert GUIDANCE in system["text"]
    assert "Tents can be returned" not in system["text"]
    assert "cache_control" not in system
    first = body["messages"][0]
    assert first["role"] == "user"
    policy, rentals, examples, message = first["content"]
    for document in (policy, rentals):
        assert document["type"] == "document"
        assert document["citations"] == {"enabled": True}
    assert policy["source"]["content"][1] == {"type": "text", "text": RETURNS}
    assert "cache_control" not in policy
    assert rentals["cache_control"] == {"type": "ephemeral"}
    assert "CQ" in examples["text"]
    assert examples["cache_control"] == {"type": "ephemeral"}
    assert message == {"type": "text", "text": "Can I return my tent?"}
    assert GUIDANCE not in json.dumps(body["messages"]), "a rule for the assistant is never a citable source"


def test_breakpoints_stay_within_four_and_no_customer_text_reaches_the_system() -> None:
    history: list[tuple[str, str]] = []
    for turn in range(5):
        body = request(history, f"CUSTOMER-{turn}", summary="SUMMARY-X" if turn > 2 else "")
        assert count_breakpoints(body) <= MAX_CACHE_BREAKPOINTS
        assert "CUSTOMER" not in json.dumps(body["system"])
        assert "SUMMARY" not in json.dumps(body["system"])
        documents = [b for m in body["messages"] for b in m["content"] if b["type"] == "document"]
        assert len(documents) == 2
        assert all(b["type"] != "document" for m in body["messages"][1:] for b in m["content"])
        history += [("customer", f"CUSTOMER-{turn}"), ("assistant", f"ANSWER-{turn}")]
    assert count_breakpoints(body) == MAX_CACHE_BREAKPOINTS


# --- the fake API, through the real SDK ----------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Any:
    with FakeAnthropic() as fake:
        yield anthropic.Anthropic(base_url=fake.url, api_key="test", max_retries=0)


def test_a_streamed_answer_cites_the_section_it_is_about_and_small_talk_cites_nothing(client: Any) -> None:
    body = request([], "How many days do I have to return my tent?")
    with client.messages.stream(**body) as stream:
        final = stream.get_final_message()
    draft = draft_from_message(final, request_documents(POLICY))
    assert draft.sources == (
        {"document": "policy", "section": "Return window", "cited_text": RETURNS.split("\n\n", 1)[1]},
    )
    rental = client.messages.create(**request([], "How much is a tent rental a day?"))
    assert draft_from_message(rental, request_documents(POLICY)).sources[0] == {
        "document": "Rentals", "section": "Tent rental", "url": "https://shop.example/help/rentals",
        "cited_text": "Tents rent for 10 EUR a day.",  # the heading line is the section's title
    }  # fmt: skip
    for small_talk in ("Hi there!", "thanks, great"):
        with client.messages.stream(**request([], small_talk)) as stream:
            final = stream.get_final_message()
        assert final.content[0].citations is None
        assert draft_from_message(final, request_documents(POLICY)).sources == ()


def test_the_fake_refuses_documents_in_the_system_and_mixed_citations_like_the_api(client: Any) -> None:
    body = request([], "Can I return my tent?")
    document = body["messages"][0]["content"][0]
    with pytest.raises(anthropic.BadRequestError, match=r"system\.0\.type"):
        client.messages.create(**{**body, "system": [document]})
    mixed = json.loads(json.dumps(body))
    mixed["messages"][0]["content"][1]["citations"] = {"enabled": False}
    with pytest.raises(anthropic.BadRequestError, match="all documents or on none"):
        client.messages.create(**mixed)
    empty = json.loads(json.dumps(body))
    empty["messages"][0]["content"][0]["source"]["content"][0]["text"] = " "
    with pytest.raises(anthropic.BadRequestError, match="non-empty"):
        client.messages.create(**empty)


# --- parsing citations ---------------------------------------------------------------------------------


def test_sources_name_each_cited_section_once_in_order_and_cut_long_cited_text() -> None:
    documents = request_documents(POLICY)
    long_text = "word " * 200
    content = [
        {"type": "text", "text": "Intro. "},
        {"type": "text", "text": "Both.", "citations": [
            {"type": "content_block_location", "document_index": 0, "start_block_index": 1,
             "end_block_index": 3, "cited_text": long_text},
            {"type": "content_block_location", "document_index": 0, "start_block_index": 2,
             "end_block_index": 3, "cited_text": "again"},
            {"type": "char_location", "document_index": 1, "cited_text": "Tents rent for 10 EUR"},
            {"type": "content_block_location", "document_index": 7, "start_block_index": 0,
             "end_block_index": 1, "cited_text": "a document the request did not carry"},
        ]},
    ]  # fmt: skip
    sources = sources_of(content, documents)
    assert [(s["document"], s["section"]) for s in sources] == [
        ("policy", "Return window"), ("policy", "Delivery times"), ("Rentals", "Tent rental"),
    ]  # fmt: skip
    assert len(sources[0]["cited_text"]) == CITED_TEXT_MAX_CHARS
    assert sources[0]["cited_text"].endswith("…")
    assert sources[2]["url"] == "https://shop.example/help/rentals"


def test_the_message_frame_carries_sources_without_cited_text_and_agents_get_it() -> None:
    sources = [{"document": "policy", "section": "Return window", "cited_text": "Tents can be returned"}]
    event = Event(seq=3, id="e", type="message", role="assistant", text="Yes.", created_at="t",
                  reply_id="r2", extra={"sources": sources})  # fmt: skip
    assert event.to_frame()["sources"] == [{"document": "policy", "section": "Return window"}]
    assert event.to_frame(cited_text=True)["sources"] == sources
    assert (
        "sources"
        not in Event(seq=4, id="f", type="message", role="assistant", text="x", created_at="t").to_frame()
    )


# --- the engine: an answer with no ground --------------------------------------------------------------

QUESTION = TriageDone(seq=1, wants_human=False, confidence=0.9, intent="returns_refunds", needs_ground=True)
SMALL_TALK = TriageDone(seq=1, wants_human=False, confidence=0.9, intent="other", needs_ground=False)
SOURCES = ({"document": "policy", "section": "Return window", "cited_text": "..."},)


def started() -> ConversationEngine:
    engine = ConversationEngine()
    engine.handle(CustomerMessage(1, "Can I return it?"))
    return engine


def test_an_ungrounded_draft_to_a_question_hands_off_instead_of_streaming() -> None:
    engine = started()
    engine.handle(DraftDelta(1, "Sure, anytime."))
    assert engine.handle(DraftDone(1, "Sure, anytime.", grounding_checked=True)) == []
    assert engine.handle(QUESTION) == [RequestDecision(1, QUESTION)]
    actions = engine.handle(Decision(1, answer=True, reason="confident"))
    assert actions == [
        Handoff(1, Reason.UNGROUNDED, QUESTION, "Sure, anytime."),  # the draft stays for the agent
        EmitStatus(State.QUEUED, reason="ungrounded"),
    ]
    assert REASON_TEXT["ungrounded"] == "Bot answer not grounded in the policy"


def test_an_ungrounded_draft_finishing_after_streaming_began_withdraws_the_reply() -> None:
    engine = started()
    engine.handle(QUESTION)
    assert engine.handle(Decision(1, answer=True, reason="confident")) == []
    assert engine.handle(DraftDelta(1, "Sure")) == [StreamDelta("r1", "Sure")]
    assert engine.handle(DraftDone(1, "Sure", grounding_checked=True)) == [
        AbortReply("r1"),
        Handoff(1, Reason.UNGROUNDED, QUESTION, "Sure"),
        EmitStatus(State.QUEUED, reason="ungrounded"),
    ]


def test_grounded_answers_small_talk_and_unchecked_drafts_are_answered_and_routing_reasons_come_first() -> (
    None
):
    engine = started()
    engine.handle(DraftDone(1, "Within 30 days.", sources=SOURCES, grounding_checked=True))
    engine.handle(QUESTION)
    assert engine.handle(Decision(1, answer=True, reason="ok")) == [
        PersistReply(1, "r1", "Within 30 days.", SOURCES)
    ]
    for triage, checked in ((SMALL_TALK, True), (QUESTION, False)):
        engine = started()
        engine.handle(DraftDone(1, "Hello!", grounding_checked=checked))
        engine.handle(triage)
        assert engine.handle(Decision(1, answer=True, reason="ok")) == [PersistReply(1, "r1", "Hello!")]
    engine = started()
    engine.handle(DraftDone(1, "Sure.", grounding_checked=True))
    engine.handle(QUESTION)
    assert engine.handle(Decision(1, answer=False, reason="low_confidence"))[0] == Handoff(
        1, "low_confidence", QUESTION, "Sure."
    )
