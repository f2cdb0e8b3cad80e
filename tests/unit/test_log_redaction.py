"""Every log record is redacted when it is created: whatever handler prints it, no credential shows."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from support import log_redaction
from support.log_redaction import REDACTED, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlLW9mLWEtdG9rZW4"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ('127.0.0.1:1 - "WebSocket /api/v1/agent/ws?token=abc.def.ghi" [accepted]', "abc.def.ghi"),
        ("GET /api/v1/widget/ws?x=1&token=opaque-token-value HTTP/1.1", "opaque-token-value"),
        ('{"email": "ada@example.com", "password": "hunter2-hunter2"}', "hunter2-hunter2"),
        ("{'password': 'hunter2-hunter2'}", "hunter2-hunter2"),
        ("authorization: Bearer opaque-bearer-value", "opaque-bearer-value"),
        (f"token {JWT} in a message", JWT),
        ("x-api-key: sk-ant-api03-AbC_dEf-123", "sk-ant-api03-AbC_dEf-123"),
        ("webhook secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("filed with sbk_Xq3-vT9_kLmN0pQrStUvWxYz", "sbk_Xq3-vT9_kLmN0pQrStUvWxYz"),
        (
            "('$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA', 'x')",
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        ),
    ],
)
def test_credentials_of_every_known_shape_are_redacted(line: str, secret: str) -> None:
    cleaned = redact(line)
    assert secret not in cleaned
    assert REDACTED in cleaned


def test_ordinary_lines_are_left_alone() -> None:
    line = '127.0.0.1:1 - "GET /api/v1/agent/queue HTTP/1.1" 200 OK; widget_key=pk_demo code=1008'
    assert redact(line) == line


def test_a_registered_value_with_no_recognisable_shape_is_redacted() -> None:
    log_redaction.register_secret("plain-looking-signing-key-value")
    log_redaction.register_secret("short")  # too short to be a credential: never redacted
    assert redact("key is plain-looking-signing-key-value, short") == f"key is {REDACTED}, short"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A handler installed *after* redaction, as uvicorn or a library would add their own."""
    log_redaction.install()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def test_records_of_any_logger_and_handler_are_redacted_with_their_structure_kept(
    captured: io.StringIO,
) -> None:
    logger = logging.getLogger("test.redaction")
    # uvicorn's access log: five arguments, the path with its query string one of them
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", f"/ws?token={JWT}", "1.1", 101)
    logger.debug("headers %r", {"authorization": f"Bearer {JWT}"})
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        logger.exception("failed")
    text = captured.getvalue()
    assert JWT not in text
    assert '"GET /ws?token=[redacted] HTTP/1.1" 101' in text
    assert "ValueError: bad token [redacted]" in text


def test_a_logged_object_that_prints_a_secret_is_redacted(captured: io.StringIO) -> None:
    logging.getLogger("test.redaction").error(ValueError(f"bad token {JWT}"))
    assert captured.getvalue() == "bad token [redacted]\n"
