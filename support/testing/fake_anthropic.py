"""A fake Anthropic Messages API on a real loopback HTTP port, for tests, benchmarks and demos.

The unmodified ``anthropic.Anthropic`` / ``anthropic.AsyncAnthropic`` clients talk to it through
``base_url`` (or ``ANTHROPIC_BASE_URL``), so everything between our code and the socket -- retries,
timeouts, SSE parsing, error mapping -- is the SDK's real behaviour. Faking at the HTTP level, never by
patching SDK internals, is the project's rule (see docs/STYLE.md).

What this module owns:

* an HTTP/1.1 server (asyncio streams + ``h11``) running on its own event loop in a background thread,
  so sync and async tests can share one instance. Raw sockets, not an ASGI framework, because the fault
  injection needs byte-level control: pacing SSE events, hanging mid-stream, and aborting the TCP
  connection without a clean chunked terminator;
* ``POST /v1/messages`` (JSON and SSE), ``POST /v1/messages/count_tokens`` and the Message Batches
  endpoints, with the real request validation, error body shape and rate-limit headers;
* a prompt-cache model (:class:`PromptCache`) that computes ``usage`` the way the real API does;
* programmable replies (:meth:`FakeAnthropic.add_rule`) and faults (429/529/500, stalls, drops,
  mid-stream ``event: error``);
* a recording of every request (:attr:`FakeAnthropic.requests`).

Token estimate (used for usage, cache accounting and count_tokens alike): the prompt is rendered into
segments in the order tools -> system -> messages (one segment per tool definition, system block and
message content block); a text block's segment is its text, any other block is its canonical JSON
(sorted keys, no whitespace, ``cache_control`` removed). A segment costs ``ceil(len(chars) / 4)``
tokens, except a ``document`` block, which costs its title's and each text's tokens plus a few for its
framing (the model reads the text, not the JSON envelope), and a prompt costs the sum of its segments.
Output tokens are estimated the same way from the generated text (or the tool input's canonical JSON).

Citations: a request whose ``document`` blocks have citations enabled gets, on a text answer, a
``content_block_location`` citation of the document section that shares the most topic words with the
question and the rule's reply text (:func:`choose_citations`), streamed as a ``citations_delta``; small
talk shares none and gets none. ``Reply.citations`` overrides the choice. Documents in ``system`` and a
mix of citations enabled and disabled are refused with a 400, as the real API does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import h11

from support.testing._schema_instance import generate_instance

__all__ = [
    "DEFAULT_MIN_CACHEABLE_TOKENS",
    "JUDGE_TOOL",
    "MIN_CACHEABLE_TOKENS",
    "PREDICTION_TOOL",
    "SUPPORTED_API_VERSIONS",
    "ApiError",
    "CacheUsage",
    "FakeAnthropic",
    "PromptCache",
    "RecordedRequest",
    "Reply",
    "cached_prefix_tokens",
    "canonical_json",
    "choose_citations",
    "count_prompt_tokens",
    "estimate_tokens",
    "grounded_citations",
    "predicted_satisfaction",
]

SUPPORTED_API_VERSIONS = frozenset({"2023-06-01", "2026-10-21"})
# The 2026-10-21 API version removed the sampling knobs; sending them is a 400 there.
_SAMPLING_PARAMS_REMOVED_IN = "2026-10-21"
_SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
MAX_CACHE_BREAKPOINTS = 4
CHARS_PER_TOKEN = 4
DOCUMENT_FRAMING_TOKENS = 8  # what a document block adds around its title and text

# Minimum prefix length (tokens) that the real API will cache, by model-id prefix; longest prefix wins.
# Copied into each PromptCache so a test can override it per instance.
MIN_CACHEABLE_TOKENS: dict[str, int] = {
    "claude-haiku-4-5": 4096,
    "claude-opus-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-opus-4-7": 4096,
    "claude-sonnet-4-5": 1024,
    "claude-sonnet-4-6": 1024,
}
DEFAULT_MIN_CACHEABLE_TOKENS = 1024

CACHE_TTL_S: dict[str, float] = {"5m": 300.0, "1h": 3600.0}

# Rate-limit header values: generous, static limits; "remaining" counts requests of the last minute.
RATE_LIMIT_REQUESTS_PER_MIN = 4000
RATE_LIMIT_TOKENS_PER_MIN = 2_000_000
RATE_LIMIT_INPUT_TOKENS_PER_MIN = 1_600_000
RATE_LIMIT_OUTPUT_TOKENS_PER_MIN = 400_000
RATE_LIMIT_WINDOW_S = 60.0

# Streaming granularity: text deltas of at most this many characters (about three tokens).
STREAM_TEXT_CHUNK_CHARS = 12
STREAM_JSON_CHUNK_CHARS = 16
BATCH_EXPIRY_S = 24 * 3600.0
_READ_CHUNK_BYTES = 65536
_CUSTOM_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

_ERROR_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_MESSAGE_BY_TYPE: dict[str, str] = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
}


# --------------------------------------------------------------------------------------------------
# Public value types
# --------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the fake model says for one request; fields left ``None`` are generated.

    ``raw_sse`` (an extension) is an SSE transcript served verbatim to a streaming request, for replaying
    recorded real-API streams through the SDK's parser; a non-streaming request with it gets a 500.
    When ``tool_use`` is given the stop reason becomes ``tool_use`` unless ``stop_reason`` says otherwise.
    """

    text: str | None = None
    tool_use: dict[str, Any] | None = None
    json: dict[str, Any] | None = None
    stop_reason: str = "end_turn"
    output_tokens: int | None = None
    raw_sse: str | None = None
    # Citations on the text when the request's documents have citations enabled: None = chosen by the
    # fake (the document section that shares most words with the question and the reply; none when no
    # section shares any, as for small talk), [] = none, a list = sent as given.
    citations: list[dict[str, Any]] | None = None


@dataclass
class RecordedRequest:
    """One request as the fake received it; ``response_status`` is filled in once the status is known."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    arrived_at: float  # time.monotonic() once the whole request was read and its JSON parsed
    query: str = ""
    response_status: int | None = None
    # time.monotonic() when the request's head was read: the moment the caller's request reached the
    # "model API". Reading and parsing a large body is the fake's own work, not the caller's.
    started_at: float | None = None
    # time.monotonic() when the first content delta (text or tool input) was written, for a streamed
    # reply, and when the whole response was written; benchmarks use them to subtract the model's wait.
    first_token_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True)
class CacheUsage:
    """The cache-related part of ``usage`` for one request."""

    input_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    ephemeral_5m_input_tokens: int
    ephemeral_1h_input_tokens: int


class ApiError(Exception):
    """An API error response: status, Anthropic error type and message, plus extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type or _ERROR_TYPE_BY_STATUS.get(status, "api_error")
        self.message = message
        self.headers = headers or {}


RuleFn = Callable[[dict[str, Any]], "Reply | None"]
MatchFn = Callable[[dict[str, Any]], bool]


