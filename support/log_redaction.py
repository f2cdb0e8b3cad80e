"""No credential in any log line: every log record is redacted once, when it is created.

Agent and widget tokens are 12-hour bearer credentials, and the sockets carry them in the URL
(``/api/v1/agent/ws?token=eyJ...``), which uvicorn's access log, the ``websockets`` debug log and any
exception message would otherwise print. Redaction happens in the log record factory rather than in a
filter on some handlers: uvicorn, Litestar's queue listener, ``logging.basicConfig`` and any library each
install their own handlers, and a handler added later without the filter would leak silently; the record
factory sees every record of every logger, at every level, whatever emits it.

What is replaced (by ``[redacted]``):
- the value of a query or form parameter named like a credential (``token``, ``password``, ``key``...);
- JSON members named like one (``"password": "..."``);
- ``Authorization`` / ``Bearer`` values; JWTs anywhere; Anthropic API keys (``sk-ant-...``); webhook
  secrets (``whsec_...``); integration keys (``sbk_...``); argon2 password hashes;
- the exact values registered with :func:`register_secret` (the signing key, the model API key), which
  may have no recognisable shape.

The record's structure is kept (uvicorn's access formatter reads its five ``args``): only string
arguments that contain a secret are replaced.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

REDACTED = "[redacted]"
# Registered values shorter than this are not redacted: a short value is not a credential worth the name,
# and replacing every occurrence of, say, "test" would garble logs.
MIN_REGISTERED_CHARS = 8

_CREDENTIAL_NAMES = (
    r"(?:access_|refresh_|id_|api_|auth_|session_)?token|password|passwd|secret|client_secret|"
    r"api_?key|x-api-key|identity_hash|signature"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # ?token=...&  password=...   (URLs, form bodies, "k=v" log text)
    (re.compile(rf"(?i)((?:^|[?&;\s])(?:{_CREDENTIAL_NAMES})=)[^&\s\"'#;]+"), rf"\1{REDACTED}"),
    # "password": "..."  'token': '...'   (JSON, Python reprs)
    (
        re.compile(rf"(?i)([\"']?(?:{_CREDENTIAL_NAMES})[\"']?\s*:\s*[\"'])[^\"']*"),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),  # a JWT
    (re.compile(r"\bsk-ant-[A-Za-z0-9_-]+"), REDACTED),  # an Anthropic API key
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), REDACTED),  # a webhook signing secret
    (re.compile(r"\bsbk_[A-Za-z0-9_-]+"), REDACTED),  # an integration key
    (re.compile(r"\$argon2(?:id|i|d)\$[^\s'\",)]+"), REDACTED),  # a password hash
)

# Every pattern above needs one of these (lower-case) in the text: a line without any, the vast majority,
# skips the regular expressions (~7 us instead of ~90 us per access-log line, measured).
_TRIGGERS = (
    "token", "passw", "secret", "key", "bearer", "basic", "eyj", "sk-ant-", "whsec_", "sbk_", "$argon2",
    "identity_hash", "signature",
)  # fmt: skip

_registered: set[str] = set()
_registered_lock = threading.Lock()
_exact: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Redact this exact value from every later log line (a key with no recognisable shape)."""
    global _exact
    if not value or len(value) < MIN_REGISTERED_CHARS:
        return
    with _registered_lock:
        _registered.add(value)
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(_registered, key=len, reverse=True)
        _exact = re.compile("|".join(re.escape(v) for v in ordered))


def redact(text: str) -> str:
    """``text`` with every credential it contains replaced by ``[redacted]``."""
    exact = _exact
    if exact is not None:
        text = exact.sub(REDACTED, text)
    lowered = text.lower()
    if not any(trigger in lowered for trigger in _TRIGGERS):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, str):
        return redact(arg)
    if arg is None or isinstance(arg, int | float):
        return arg
    # bytes, URLs, headers, request objects: redact what they print as, keep them when they hold nothing
    shown = str(arg)
    cleaned = redact(shown)
    return arg if cleaned == shown else cleaned


def redact_record(record: logging.LogRecord) -> None:
    """Redact a record in place: its message, arguments, exception text and stack."""
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    elif record.msg is not None:  # log.error(exc) and the like: printed as str(msg)
        record.msg = _redact_arg(record.msg)
    if isinstance(record.args, Mapping):
        record.args = {key: _redact_arg(value) for key, value in record.args.items()}
    elif isinstance(record.args, tuple):
        record.args = tuple(_redact_arg(arg) for arg in record.args)
    if record.exc_info and not record.exc_text:
        # Formatters use exc_text when it is set, so the traceback is printed redacted.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class _RedactingFactory:
    """Wraps the record factory in force when installed."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        redact_record(record)
        return record


def install() -> None:
    """Redact every log record of this process from now on (idempotent)."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(current))
