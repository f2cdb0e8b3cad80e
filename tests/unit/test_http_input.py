"""The pre-decode checks on JSON bodies (support/http_input.py), byte for byte."""

from __future__ import annotations

import time

import pytest

from support.errors import TooDeeplyNested, ValidationFailed
from support.http_input import check_json_body, json_depth


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"", 0),
        (b"1", 0),
        (b"[]", 1),
        (b'[[1], {"a": [2]}]', 3),
        (b'"[[[[{{{{"', 0),
        (b'["\\"[[", "]]"]', 1),
        (b'{"a": "\\\\", "b": [[]]}', 3),
        (b'["unterminated [[[', 1),
        (b"[" * 1000 + b"]" * 1000, 1000),
    ],
)
def test_depth_counts_structure_and_never_brackets_inside_strings(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


def test_a_body_deeper_than_the_limit_is_too_deep() -> None:
    with pytest.raises(TooDeeplyNested):
        check_json_body(b"[" * 33 + b"]" * 33, 32)


def test_a_body_at_the_limit_passes() -> None:
    check_json_body(b"[" * 32 + b"]" * 32, 32)


@pytest.mark.parametrize("body", [b'{"a": "\\u0000"}', b'{"\\u0000": 1}', b'["\\\\\\u0000"]'])
def test_a_nul_escape_is_refused(body: bytes) -> None:
    with pytest.raises(ValidationFailed, match="NUL"):
        check_json_body(body, 32)


def test_an_escaped_backslash_before_u0000_is_text_not_nul() -> None:
    check_json_body(b'{"a": "C:\\\\u0000"}', 32)


@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 10**30])
def test_an_integer_outside_64_bits_is_refused(number: int) -> None:
    with pytest.raises(ValidationFailed, match="64 bits"):
        check_json_body(b'{"capacity": %d}' % number, 32)


@pytest.mark.parametrize(
    "body",
    [
        b'{"n": 9223372036854775807}',
        b'{"n": -9223372036854775808}',
        b'{"n": 1.00000000000000000000001}',
        b'{"n": 12345678901234567890e-5}',
        b'{"n": "123456789012345678901234567890"}',
    ],
)
def test_64_bit_integers_floats_and_digits_in_strings_pass(body: bytes) -> None:
    check_json_body(body, 32)


@pytest.mark.serial
def test_a_hostile_mebibyte_is_checked_in_well_under_a_second() -> None:
    """Escaped quotes after enough brackets to force the depth scan: the slowest input for its string
    pass (about 0.1 s here), which stays linear."""
    body = b"[" * 33 + b'"\\"' * 349_000
    started = time.perf_counter()
    with pytest.raises(TooDeeplyNested):
        check_json_body(body, 32)
    assert time.perf_counter() - started < 1.0