# --------------------------------------------------------------------------------------------------
# Token estimate and prompt rendering
# --------------------------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, non-ASCII kept (one char per char)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def estimate_tokens(text: str) -> int:
    """``ceil(len(text) / 4)``: roughly the real tokenizer's rate for English, and fully deterministic."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass(frozen=True)
class _Segment:
    """One rendered unit of the prompt: ``key`` carries its identity, ``tokens`` its cost."""

    key: str
    tokens: int
    cache_control: dict[str, Any] | None


def _render_block(block: Any) -> tuple[str, dict[str, Any] | None]:
    if isinstance(block, dict):
        cache_control = block.get("cache_control")
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            return str(block["text"]), cache_control if isinstance(cache_control, dict) else None
        stripped = {k: v for k, v in block.items() if k != "cache_control"}
        return canonical_json(stripped), cache_control if isinstance(cache_control, dict) else None
    if isinstance(block, str):
        return block, None
    return canonical_json(block), None


def _block_tokens(block: Any, rendered: str) -> int:
    """A block's cost: its rendered text's, except a document's, which costs its title and its text (the
    model reads the document, not its JSON envelope) plus a few tokens of framing."""
    if not isinstance(block, dict) or block.get("type") != "document":
        return estimate_tokens(rendered)
    source = block.get("source") or {}
    if source.get("type") == "text":
        texts = [str(source.get("data", ""))]
    elif source.get("type") == "content":
        content = source.get("content")
        items = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        texts = [str(i.get("text", "")) for i in items if isinstance(i, dict)]
    else:
        return estimate_tokens(rendered)
    return (
        DOCUMENT_FRAMING_TOKENS
        + estimate_tokens(str(block.get("title") or ""))
        + sum(estimate_tokens(t) for t in texts)
    )


def render_segments(body: dict[str, Any]) -> list[_Segment]:
    """Render tools -> system -> messages into segments (see the module docstring)."""
    segments: list[_Segment] = []
    for tool in body.get("tools") or []:
        text, cache_control = _render_block(
            {k: v for k, v in tool.items() if k != "cache_control"} if isinstance(tool, dict) else tool
        )
        if isinstance(tool, dict) and isinstance(tool.get("cache_control"), dict):
            cache_control = tool["cache_control"]
        segments.append(_Segment("tool:" + text, estimate_tokens(text), cache_control))
    system = body.get("system")
    if isinstance(system, str):
        segments.append(_Segment("system:" + system, estimate_tokens(system), None))
    elif isinstance(system, list):
        for block in system:
            text, cache_control = _render_block(block)
            segments.append(_Segment("system:" + text, estimate_tokens(text), cache_control))
    for index, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            continue
        role = str(message.get("role"))
        content = message.get("content")
        blocks = [content] if isinstance(content, str) else list(content or [])
        for block in blocks:
            text, cache_control = _render_block(block)
            segments.append(_Segment(f"m{index}:{role}:{text}", _block_tokens(block, text), cache_control))
    return segments


def cached_prefix_tokens(body: dict[str, Any]) -> int:
    """Tokens of a request's prompt up to and including its last ``cache_control`` breakpoint (0: none)."""
    running = last = 0
    for segment in render_segments(body):
        running += segment.tokens
        if segment.cache_control is not None:
            last = running
    return last


def count_prompt_tokens(body: dict[str, Any]) -> int:
    """Total input tokens of a request body; what count_tokens returns."""
    return sum(segment.tokens for segment in render_segments(body))


# --------------------------------------------------------------------------------------------------
# Prompt cache
# --------------------------------------------------------------------------------------------------


@dataclass
class _CacheEntry:
    tokens: int
    ttl_s: float
    expires_at: float


class PromptCache:
    """The real API's prompt-cache accounting, with an injectable clock.

    Entries are keyed by (api key, model, hash of the rendered prefix up to a breakpoint). ``clock`` is
    any monotonic seconds function; :meth:`advance` adds an offset on top of it so tests can expire
    entries without sleeping. ``min_tokens`` (model-id prefix -> minimum) and ``default_min_tokens`` can
    be changed per instance.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.min_tokens: dict[str, int] = dict(MIN_CACHEABLE_TOKENS)
        self.default_min_tokens = DEFAULT_MIN_CACHEABLE_TOKENS
        self._offset_s = 0.0
        self._entries: dict[tuple[str, str, str], _CacheEntry] = {}
        self._lock = threading.Lock()

    def now(self) -> float:
        """Current cache time: the clock plus whatever :meth:`advance` added."""
        return self.clock() + self._offset_s

    def advance(self, seconds: float) -> None:
        """Move cache time forward (TTL tests)."""
        self._offset_s += seconds

    def clear(self) -> None:
        """Drop every entry and the time offset."""
        with self._lock:
            self._entries.clear()
            self._offset_s = 0.0

    def __len__(self) -> int:
        now = self.now()
        with self._lock:
            return sum(1 for entry in self._entries.values() if entry.expires_at > now)

    def min_tokens_for(self, model: str) -> int:
        """Minimum cacheable prefix for ``model``: the longest matching id prefix in ``min_tokens``."""
        best: tuple[int, int] | None = None
        for prefix, minimum in self.min_tokens.items():
            if model.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), minimum)
        return best[1] if best else self.default_min_tokens

    def account(self, api_key: str, model: str, body: dict[str, Any]) -> CacheUsage:
        """Compute usage for ``body`` and update the cache as the real API would.

        The longest breakpoint prefix found (unexpired) in the cache is read and its lifetime refreshed;
        the tokens from there up to the last breakpoint are written, attributed to the TTL of the
        breakpoint that closes each span; every cacheable breakpoint prefix is stored. Prefixes below
        the model minimum are neither read nor written.
        """
        segments = render_segments(body)
        total = sum(segment.tokens for segment in segments)
        minimum = self.min_tokens_for(model)
        breakpoints: list[tuple[str, int, float]] = []  # (prefix hash, prefix tokens, ttl seconds)
        digest = hashlib.sha256()
        running = 0
        for segment in segments:
            digest.update(segment.key.encode("utf-8") + b"\x1e")
            running += segment.tokens
            if segment.cache_control is not None:
                ttl_name = str(segment.cache_control.get("ttl", "5m"))
                breakpoints.append((digest.copy().hexdigest(), running, CACHE_TTL_S.get(ttl_name, 300.0)))
        cacheable = [bp for bp in breakpoints if bp[1] >= minimum]
        if not cacheable:
            return CacheUsage(total, 0, 0, 0, 0)
        now = self.now()
        with self._lock:
            read_tokens = 0
            hit_index = -1
            for index in range(len(cacheable) - 1, -1, -1):
                prefix_hash, tokens, ttl_s = cacheable[index]
                entry = self._entries.get((api_key, model, prefix_hash))
                if entry is not None and entry.expires_at > now:
                    read_tokens = tokens
                    hit_index = index
                    entry.expires_at = now + max(entry.ttl_s, ttl_s)
                    break
            write_5m = write_1h = 0
            previous = read_tokens
            for _hash, tokens, ttl_s in cacheable[hit_index + 1 :]:
                span = tokens - previous
                previous = tokens
                if ttl_s >= CACHE_TTL_S["1h"]:
                    write_1h += span
                else:
                    write_5m += span
            for prefix_hash, tokens, ttl_s in cacheable:
                key = (api_key, model, prefix_hash)
                entry = self._entries.get(key)
                if entry is None or entry.expires_at <= now:
                    self._entries[key] = _CacheEntry(tokens, ttl_s, now + ttl_s)
                else:
                    entry.expires_at = max(entry.expires_at, now + ttl_s)
        last_tokens = cacheable[-1][1]
        return CacheUsage(
            input_tokens=total - last_tokens,
            cache_read_input_tokens=read_tokens,
            cache_creation_input_tokens=write_5m + write_1h,
            ephemeral_5m_input_tokens=write_5m,
            ephemeral_1h_input_tokens=write_1h,
        )


# --------------------------------------------------------------------------------------------------
# Request validation and the reply engine (no I/O)
# --------------------------------------------------------------------------------------------------


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, error_type="invalid_request_error")


def _validate_content_block(block: Any, where: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise _invalid(f"{where}: each content block must be an object with a string `type`")
    if block["type"] == "text" and not isinstance(block.get("text"), str):
        raise _invalid(f"{where}.text: Field required")
    if block["type"] == "document":
        _validate_document(block, where)
    cache_control = block.get("cache_control")
    if cache_control is not None:
        _validate_cache_control(cache_control, f"{where}.cache_control")


def _validate_document(block: dict[str, Any], where: str) -> None:
    """A ``document`` block as the real API checks it: a text, content or base64 PDF source, and an
    optional ``citations: {"enabled": bool}``."""
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") not in ("text", "content", "base64", "url"):
        raise _invalid(f"{where}.source: Input tag does not match any of the expected tags")
    if source["type"] == "text" and not isinstance(source.get("data"), str):
        raise _invalid(f"{where}.source.data: Field required")
    if source["type"] == "content":
        content = source.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list) or not content:
            raise _invalid(f"{where}.source.content: Field required (a non-empty list of content blocks)")
        for index, item in enumerate(content):
            if not isinstance(item, dict) or item.get("type") not in ("text", "image"):
                raise _invalid(f"{where}.source.content.{index}: Input should be a text or image block")
            if item["type"] == "text" and (not isinstance(item.get("text"), str) or not item["text"].strip()):
                raise _invalid(f"{where}.source.content.{index}.text: text content blocks must be non-empty")
    citations = block.get("citations")
    if citations is not None and (
        not isinstance(citations, dict) or not isinstance(citations.get("enabled"), bool)
    ):
        raise _invalid(f"{where}.citations: Input should be {{'enabled': bool}}")
    for name in ("title", "context"):
        if block.get(name) is not None and not isinstance(block[name], str):
            raise _invalid(f"{where}.{name}: Input should be a valid string")


def _documents(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's document blocks in ``document_index`` order (user messages, in prompt order)."""
    documents: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            documents += [b for b in content if isinstance(b, dict) and b.get("type") == "document"]
    return documents


