"""The redaction detectors, one by one, and how placeholders are numbered."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from support.llm.answer import build_answer_request
from support.llm.offline import Example
from support.llm.policy import Policy
from support.redaction import Redactor, _DetectionCache, merge_counts
from support.settings import RedactionSettings


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(RedactionSettings())


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",  # Visa, spaces
        "5555-5555-5555-4444",  # Mastercard, dashes
        "378282246310005",  # Amex, 15 digits run together
        "4111.1111.1111.1111",  # dots
        "٤١١١ ١١١١ ١١١١ ١١١١",  # Arabic-Indic digits
        "3782 822463 10005",  # Amex, grouped 4-6-5
        "6011 0009 9013 9424",  # Discover
    ],
)
def test_a_luhn_valid_card_number_becomes_a_card_placeholder(redactor: Redactor, card: str) -> None:
    result = redactor.redact(f"my card is {card}, thanks")
    assert result.text == "my card is [CARD_1], thanks"
    assert result.counts == {"card": 1}


def test_a_card_number_failing_the_luhn_check_is_left_alone(redactor: Redactor) -> None:
    text = "the reference is 4111 1111 1111 1112"
    assert redactor.redact(text).text == text


def test_a_card_followed_by_its_expiry_is_found_inside_the_digit_run(redactor: Redactor) -> None:
    assert redactor.redact("4111111111111111 12 27").text == "[CARD_1] 12 27"


def test_a_card_right_after_a_word_is_still_found(redactor: Redactor) -> None:
    assert redactor.redact("card:4111111111111111exp").text == "card:[CARD_1]exp"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CVV 123", "CVV [CVV_1]"),
        ("my cvv is 123", "my cvv is [CVV_1]"),
        ("CVC: 9876", "CVC: [CVV_1]"),
        ("the security code is 321.", "the security code is [CVV_1]."),
        ("cvv2=555", "cvv2=[CVV_1]"),
        ("(CVV) 737", "(CVV) [CVV_1]"),
    ],
)
def test_a_security_code_introduced_by_its_name_is_redacted(
    redactor: Redactor, text: str, expected: str
) -> None:
    assert redactor.redact(text).text == expected


def test_three_digits_without_a_security_code_word_stay(redactor: Redactor) -> None:
    assert redactor.redact("I want 123 of them").text == "I want 123 of them"


def test_an_email_address_is_redacted(redactor: Redactor) -> None:
    result = redactor.redact("write to John.Doe+orders@Example.co.uk please")
    assert result.text == "write to [EMAIL_1] please"
    assert result.counts == {"email": 1}


@pytest.mark.parametrize(
    "phone",
    ["+1 415-555-2671", "(415) 555-2671", "+44 20 7946 0958", "+49 30 901820", "+49 151 23456789"],
)
def test_a_phone_number_is_redacted(redactor: Redactor, phone: str) -> None:
    assert redactor.redact(f"call me on {phone} today").text == "call me on [PHONE_1] today"


def test_a_national_phone_number_is_read_in_the_configured_region() -> None:
    german = Redactor(RedactionSettings(phone_region="DE"))
    assert german.redact("Ruf an: 030 901820").text == "Ruf an: [PHONE_1]"
    assert Redactor(RedactionSettings(phone_region="US")).redact("Ruf an: 030 901820").text == (
        "Ruf an: 030 901820"
    )


@pytest.mark.parametrize(
    "iban", ["DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32"]
)
def test_an_iban_with_a_valid_checksum_is_redacted(redactor: Redactor, iban: str) -> None:
    result = redactor.redact(f"IBAN: {iban} thanks")
    assert result.text == "IBAN: [IBAN_1] thanks"
    assert result.counts == {"iban": 1}


def test_an_iban_with_a_wrong_checksum_is_left_alone(redactor: Redactor) -> None:
    text = "IBAN: GB82 WEST 1234 5698 7654 33"
    assert redactor.redact(text).text == text


@pytest.mark.parametrize(
    "text",
    [
        "Where is order 1234567?",
        "order #20240305 placed on 2024-03-05",
        "delivered 05/03/2024 at 14:30",
        "it cost $1,234.56 (or EUR 49,99)",
        "I bought 10000000 grains of rice",
        "ticket 123-4567, call me at 555-1234",
        "order 123456789012",
        "postcode 10115 Berlin, since 1999",
        "tracking 1Z999AA10123456784",
        "order 4155552671",  # also a valid US phone number, but labelled as an order
        "Invoice no. 4155552671",
        "ref #4155552671",
        "price 1.234.567,89, version 1.2.3, host 192.168.100.200",
    ],
)
def test_order_numbers_dates_prices_and_ordinary_numbers_are_not_redacted(
    redactor: Redactor, text: str
) -> None:
    result = redactor.redact(text)
    assert result.text == text
    assert result.counts == {}


def test_the_same_value_keeps_its_number_and_a_new_one_gets_the_next(redactor: Redactor) -> None:
    result = redactor.redact("a@x.io, b@x.io and again A@x.io")
    assert result.text == "[EMAIL_1], [EMAIL_2] and again [EMAIL_1]"
    assert result.counts == {"email": 3}


def test_a_new_value_never_takes_a_number_the_text_already_shows(redactor: Redactor) -> None:
    assert redactor.redact("[EMAIL_1] and c@x.io").text == "[EMAIL_1] and [EMAIL_2]"


def test_redact_many_numbers_across_texts_and_each_result_depends_only_on_earlier_texts(
    redactor: Redactor,
) -> None:
    first = ["mail a@x.io", "call +1 415-555-2671"]
    grown = [*first, "my other mail is b@x.io, the first was a@x.io"]
    before = [r.text for r in redactor.redact_many(first)]
    after = [r.text for r in redactor.redact_many(grown)]
    assert after[:2] == before == ["mail [EMAIL_1]", "call [PHONE_1]"]
    assert after[2] == "my other mail is [EMAIL_2], the first was [EMAIL_1]"


def test_disabled_redaction_returns_the_text_unchanged() -> None:
    off = Redactor(RedactionSettings(enabled=False))
    assert off.redact("a@x.io 4111 1111 1111 1111").text == "a@x.io 4111 1111 1111 1111"


def test_only_the_configured_kinds_are_detected() -> None:
    only_cards = Redactor(RedactionSettings(kinds=["card"]))
    assert only_cards.redact("a@x.io 4111 1111 1111 1111").text == "a@x.io [CARD_1]"


def test_an_extra_pattern_becomes_its_own_placeholder_kind() -> None:
    custom = Redactor(RedactionSettings(patterns={"member_id": r"\bM-\d{8}\b"}))
    result = custom.redact("member M-12345678, order 1234567")
    assert result.text == "member [MEMBER_ID_1], order 1234567"
    assert result.counts == {"member_id": 1}


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_REDACTION_KINDS", '["email"]')
    monkeypatch.setenv("SWITCHBOARD_REDACTION_PHONE_REGION", "de")
    monkeypatch.setenv("SWITCHBOARD_REDACTION_PATTERNS", '{"ssn": "\\\\d{3}-\\\\d{2}-\\\\d{4}"}')
    settings = RedactionSettings()
    assert settings.kinds == ["email"]
    assert settings.phone_region == "DE"
    assert Redactor(settings).redact("ssn 078-05-1120").text == "ssn [SSN_1]"


@pytest.mark.parametrize(
    "bad",
    [
        {"kinds": ["passport"]},
        {"phone_region": "Germany"},
        {"patterns": {"bad name": "x"}},
        {"patterns": {"email": "x"}},
        {"patterns": {"broken": "("}},
        {"patterns": {"empty": "a*"}},
    ],
)
def test_invalid_redaction_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RedactionSettings.model_validate(bad)


def test_merge_counts_adds_per_kind() -> None:
    assert merge_counts({"card": 1}, {"card": 2, "email": 1}, {}) == {"card": 3, "email": 1}


def _answer_request(redactor: Redactor, history: list[tuple[str, str]], message: str) -> dict[str, Any]:
    return build_answer_request(
        policy=Policy.from_text("Returns within 30 days."),
        curated_examples=[],
        summary="The customer's card is [CARD_1].",
        history=history,
        retrieved_examples=[Example("my mail is a@x.io", "Thanks, noted.")],
        message=message,
        model="claude-sonnet-4-6",
        max_tokens=100,
        redactor=redactor,
    )


def test_the_answer_prompts_history_redacts_to_the_same_bytes_on_the_next_turn(redactor: Redactor) -> None:
    turn_one = [("customer", "card 4111 1111 1111 1111, mail b@x.io"), ("assistant", "Thanks!")]
    first = _answer_request(redactor, turn_one, "and my phone is +1 415-555-2671")
    second = _answer_request(
        redactor,
        [*turn_one, ("customer", "and my phone is +1 415-555-2671"), ("assistant", "Noted.")],
        "a second card: 5555 5555 5555 4444",
    )
    history_blocks = [b.get("text") for m in first["messages"][:-1] for b in m["content"]]
    later_blocks = [b.get("text") for m in second["messages"] for b in m["content"]]
    assert later_blocks[: len(history_blocks)] == history_blocks
    # after the knowledge head (a document, the examples) and the summary, which already shows [CARD_1]
    assert history_blocks[3] == "card [CARD_2], mail [EMAIL_1]"
    assert later_blocks[-1] == "a second card: [CARD_3]"
    assert "my mail is [EMAIL_1]" in later_blocks[-2]  # the example, redacted on its own
    assert first["redactions"] == {"card": 1, "email": 1, "phone": 1}
    assert second["redactions"] == {"card": 2, "email": 1, "phone": 1}


def test_without_a_redactor_the_answer_request_carries_no_redaction_counts() -> None:
    request = build_answer_request(
        policy=Policy.from_text("Returns within 30 days."),
        curated_examples=[],
        summary="",
        history=[],
        retrieved_examples=[],
        message="a@x.io",
        model="claude-sonnet-4-6",
        max_tokens=100,
    )
    assert "redactions" not in request
    assert request["messages"][-1]["content"][-1]["text"] == "a@x.io"


def test_the_detection_cache_stays_within_its_character_budget() -> None:
    cache = _DetectionCache(max_chars=10)
    cache.put("aaaa", ())
    cache.put("bbbb", ())
    assert cache.get("aaaa") == ()  # now the most recently used
    cache.put("cccc", ())  # 12 characters: the least recently used ("bbbb") goes
    assert cache.get("bbbb") is None
    assert cache.get("aaaa") == ()
    assert cache.get("cccc") == ()
    cache.put("x" * 11, ())  # larger than the whole budget: never kept
    assert cache.get("x" * 11) is None


def test_with_patterns_adds_kinds_and_keeps_the_settings(redactor: Redactor) -> None:
    stricter = redactor.with_patterns({"order": r"(?i)(?<=order )\d{5,}"})
    assert stricter.redact("order 1234567, a@x.io").text == "order [ORDER_1], [EMAIL_1]"
    assert redactor.redact("order 1234567").text == "order 1234567"
    with pytest.raises(ValidationError):
        redactor.with_patterns({"email": r"x"})


def test_a_french_number_written_with_dots_is_not_taken_for_a_date() -> None:
    french = Redactor(RedactionSettings(phone_region="FR"))
    assert french.redact("appelez le 06.12.34.56.78").text == "appelez le [PHONE_1]"
    assert french.redact("livré le 12.03.2024 à 14:30").text == "livré le 12.03.2024 à 14:30"


def test_a_phone_number_after_a_pasted_order_list_is_found(redactor: Redactor) -> None:
    orders = "".join(
        f"Order {1234567 + i} from 2024-03-{i + 1:02d}, {i + 1} items at ${i + 9}.99; " for i in range(28)
    )
    result = redactor.redact(orders + "call me at (415) 555-2671")
    assert result.text == orders + "call me at [PHONE_1]"
    assert result.counts == {"phone": 1}


def test_a_diners_card_written_4_6_4_is_found_but_a_run_of_short_numbers_is_no_card(
    redactor: Redactor,
) -> None:
    assert redactor.redact("3056 930902 5904").text == "[CARD_1]"
    run = "41 11 11 11 11 11 11 11"  # the digits of a valid card, written as pairs: a list, not a card
    assert redactor.redact(run).text == run


def test_two_ibans_glued_to_each_other_and_to_a_card_are_all_found(redactor: Redactor) -> None:
    text = "4111 1111 1111 1111DE89 3704 0044 0532 0130 00 GB82 WEST 1234 5698 7654 32"
    assert redactor.redact(text).text == "[CARD_1][IBAN_1] [IBAN_2]"
