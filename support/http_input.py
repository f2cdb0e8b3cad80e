"""Checks on a JSON request body made before it is decoded, so that no body can make decoding, or what
the decoded values meet downstream, fail with anything but a typed 400.

- Nesting: a JSON decoder recurses once per level; a few kilobytes of ``[[[[…`` reach Python's
  recursion limit inside the decoder (a ``RecursionError`` no handler expects). Deeper than
  ``SWITCHBOARD_HTTP_MAX_JSON_DEPTH`` is refused (``too_deep``).
- NUL: ``\\u0000`` decodes to a valid Python string that PostgreSQL cannot store in a text column (and
  C libraries truncate at). No field of the API has a use for it.
- Integers: JSON has no bound on them and the decoder keeps them exact, but every integer column is
  64-bit; a larger one would overflow in the database driver.

The same NUL goes nowhere from a URL either: :class:`RejectNul` answers a path with one 404 (no file
or resource has such a name) and a query string with one 400, before any handler sees them.

The body's size is bounded separately, by Litestar's ``request_max_body_size`` (413 ``too_large``).
:class:`BoundedRequest` runs these checks in front of every JSON decode (``Request.json``, which is what
Litestar decodes a handler's ``data`` with); each is a C-speed pass over the bytes, skipped outright when
a cheap count shows the body cannot fail it.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from support.errors import NotFound, TooDeeplyNested, ValidationFailed

# A JSON string, escapes included; an unterminated one runs to the end of the body (possessive, so a
# body of many unterminated strings is still one linear pass, never a backtracking search).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
# Opening brackets become +1 and closing ones -1 (as signed bytes); every other byte is deleted.
_DEPTH_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
# ``\u0000`` as an escape (an even run of backslashes before it is escaped backslashes, not an escape).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*+\\u0000")
# An integer literal long enough to be outside 64 bits (a fraction or exponent makes it a float).
_LONG_INTEGER = re.compile(rb"(?<![\d.eE+-])-?\d{19,}(?![\d.eE])")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body`` (brackets inside strings do not count).

    Exact for well-formed JSON; for malformed JSON it is what a decoder would meet before failing,
    or more, never less."""
    structure = _JSON_STRING.sub(b"", body).translate(_DEPTH_STEPS, _NOT_BRACKETS)
    return max(accumulate(array("b", structure)), default=0)


def check_json_body(body: bytes, max_depth: int) -> None:
    """Raise a typed 400 for a body nested deeper than ``max_depth``, with a NUL character in a string,
    or with an integer outside 64 bits; otherwise do nothing (malformed JSON is the decoder's to report)."""
    # Nesting cannot exceed the number of opening brackets: almost every body is cleared without a scan.
    if body.count(b"[") + body.count(b"{") > max_depth and json_depth(body) > max_depth:
        raise TooDeeplyNested(f"the JSON body nests deeper than {max_depth} levels")
    if b"\\u0000" in body and _NUL_ESCAPE.search(body):
        raise ValidationFailed("text must not contain the NUL character (\\u0000)")
    if re.search(rb"\d{19}", body):
        outside_strings = _JSON_STRING.sub(b" ", body)
        for literal in _LONG_INTEGER.findall(outside_strings):
            if not _INT64_MIN <= int(literal) <= _INT64_MAX:
                raise ValidationFailed("integers must fit in 64 bits (signed)")


def bounded_request_class(max_json_depth: int) -> type[Request[Any, Any, Any]]:
    """The app's request class: Litestar's, with :func:`check_json_body` in front of every JSON decode."""

    class BoundedRequest(Request[Any, Any, Any]):
        async def json(self) -> Any:
            check_json_body(await self.body(), max_json_depth)
            return await super().json()

    return BoundedRequest


class RejectNul(ASGIMiddleware):
    """404 for a NUL character in the path, 400 for one in the query string (see the module docstring)."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if "\x00" in scope["path"]:
            raise NotFound("no such resource")
        if b"%00" in scope["query_string"]:
            raise ValidationFailed("query parameters must not contain the NUL character (%00)")
        await next_app(scope, receive, send)