def _citations_enabled(body: dict[str, Any]) -> bool:
    return any((d.get("citations") or {}).get("enabled") for d in _documents(body))


def _validate_cache_control(cache_control: Any, where: str) -> None:
    if not isinstance(cache_control, dict) or cache_control.get("type") != "ephemeral":
        raise _invalid(f"{where}: cache_control must be {{'type': 'ephemeral'}}")
    ttl = cache_control.get("ttl")
    if ttl is not None and ttl not in CACHE_TTL_S:
        raise _invalid(f"{where}.ttl: Input should be '5m' or '1h'")


def validate_messages_body(body: Any, api_version: str, *, require_max_tokens: bool = True) -> dict[str, Any]:
    """Check a create/count_tokens body like the real API; raise :class:`ApiError` (400) if wrong."""
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _invalid("model: Field required")
    if require_max_tokens:
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise _invalid("max_tokens: Field required")
        if max_tokens < 0:
            raise _invalid("max_tokens: Input should be greater than or equal to 0")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _invalid("messages: Field required")
    if not messages:
        raise _invalid("messages: at least one message is required")
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise _invalid(f"{where}: Input should be an object")
        if message.get("role") not in ("user", "assistant"):
            raise _invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, list):
            for block_index, block in enumerate(content):
                _validate_content_block(block, f"{where}.content.{block_index}")
                if message["role"] == "assistant" and block.get("type") == "document":
                    raise _invalid(
                        f"{where}.content.{block_index}.type: document blocks are only allowed in "
                        "user messages"
                    )
        elif not isinstance(content, str):
            raise _invalid(f"{where}.content: Field required")
    enabled = {bool((d.get("citations") or {}).get("enabled")) for d in _documents(body)}
    if len(enabled) > 1:
        raise _invalid("Citations must be enabled on all documents or on none of them.")
    system = body.get("system")
    if system is not None:
        if isinstance(system, list):
            for block_index, block in enumerate(system):
                _validate_content_block(block, f"system.{block_index}")
                if block.get("type") != "text":
                    raise _invalid(
                        f"system.{block_index}.type: Input tag {block.get('type')!r} found using 'type' "
                        "does not match any of the expected tags: 'text'"
                    )
        elif not isinstance(system, str):
            raise _invalid("system: Input should be a valid string or list of text blocks")
    tools = body.get("tools")
    tool_names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid("tools: Input should be a valid list")
        for index, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise _invalid(f"tools.{index}.name: Field required")
            if "type" not in tool and not isinstance(tool.get("input_schema"), dict):
                raise _invalid(f"tools.{index}.input_schema: Field required")
            if tool.get("cache_control") is not None:
                _validate_cache_control(tool["cache_control"], f"tools.{index}.cache_control")
            tool_names.add(tool["name"])
    tool_choice = body.get("tool_choice")
    if tool_choice is not None:
        if not isinstance(tool_choice, dict) or tool_choice.get("type") not in (
            "auto",
            "any",
            "tool",
            "none",
        ):
            raise _invalid("tool_choice: Input tag does not match any of the expected tags")
        if tool_choice["type"] == "tool" and tool_choice.get("name") not in tool_names:
            raise _invalid(f"tool_choice.name: tool {tool_choice.get('name')!r} not found in `tools`")
        if tool_choice["type"] in ("any", "tool") and not tool_names:
            raise _invalid("tool_choice: requires `tools` to be set")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _invalid("stream: Input should be a valid boolean")
    if api_version == _SAMPLING_PARAMS_REMOVED_IN:
        for name in _SAMPLING_PARAMS:
            if name in body:
                raise _invalid(f"{name}: Extra inputs are not permitted for anthropic-version {api_version}")
    output_config = body.get("output_config")
    if output_config is not None:
        fmt = output_config.get("format") if isinstance(output_config, dict) else None
        if fmt is not None and (
            not isinstance(fmt, dict)
            or fmt.get("type") != "json_schema"
            or not isinstance(fmt.get("schema"), dict)
        ):
            raise _invalid("output_config.format: expected {'type': 'json_schema', 'schema': {...}}")
    breakpoints = sum(1 for segment in render_segments(body) if segment.cache_control is not None)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise _invalid(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}."
        )
    return body


def _after_knowledge(content: list[Any]) -> list[Any]:
    """A user turn's blocks after its knowledge head: when it holds ``document`` blocks, everything up to
    the first block with a cache breakpoint from the last document on (the documents and what is cached
    with them) is the prompt's, not the customer's."""
    last_doc = max(
        (i for i, b in enumerate(content) if isinstance(b, dict) and b.get("type") == "document"), default=-1
    )
    if last_doc < 0:
        return content
    for i in range(last_doc, len(content)):
        block = content[i]
        if (
            isinstance(block, dict)
            and block.get("cache_control") is not None
            and block.get("type") != "document"
        ):
            return content[i + 1 :]
    return content[last_doc + 1 :]


