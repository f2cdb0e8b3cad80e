"""The search box's query language: parsed once, rendered for FTS5 and for websearch_to_tsquery, so no
input is ever the databases' own syntax; and snippets with the matched words' offsets."""

from __future__ import annotations

import pytest

from support.errors import ValidationFailed
from support.search import parse_query, snippet


@pytest.mark.parametrize(
    ("raw", "fts5", "websearch"),
    [
        ("refund tent", '"refund" AND "tent"', "refund tent"),
        ('"broken zipper" -tent', '"broken zipper" NOT "tent"', '"broken zipper" -tent'),
        ("lantern OR stove refund", '("lantern" OR "stove") AND "refund"', "lantern or stove refund"),
        # FTS5 operators are words; punctuation inside a token makes it a phrase.
        (
            "NEAR(refund, 2) col:x* ^y",
            '"near refund" AND "2" AND "col x" AND "y"',
            '"near refund" 2 "col x" y',
        ),
        ("The REFUND and the tent", '"refund" AND "tent"', "refund tent"),
        ("café Ünïcode", '"café" AND "ünïcode"', "café ünïcode"),
    ],
)
def test_queries_are_rendered_as_quoted_terms_for_both_databases(raw: str, fts5: str, websearch: str) -> None:
    query = parse_query(raw)
    assert query.fts5() == fts5
    assert query.websearch() == websearch


@pytest.mark.parametrize(
    "raw", ['"', '"refund', "*", "-", "-refund", "()", "the and", "", "x" * 201, "ab " * 13]
)
def test_queries_with_nothing_to_search_or_broken_syntax_are_refused(raw: str) -> None:
    with pytest.raises(ValidationFailed):
        parse_query(raw)


def test_a_snippet_keeps_the_match_in_view_and_says_where_the_words_are() -> None:
    body = "Hello there. " * 20 + "My refunds for the tent were sent twice. " + "Thanks! " * 30
    shown, marks = snippet(body, ["refund", "tent"])
    assert shown.startswith("…")
    assert shown.endswith("…")
    assert len(shown) <= 162
    assert [shown[a:b] for a, b in marks] == ["refunds", "tent"]
    assert snippet("<b>refund</b>", ["refund"]) == ("<b>refund</b>", [(3, 9)])  # text, not markup