def last_user_text(body: dict[str, Any], *, last_block: bool = False) -> str:
    """The text of the last user turn of a Messages request: its text blocks joined, or with ``last_block``
    only the last one (the new customer message of an answer request, whose examples come before it)."""
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        blocks = _after_knowledge(content or [])
        texts = [b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        if texts:
            return str(texts[-1]) if last_block else " ".join(texts)
    return ""


def default_reply_text(body: dict[str, Any]) -> str:
    """The deterministic answer when no rule matches: an echo of the last user text."""
    topic = " ".join(last_user_text(body).split())
    if len(topic) > 80:
        topic = topic[:77] + "..."
    subject = f'"{topic}"' if topic else "your request"
    return (
        f"Thanks for your message about {subject}. "
        "I'm looking into it and will get back to you with the details shortly."
    )


class _Ids:
    """Deterministic, readable ids (``msg_fake000001``) so recordings diff cleanly between runs."""

    def __init__(self) -> None:
        self._counters: dict[str, Iterator[int]] = {}
        self._lock = threading.Lock()

    def next(self, prefix: str) -> str:
        with self._lock:
            counter = self._counters.setdefault(prefix, itertools.count(1))
            return f"{prefix}_fake{next(counter):06d}"

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()


# A customer saying the problem is solved: the fake's triage verdict then says ``solved`` (a real model
# would). Shared with the demo model.
SOLVED_PATTERN = re.compile(
    r"\b(that|it|this)\s+(worked|works|helped|did it|fixed it)\b|\b(solved|fixed|sorted)\s+(it|now)\b"
    r"|\b(problem|issue)\s+(is\s+)?(solved|fixed|sorted|resolved)\b|\ball (good|sorted) now\b",
    re.IGNORECASE,
)


def new_message_of(prompt: str) -> str:
    """The customer's message inside a triage prompt (``<new_message>`` ... ``</new_message>``)."""
    start, end = prompt.rfind("<new_message>\n"), prompt.rfind("\n</new_message>")
    if start < 0 or end < start:
        return prompt
    return prompt[start + len("<new_message>\n") : end]


# Predicted satisfaction (support.llm.prediction; the fake does not import the app's layers): a forced
# ``record_prediction`` call is answered from words in the transcript, so tests know the score to expect.
PREDICTION_TOOL = "record_prediction"
_UNHAPPY = re.compile(r"\b(useless|nobody|terrible|still waiting|waste)\b", re.IGNORECASE)
_HAPPY = re.compile(r"\b(thanks|thank you|great|perfect|solved)\b", re.IGNORECASE)


def predicted_satisfaction(transcript: str) -> dict[str, Any]:
    """The ``record_prediction`` input for a transcript, judged by the customer's lines (``customer: ...``)
    only: 1 when they complain ("useless", "nobody"...), else 5 when they thank ("thanks", "solved"...),
    else 3."""
    said = "\n".join(line for line in transcript.splitlines() if line.startswith("customer:"))
    if _UNHAPPY.search(said):
        return {"score": 1, "reason": "The customer says the help was useless or that nobody came."}
    if _HAPPY.search(said):
        return {"score": 5, "reason": "The customer thanks the support and the problem is solved."}
    return {"score": 3, "reason": "No clear sign of satisfaction either way."}


# The evaluation judge (support.evaluation.judge; not imported, like the prediction above): a forced
# ``record_verdict`` call is answered from the judge prompt, so tests know every verdict beforehand.
JUDGE_TOOL = "record_verdict"
JUDGE_FAIL_MARKER = "judge-fail"


def _tagged(prompt: str, tag: str) -> str:
    start, end = prompt.find(f"<{tag}>"), prompt.find(f"</{tag}>")
    return prompt[start + len(tag) + 2 : end] if 0 <= start < end else ""


def judge_verdict(prompt: str) -> dict[str, Any]:
    """The ``record_verdict`` input for a judge prompt: fail when the conversation carries the
    ``judge-fail`` marker (any case; the fake's default answer echoes the customer's words, so a case
    controls its verdict through its turns), fail when the expectations say the case should have been
    handed off (it was answered), else pass."""
    if JUDGE_FAIL_MARKER in _tagged(prompt, "conversation").casefold():
        return {"pass": False, "reason": "The reply carries the judge-fail marker."}
    if '"handoff_expected": true' in _tagged(prompt, "expectations"):
        return {"pass": False, "reason": "The knowledge says this question must go to a person."}
    return {"pass": True, "reason": "The reply answers the question from the knowledge."}


def _tool_schema(body: dict[str, Any], name: str) -> dict[str, Any]:
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("name") == name and isinstance(tool.get("input_schema"), dict):
            schema: dict[str, Any] = tool["input_schema"]
            return schema
    return {"type": "object"}


def build_content(body: dict[str, Any], reply: Reply | None, ids: _Ids) -> tuple[list[dict[str, Any]], str]:
    """Decide the content blocks and stop reason for a validated request (and optional rule reply)."""
    max_tokens = int(body.get("max_tokens", 1))
    if max_tokens == 0:
        return [], "max_tokens"
    reply = reply or Reply()
    tool_choice = body.get("tool_choice") or {}
    forced_tool: str | None = None
    if tool_choice.get("type") == "tool":
        forced_tool = str(tool_choice["name"])
    elif tool_choice.get("type") == "any":
        forced_tool = str((body.get("tools") or [{}])[0].get("name"))
    content: list[dict[str, Any]] = []
    stop_reason = reply.stop_reason
    tool_use = reply.tool_use
    if tool_use is None and forced_tool == PREDICTION_TOOL:
        tool_use = {"name": PREDICTION_TOOL, "input": predicted_satisfaction(last_user_text(body))}
    if tool_use is None and forced_tool == JUDGE_TOOL:
        tool_use = {"name": JUDGE_TOOL, "input": judge_verdict(last_user_text(body))}
    if tool_use is None and forced_tool is not None:
        tool_use = {"name": forced_tool}
    if tool_use is not None:
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        name = str(tool_use.get("name", forced_tool or "tool"))
        tool_input = tool_use.get("input")
        if tool_input is None:
            schema = _tool_schema(body, name)
            tool_input = generate_instance(schema)
            # A verdict with a ``solved`` field says so when the customer's new message does.
            if (
                isinstance(tool_input, dict)
                and "solved" in (schema.get("properties") or {})
                and SOLVED_PATTERN.search(new_message_of(last_user_text(body, last_block=True)))
            ):
                tool_input["solved"] = True
        content.append({"type": "tool_use", "id": ids.next("toolu"), "name": name, "input": tool_input})
        if stop_reason == "end_turn":
            stop_reason = "tool_use"
        return content, stop_reason
    output_format = (body.get("output_config") or {}).get("format")
    if reply.json is not None:
        text = json.dumps(reply.json)
    elif isinstance(output_format, dict) and reply.text is None:
        text = json.dumps(generate_instance(output_format["schema"]))
    elif reply.text is not None:
        text = reply.text
    else:
        text = default_reply_text(body)
    if reply.output_tokens is None and estimate_tokens(text) > max_tokens:
        text = text[: max_tokens * CHARS_PER_TOKEN]
        stop_reason = "max_tokens"
    block: dict[str, Any] = {"type": "text", "text": text}
    if reply.json is None and not isinstance(output_format, dict) and _citations_enabled(body):
        citations = reply.citations
        if citations is None:
            question, scripted = last_user_text(body, last_block=True), reply.text or ""
            citations = []
            if _topic_words(question):
                # An elliptic follow-up ("And what about Iceland?", one topic word) is read in its context:
                # the customer's message before it too.
                elliptic = len(_topic_words(question)) == 1
                context = "\n".join(_customer_texts(body)[-2:]) if elliptic else ""
                citations = choose_citations(body, f"{context}\n{question}\n{scripted}")
            elif _topic_words(scripted):  # "Ok, so what now?" answered by a rule's reply: its words count
                citations = choose_citations(body, scripted)
            # else small talk ("thanks!") answered with the default text: nothing to cite
        if citations:
            block["citations"] = list(citations)
    content.append(block)
    return content, stop_reason


# Words that say nothing about a topic: small talk ("hi", "thanks") shares none of them with a document.
_STOPWORDS = frozenset(
    str.split(
        """a about above after again all also am an and any are as at be been before being below but by can
    could did do does doing down during each few for from further get got had has have having he hello hey
    her here hers hi him his how i if in into is it its just me more most my no nor not now of off ok okay
    on once only or other our out over own please same she should so some such than thank thanks that the
    their them then there these they this those through to too under until up very was we were what when
    where which while who whom why will with would yes you your yours good morning evening afternoon bye
    great cool nice fine sure cheers"""
    )
)


@functools.lru_cache(maxsize=1024)
def _topic_words(text: str) -> frozenset[str]:
    """The words of ``text`` that say what it is about (memoised: a request's document sections recur)."""
    words = {w.lower() for w in re.findall(r"[^\W\d_]{3,}", text)}
    return frozenset(w[:-1] if w.endswith("s") and len(w) > 4 else w for w in words - _STOPWORDS)


def _customer_texts(body: dict[str, Any]) -> list[str]:
    """The text blocks of the request's user turns that are the customer's words (not the knowledge head,
    nor summaries, examples or placeholders, which start with a tag, a bracket or a fixed phrase)."""
    texts: list[str] = []
    for message in body.get("messages") or []:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = (
            [{"type": "text", "text": content}]
            if isinstance(content, str)
            else _after_knowledge(content or [])
        )
        for block in blocks:
            text = block.get("text") if isinstance(block, dict) and block.get("type") == "text" else None
            if isinstance(text, str) and not text.startswith(("<", "(", "Reference examples")):
                texts.append(text)
    return texts


def grounded_citations(body: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """Citations for a scripted answer that must count as grounded whatever its words (a test's canned
    reply in another language, say): :func:`choose_citations`, else the first section of the first
    document; none when the request carries no citable document."""
    chosen = choose_citations(body, text)
    if chosen:
        return chosen
    for doc_index, document in enumerate(_documents(body)):
        source = document.get("source") or {}
        content = source.get("content") if source.get("type") == "content" else None
        items = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if items and (document.get("citations") or {}).get("enabled"):
            return [
                {
                    "type": "content_block_location", "cited_text": str(items[0].get("text", "")),
                    "document_index": doc_index, "document_title": document.get("title"),
                    "start_block_index": 0, "end_block_index": 1,
                }
            ]  # fmt: skip
    return []


def choose_citations(body: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """The fake's citation for an answer about ``text``: a ``content_block_location`` of the document
    section (text block of a ``content`` source) sharing the most topic words with it, first on a tie;
    none when no section shares any."""
    wanted = _topic_words(text)
    if not wanted:
        return []
    best: tuple[int, int, int, dict[str, Any], str] | None = None
    for doc_index, document in enumerate(_documents(body)):
        source = document.get("source") or {}
        content = source.get("content") if source.get("type") == "content" else None
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block_index, item in enumerate(content or []):
            if not isinstance(item, dict) or item.get("type") != "text":
                continue
            score = len(wanted & _topic_words(str(item["text"])))
            if best is None or score > best[0]:
                best = (score, doc_index, block_index, document, str(item["text"]))
    if best is None or best[0] < 1:
        return []
    _score, doc_index, block_index, document, cited = best
    return [
        {
            "type": "content_block_location",
            "cited_text": cited,
            "document_index": doc_index,
            "document_title": document.get("title"),
            "start_block_index": block_index,
            "end_block_index": block_index + 1,
        }
    ]


def estimate_output_tokens(content: list[dict[str, Any]]) -> int:
    """Output tokens for generated content: text length or tool input JSON length / 4 (at least 1)."""
    if not content:
        return 0
    total = 0
    for block in content:
        if block["type"] == "text":
            total += estimate_tokens(block["text"])
        else:
            total += estimate_tokens(block["name"]) + estimate_tokens(canonical_json(block["input"]))
    return max(total, 1)


def usage_dict(cache_usage: CacheUsage, output_tokens: int) -> dict[str, Any]:
    """The ``usage`` object of a Message."""
    return {
        "input_tokens": cache_usage.input_tokens,
        "cache_creation_input_tokens": cache_usage.cache_creation_input_tokens,
        "cache_read_input_tokens": cache_usage.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache_usage.ephemeral_5m_input_tokens,
            "ephemeral_1h_input_tokens": cache_usage.ephemeral_1h_input_tokens,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _chunks(text: str, size: int) -> list[str]:
    """Split into pieces of at most ``size`` chars, preferring word boundaries (like token deltas)."""
    pieces: list[str] = []
    current = ""
    for word in re.findall(r"\S+\s*|\s+", text):
        while len(word) > size:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:size])
            word = word[size:]
        if len(current) + len(word) > size and current:
            pieces.append(current)
            current = ""
        current += word
    if current:
        pieces.append(current)
    return pieces


# --------------------------------------------------------------------------------------------------
# Faults, rules and batches (state held by FakeAnthropic)
# --------------------------------------------------------------------------------------------------

FaultKind = Literal["fail", "stall", "drop", "error_mid_stream"]


@dataclass
class _Fault:
    kind: FaultKind
    remaining: int
    match: MatchFn | None
    status: int = 500
    retry_after: float | None = None
    error_type: str | None = None
    after_events: int = 2


@dataclass
class _Rule:
    fn: RuleFn
    remaining: int | None


@dataclass
class _Batch:
    id: str
    requests: list[dict[str, Any]]
    api_key: str
    api_version: str
    created_at: datetime
    created_mono: float
    ends_at_mono: float
    status: Literal["in_progress", "canceling", "ended"] = "in_progress"
    cancel_initiated_at: datetime | None = None
    ended_at: datetime | None = None
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Latency:
    ttft_s: float
    tps: float


@dataclass
class _HttpRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    raw_body: bytes
    started_at: float  # time.monotonic() when the request head was parsed


class _Abort(Exception):
    """Raised inside a handler to close the TCP connection abruptly (fault injection)."""


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class FakeAnthropic:
    """A fake Anthropic API server on a loopback port, run in a background thread.

    Use as ``with FakeAnthropic() as fake: client = AsyncAnthropic(base_url=fake.url, ...)``. All
    configuration methods are thread-safe and may be called from the test's thread (or loop) while the
    server runs. Rules are consulted newest-first: the most recently added rule that returns a Reply wins.
    Faults are consumed oldest-first, one matching fault per request.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        default_ttft_s: float = 0.0,
        default_tps: float = 0.0,
        batch_delay_s: float = 0.0,
        batch_result_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.url = ""
        self.requests: list[RecordedRequest] = []
        # Exceptions raised while handling requests (e.g. by a rule callable); reset() clears them.
        self.internal_errors: list[Exception] = []
        self.batch_delay_s = batch_delay_s
        # Seconds between two lines of a batch's results (0: the whole file at once). Tests use it to stop
        # a worker while it is part way through applying them.
        self.batch_result_interval_s = batch_result_interval_s
        self.cache = PromptCache(clock)
        self._initial = (default_ttft_s, default_tps, batch_delay_s, batch_result_interval_s)
        self._latency: dict[str | None, _Latency] = {None: _Latency(default_ttft_s, default_tps)}
        self._rules: list[_Rule] = []
        self._faults: list[_Fault] = []
        self._batches: dict[str, _Batch] = {}
        self._ids = _Ids()
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._request_times: list[float] = []
        self.connections_accepted = 0  # TCP connections taken (a client that reuses its pool opens one)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeAnthropic:
        """Start listening (in a daemon thread with its own event loop); returns once the port is bound."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._on_connection, self.host, self.port)
                )
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            sockname = self._server.sockets[0].getsockname()
            self.port = int(sockname[1])
            self.url = f"http://{self.host}:{self.port}"
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-anthropic", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, stop the loop and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None
        self._server = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- configuration ---------------------------------------------------------------------------

    def add_rule(
        self,
        rule: RuleFn | None = None,
        *,
        match: MatchFn | None = None,
        reply: Reply | None = None,
        times: int | None = None,
    ) -> None:
        """Program a reply. Either ``rule(body) -> Reply | None`` or ``match(body) -> bool`` + ``reply``.

        ``body`` is the create-params dict (for batch items: the item's ``params``). Rules are checked
        newest-first; a rule that returns None falls through. ``times`` limits how often a rule fires.
        """
        if rule is None:
            if reply is None:
                raise ValueError("add_rule needs either a rule callable or a reply")
            fixed = reply

            def rule(body: dict[str, Any]) -> Reply | None:
                return fixed if match is None or match(body) else None

        elif match is not None or reply is not None:
            raise ValueError("pass either a rule callable or match/reply, not both")
        with self._lock:
            self._rules.append(_Rule(rule, times))

    def fail_next(
        self,
        status: int,
        *,
        n: int = 1,
        retry_after: float | None = None,
        error_type: str | None = None,
        match: MatchFn | None = None,
    ) -> None:
        """Answer the next ``n`` matching API requests (any endpoint) with an error status and body."""
        self._add_fault(
            _Fault("fail", n, match, status=status, retry_after=retry_after, error_type=error_type)
        )

    def stall_next(self, *, after_events: int = 2, n: int = 1, match: MatchFn | None = None) -> None:
        """Next ``n`` matching /v1/messages: send ``after_events`` SSE events (pings count), then hang.

        A non-streaming request hangs before sending anything. The hang ends when the client disconnects.
        """
        self._add_fault(_Fault("stall", n, match, after_events=after_events))

    def drop_next(self, *, after_events: int = 2, n: int = 1, match: MatchFn | None = None) -> None:
        """Next ``n`` matching /v1/messages: send ``after_events`` events, then abort the TCP connection.

        A non-streaming request's connection is aborted before any response byte.
        """
        self._add_fault(_Fault("drop", n, match, after_events=after_events))

    def error_mid_stream_next(
        self,
        *,
        after_events: int = 2,
        error_type: str = "overloaded_error",
        n: int = 1,
        match: MatchFn | None = None,
    ) -> None:
        """Next ``n`` matching streaming /v1/messages: ``event: error`` after ``after_events`` events."""
        self._add_fault(
            _Fault("error_mid_stream", n, match, error_type=error_type, after_events=after_events)
        )

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("n must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def set_latency(
        self, *, ttft_s: float | None = None, tps: float | None = None, model: str | None = None
    ) -> None:
        """Time to first token and output tokens per second (0 = unlimited), for one model or the default."""
        with self._lock:
            base = self._latency.get(model) or self._latency[None]
            self._latency[model] = _Latency(
                base.ttft_s if ttft_s is None else ttft_s, base.tps if tps is None else tps
            )

    def take_requests(self) -> list[RecordedRequest]:
        """Return the requests recorded so far and forget them (long benchmark runs stay bounded)."""
        with self._lock:
            taken, self.requests = self.requests, []
        return taken

    def reset(self) -> None:
        """Forget rules, faults, recordings, cache, batches and latency overrides (per-test isolation)."""
        with self._lock:
            self._rules.clear()
            self._faults.clear()
            self.requests.clear()
            self.internal_errors.clear()
            self._request_times.clear()
            self._batches.clear()
            ttft_s, tps, batch_delay_s, batch_result_interval_s = self._initial
            self._latency = {None: _Latency(ttft_s, tps)}
            self.batch_delay_s = batch_delay_s
            self.batch_result_interval_s = batch_result_interval_s
            self._ids.reset()
        self.cache.clear()

    # -- state helpers (server thread) -----------------------------------------------------------

    def _take_fault(self, kinds: tuple[FaultKind, ...], body: dict[str, Any]) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and (fault.match is None or fault.match(body)):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _find_reply(self, body: dict[str, Any]) -> Reply | None:
        with self._lock:
            for rule in reversed(self._rules):
                reply = rule.fn(body)
                if reply is None:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                return reply
        return None

    def _latency_for(self, model: str) -> _Latency:
        with self._lock:
            return self._latency.get(model) or self._latency[None]

    def _rate_limit_headers(self) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            self._request_times = [t for t in self._request_times if now - t < RATE_LIMIT_WINDOW_S]
            used = len(self._request_times)
        reset = _rfc3339(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=RATE_LIMIT_WINDOW_S))
        headers = {
            "anthropic-ratelimit-requests-limit": str(RATE_LIMIT_REQUESTS_PER_MIN),
            "anthropic-ratelimit-requests-remaining": str(max(RATE_LIMIT_REQUESTS_PER_MIN - used, 0)),
            "anthropic-ratelimit-requests-reset": reset,
        }
        for name, limit in (
            ("tokens", RATE_LIMIT_TOKENS_PER_MIN),
            ("input-tokens", RATE_LIMIT_INPUT_TOKENS_PER_MIN),
            ("output-tokens", RATE_LIMIT_OUTPUT_TOKENS_PER_MIN),
        ):
            headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(limit)
            headers[f"anthropic-ratelimit-{name}-reset"] = reset
        return headers

    # -- message generation ----------------------------------------------------------------------

    def _generate_message(self, body: dict[str, Any], api_key: str) -> tuple[dict[str, Any], Reply | None]:
        """Build the full Message for a validated body; updates the prompt cache."""
        reply = self._find_reply(body)
        if reply is not None and reply.raw_sse is not None:
            return {}, reply
        content, stop_reason = build_content(body, reply, self._ids)
        output_tokens = (
            reply.output_tokens
            if reply is not None and reply.output_tokens is not None
            else estimate_output_tokens(content)
        )
        cache_usage = self.cache.account(api_key, str(body["model"]), body)
        message = {
            "id": self._ids.next("msg"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage_dict(cache_usage, output_tokens),
        }
        return message, reply

    # -- HTTP plumbing ---------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.connections_accepted += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(conn, reader)
                if request is None:
                    break
                await self._handle(request, conn, reader, writer)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except _Abort:
            writer.transport.abort()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            writer.transport.abort()
        except asyncio.CancelledError:
            # Only stop() cancels these top-level handler tasks. Re-raising would make Python 3.11's
            # start_server callback log a spurious traceback, so the cancellation ends here.
            writer.transport.abort()
        finally:
            self._connections.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> _HttpRequest | None:
        request: h11.Request | None = None
        started_at = 0.0
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(_READ_CHUNK_BYTES)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                request, started_at = event, time.monotonic()
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                target = urlsplit(request.target.decode("latin-1"))
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
                return _HttpRequest(
                    request.method.decode(), target.path, target.query, headers, bytes(body), started_at
                )

    @staticmethod
    def _send(writer: asyncio.StreamWriter, data: bytes | None) -> None:
        if data:
            writer.write(data)

    async def _respond(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes,
        headers: dict[str, str],
        content_type: str = "application/json",
        record: RecordedRequest | None = None,
    ) -> None:
        if record is not None:  # stamped before the bytes go: a slow write counts against the client
            record.finished_at = time.monotonic()
        all_headers = list(headers.items())
        all_headers += [("content-type", content_type), ("content-length", str(len(payload)))]
        self._send(writer, conn.send(h11.Response(status_code=status, headers=all_headers)))
        self._send(writer, conn.send(h11.Data(data=payload)))
        self._send(writer, conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _respond_paced(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        payload: bytes,
        headers: dict[str, str],
        interval_s: float,
    ) -> None:
        """A JSONL body sent chunked, one line every ``interval_s`` seconds."""
        all_headers = [*headers.items(), ("content-type", "application/binary")]
        self._send(writer, conn.send(h11.Response(status_code=200, headers=all_headers)))
        for line in payload.splitlines(keepends=True):
            self._send(writer, conn.send(h11.Data(data=line)))
            await writer.drain()
            await asyncio.sleep(interval_s)
        self._send(writer, conn.send(h11.EndOfMessage()))
        await writer.drain()

    def _error_body(self, error: ApiError, request_id: str) -> bytes:
        return json.dumps(
            {
                "type": "error",
                "error": {"type": error.error_type, "message": error.message},
                "request_id": request_id,
            }
        ).encode()

    async def _handle(
        self,
        http: _HttpRequest,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        request_id = self._ids.next("req")
        body: Any = None
        if http.raw_body:
            try:
                body = json.loads(http.raw_body)
            except ValueError:
                body = None
        record = RecordedRequest(
            method=http.method,
            path=http.path,
            headers=dict(http.headers),
            body=body,
            arrived_at=time.monotonic(),
            query=http.query,
            started_at=http.started_at,
        )
        with self._lock:
            self.requests.append(record)
            self._request_times.append(record.arrived_at)
        headers = {"request-id": request_id, **self._rate_limit_headers()}
        try:
            if http.raw_body and body is None:
                raise _invalid("Request body is not valid JSON")
            await self._route(http, body, record, headers, conn, reader, writer)
            if record.finished_at is None:
                record.finished_at = time.monotonic()
        except ApiError as error:
            record.response_status = error.status
            await self._respond(
                conn, writer, error.status, self._error_body(error, request_id), {**headers, **error.headers}
            )
        except (_Abort, ConnectionError, h11.ProtocolError):
            raise
        except Exception as exc:
            # A bug here or in a test's rule callable: keep it for the test to inspect, answer 500 (or
            # abort if the response already started) instead of losing it in a background thread's log.
            self.internal_errors.append(exc)
            if conn.our_state is not h11.SEND_RESPONSE:
                raise _Abort from exc
            internal = ApiError(500, f"fake_anthropic internal error: {exc!r}", error_type="api_error")
            record.response_status = 500
            await self._respond(conn, writer, 500, self._error_body(internal, request_id), headers)

    def _check_headers(self, http: _HttpRequest) -> tuple[str, str]:
        """Authenticate and check the API version; return (api key, version)."""
        api_key = http.headers.get("x-api-key", "")
        authorization = http.headers.get("authorization", "")
        if not api_key and authorization.lower().startswith("bearer "):
            api_key = authorization[7:].strip()
        if not api_key:
            raise ApiError(401, "x-api-key header is required", error_type="authentication_error")
        version = http.headers.get("anthropic-version")
        if version is None:
            raise _invalid("anthropic-version: header is required")
        if version not in SUPPORTED_API_VERSIONS:
            raise _invalid(f"anthropic-version: unsupported version {version!r}")
        return api_key, version

    async def _route(
        self,
        http: _HttpRequest,
        body: Any,
        record: RecordedRequest,
        headers: dict[str, str],
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        api_key, version = self._check_headers(http)
        fault = self._take_fault(("fail",), body if isinstance(body, dict) else {})
        if fault is not None:
            extra = {} if fault.retry_after is None else {"retry-after": _format_seconds(fault.retry_after)}
            error_type = fault.error_type or _ERROR_TYPE_BY_STATUS.get(fault.status, "api_error")
            message = _ERROR_MESSAGE_BY_TYPE.get(error_type, error_type.replace("_", " "))
            raise ApiError(fault.status, message, error_type=error_type, headers=extra)
        method, path = http.method, http.path.rstrip("/")
        if path == "/v1/messages" and method == "POST":
            await self._messages(
                validate_messages_body(body, version), api_key, record, headers, conn, reader, writer
            )
            return
        if path == "/v1/messages/count_tokens" and method == "POST":
            validated = validate_messages_body(body, version, require_max_tokens=False)
            payload = {"input_tokens": count_prompt_tokens(validated)}
        elif path == "/v1/messages/batches" and method == "POST":
            payload = self._create_batch(body, api_key, version)
        elif path == "/v1/messages/batches" and method == "GET":
            payload = self._list_batches(parse_qs(http.query))
        elif (match := re.fullmatch(r"/v1/messages/batches/([^/]+)(/cancel|/results)?", path)) is not None:
            batch_id, action = match.group(1), match.group(2)
            if action == "/results" and method == "GET":
                lines = self._batch_results(batch_id)
                record.response_status = 200
                if self.batch_result_interval_s > 0:
                    await self._respond_paced(conn, writer, lines, headers, self.batch_result_interval_s)
                else:
                    await self._respond(conn, writer, 200, lines, headers, content_type="application/binary")
                return
            if action == "/cancel" and method == "POST":
                payload = self._cancel_batch(batch_id)
            elif action is None and method == "GET":
                payload = self._batch_object(self._get_batch(batch_id))
            elif action is None and method == "DELETE":
                payload = self._delete_batch(batch_id)
            else:
                raise ApiError(405, f"Method {method} not allowed", error_type="invalid_request_error")
        else:
            raise ApiError(404, f"Not found: {method} {http.path}", error_type="not_found_error")
        record.response_status = 200
        await self._respond(conn, writer, 200, json.dumps(payload).encode(), headers)

    # -- /v1/messages ----------------------------------------------------------------------------

    async def _messages(
        self,
        body: dict[str, Any],
        api_key: str,
        record: RecordedRequest,
        headers: dict[str, str],
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        stream = bool(body.get("stream"))
        kinds: tuple[FaultKind, ...] = ("stall", "drop", "error_mid_stream") if stream else ("stall", "drop")
        fault = self._take_fault(kinds, body)
        if fault is not None and not stream:
            if fault.kind == "drop":
                raise _Abort
            await _wait_for_disconnect(reader)
            raise _Abort
        message, reply = self._generate_message(body, api_key)
        latency = self._latency_for(str(body["model"]))
        if not stream:
            if reply is not None and reply.raw_sse is not None:
                raise ApiError(
                    500, "Reply.raw_sse can only answer a streaming request", error_type="api_error"
                )
            delay = latency.ttft_s + (
                message["usage"]["output_tokens"] / latency.tps if latency.tps > 0 else 0.0
            )
            if delay > 0:
                await asyncio.sleep(delay)
            record.response_status = 200
            await self._respond(conn, writer, 200, json.dumps(message).encode(), headers, record=record)
            return
        record.response_status = 200
        response_headers = list(headers.items())
        response_headers += [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
        ]
        self._send(writer, conn.send(h11.Response(status_code=200, headers=response_headers)))
        await writer.drain()
        if reply is not None and reply.raw_sse is not None:
            events = [e.encode() + b"\n\n" for e in re.split(r"\r?\n\r?\n", reply.raw_sse) if e.strip()]
            plan: list[tuple[bytes, float]] = [(e, 0.0) for e in events]
        else:
            plan = _stream_plan(message, latency)
        # Faults count every event sent (pings included); one past the end means "after message_stop".
        for sent, (data, delay) in enumerate(plan):
            if fault is not None and sent >= fault.after_events:
                break
            if delay > 0:
                await asyncio.sleep(delay)
            self._send(writer, conn.send(h11.Data(data=data)))
            await writer.drain()
            if record.first_token_at is None and data.startswith(b"event: content_block_delta"):
                record.first_token_at = time.monotonic()
        if fault is not None:
            if fault.kind == "drop":
                raise _Abort
            if fault.kind == "stall":
                await _wait_for_disconnect(reader)
                raise _Abort
            error_type = fault.error_type or "overloaded_error"
            error = {
                "type": "error",
                "error": {"type": error_type, "message": _ERROR_MESSAGE_BY_TYPE.get(error_type, error_type)},
            }
            self._send(writer, conn.send(h11.Data(data=_sse("error", error))))
        record.finished_at = time.monotonic()  # before the last bytes go (see _respond)
        self._send(writer, conn.send(h11.EndOfMessage()))
        await writer.drain()

    # -- batches ---------------------------------------------------------------------------------

    def _create_batch(self, body: Any, api_key: str, version: str) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list) or not body["requests"]:
            raise _invalid("requests: Field required (a non-empty list)")
        seen: set[str] = set()
        for index, item in enumerate(body["requests"]):
            if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
                raise _invalid(f"requests.{index}.params: Field required")
            custom_id = item.get("custom_id")
            if not isinstance(custom_id, str) or not _CUSTOM_ID_RE.match(custom_id):
                raise _invalid(f"requests.{index}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
            if custom_id in seen:
                raise _invalid(f"requests.{index}.custom_id: duplicate custom_id {custom_id!r}")
            if item["params"].get("stream"):
                raise _invalid(f"requests.{index}.params.stream: streaming is not supported in batches")
            seen.add(custom_id)
        now_mono = time.monotonic()
        batch = _Batch(
            id=self._ids.next("msgbatch"),
            requests=list(body["requests"]),
            api_key=api_key,
            api_version=version,
            created_at=datetime.now(UTC),
            created_mono=now_mono,
            ends_at_mono=now_mono + self.batch_delay_s,
        )
        with self._lock:
            self._batches[batch.id] = batch
        return self._batch_object(batch)

    def _get_batch(self, batch_id: str) -> _Batch:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"Message batch {batch_id} not found", error_type="not_found_error")
        self._advance_batch(batch)
        return batch

    def _advance_batch(self, batch: _Batch) -> None:
        """Finish a batch whose time is up: compute results now, so rules added meanwhile apply."""
        with self._lock:
            if batch.status == "ended":
                return
            if batch.status == "canceling":
                batch.results = [
                    {"custom_id": item["custom_id"], "result": {"type": "canceled"}}
                    for item in batch.requests
                ]
            elif time.monotonic() >= batch.ends_at_mono:
                batch.results = [self._batch_item_result(batch, item) for item in batch.requests]
            else:
                return
            batch.status = "ended"
            batch.ended_at = datetime.now(UTC)

    def _batch_item_result(self, batch: _Batch, item: dict[str, Any]) -> dict[str, Any]:
        try:
            params = validate_messages_body(item["params"], batch.api_version)
            message, reply = self._generate_message(params, batch.api_key)
            if reply is not None and reply.raw_sse is not None:
                raise ApiError(500, "Reply.raw_sse cannot answer a batch request", error_type="api_error")
            message["usage"]["service_tier"] = "batch"
            result: dict[str, Any] = {"type": "succeeded", "message": message}
        except ApiError as error:
            result = {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": error.error_type, "message": error.message},
                    "request_id": self._ids.next("req"),
                },
            }
        return {"custom_id": item["custom_id"], "result": result}

    def _batch_object(self, batch: _Batch) -> dict[str, Any]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.status == "ended":
            for line in batch.results:
                counts[line["result"]["type"]] += 1
        else:
            counts["processing"] = len(batch.requests)
        ended = batch.status == "ended"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.status,
            "request_counts": counts,
            "created_at": _rfc3339(batch.created_at),
            "expires_at": _rfc3339(batch.created_at + timedelta(seconds=BATCH_EXPIRY_S)),
            "ended_at": _rfc3339(batch.ended_at) if batch.ended_at else None,
            "cancel_initiated_at": _rfc3339(batch.cancel_initiated_at) if batch.cancel_initiated_at else None,
            "archived_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def _list_batches(self, query: dict[str, list[str]]) -> dict[str, Any]:
        with self._lock:
            batches = list(self._batches.values())
        for batch in batches:
            self._advance_batch(batch)
        batches.reverse()  # newest first, like the real API
        limit = int(query.get("limit", ["20"])[0])
        ids = [b.id for b in batches]
        if "after_id" in query and query["after_id"][0] in ids:
            batches = batches[ids.index(query["after_id"][0]) + 1 :]
        elif "before_id" in query and query["before_id"][0] in ids:
            cut = ids.index(query["before_id"][0])
            batches = batches[max(cut - limit, 0) : cut]
        page = batches[:limit]
        return {
            "data": [self._batch_object(b) for b in page],
            "has_more": len(batches) > len(page),
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        }

    def _cancel_batch(self, batch_id: str) -> dict[str, Any]:
        batch = self._get_batch(batch_id)
        with self._lock:
            if batch.status == "in_progress":
                batch.status = "canceling"
                batch.cancel_initiated_at = datetime.now(UTC)
        return self._batch_object(batch)

    def _delete_batch(self, batch_id: str) -> dict[str, Any]:
        batch = self._get_batch(batch_id)
        if batch.status != "ended":
            raise _invalid(f"Message batch {batch_id} is still processing; cancel it first")
        with self._lock:
            self._batches.pop(batch_id, None)
        return {"id": batch_id, "type": "message_batch_deleted"}

    def _batch_results(self, batch_id: str) -> bytes:
        batch = self._get_batch(batch_id)
        if batch.status != "ended":
            raise _invalid(f"Message batch {batch_id} has not finished processing")
        return "".join(json.dumps(line) + "\n" for line in batch.results).encode()


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


async def _wait_for_disconnect(reader: asyncio.StreamReader) -> None:
    """Block until the client closes its side (or the server shuts down and cancels us)."""
    while await reader.read(_READ_CHUNK_BYTES):
        pass


def _stream_plan(message: dict[str, Any], latency: _Latency) -> list[tuple[bytes, float]]:
    """The SSE events for ``message`` with the delay to wait before each (TTFT, then tokens/s pacing)."""
    usage = message["usage"]
    start_message = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start_message["usage"] = {**usage, "output_tokens": min(1, usage["output_tokens"])}
    plan: list[tuple[bytes, float]] = [
        (_sse("message_start", {"type": "message_start", "message": start_message}), 0.0),
        (_sse("ping", {"type": "ping"}), 0.0),
    ]
    first_delta = True

    def pace(chunk: str) -> float:
        nonlocal first_delta
        delay = estimate_tokens(chunk) / latency.tps if latency.tps > 0 else 0.0
        if first_delta:
            first_delta = False
            delay += latency.ttft_s
        return delay

    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            start_block: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [
                {"type": "text_delta", "text": piece}
                for piece in _chunks(block["text"], STREAM_TEXT_CHUNK_CHARS)
            ]
            texts = [d["text"] for d in deltas]
            # Citations follow the text they support, one citations_delta each (as the real API streams).
            deltas += [{"type": "citations_delta", "citation": c} for c in block.get("citations") or []]
            texts += ["" for _ in block.get("citations") or []]
        else:
            start_block = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            raw = json.dumps(block["input"])
            texts = [
                raw[i : i + STREAM_JSON_CHUNK_CHARS] for i in range(0, len(raw), STREAM_JSON_CHUNK_CHARS)
            ]
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in texts]
        plan.append(
            (
                _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start_block},
                ),
                0.0,
            )
        )
        for delta, text in zip(deltas, texts, strict=True):
            plan.append(
                (
                    _sse(
                        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                    ),
                    pace(text),
                )
            )
        plan.append((_sse("content_block_stop", {"type": "content_block_stop", "index": index}), 0.0))
    delta_usage = {
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
        "output_tokens": usage["output_tokens"],
    }
    plan.append(
        (
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                    "usage": delta_usage,
                },
            ),
            latency.ttft_s if first_delta else 0.0,
        )
    )
    plan.append((_sse("message_stop", {"type": "message_stop"}), 0.0))
    return plan
