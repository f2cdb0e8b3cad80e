"""The fake Anthropic server, exercised through the unmodified SDK (and raw HTTP where the wire matters)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import anthropic
import httpx
import jsonschema
import pytest
from anthropic.types import (
    CacheControlEphemeralParam,
    Message,
    MessageParam,
    MessageTokensCount,
    TextBlockParam,
    ToolParam,
)
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from support.testing._schema_instance import generate_instance
from support.testing.fake_anthropic import FakeAnthropic, Reply, count_prompt_tokens, estimate_tokens

SSE_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sse"
SONNET = "claude-sonnet-4-6"  # minimum cacheable prefix 1024 tokens
HAIKU = "claude-haiku-4-5"  # minimum cacheable prefix 4096 tokens
API_HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01", "content-type": "application/json"}

# 5,000 characters = 1,250 estimated tokens: above Sonnet's minimum, below Haiku's.
LONG_POLICY = ("Refunds are issued within 14 days of a return. " * 200)[:5000]

TRIAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "shipping", "other"]},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
        "confidence": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "summary": {"type": "string", "minLength": 10, "maxLength": 200},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "uniqueItems": True},
        "customer": {
            "type": "object",
            "properties": {"email": {"type": "string", "format": "email"}, "vip": {"type": "boolean"}},
            "required": ["email", "vip"],
            "additionalProperties": False,
        },
        "note": {"type": "string"},
    },
    "required": ["category", "urgency", "confidence", "summary", "tags", "customer"],
    "additionalProperties": False,
}
TRIAGE_TOOL: ToolParam = {
    "name": "triage",
    "description": "Route a ticket",
    "input_schema": TRIAGE_SCHEMA,
}


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeAnthropic]:
    """One server per module: starting a thread and a socket per test would dominate the run time."""
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    """The shared server, reset before and after each test so no rule, fault or cache entry leaks."""
    fake_server.reset()
    yield fake_server
    fake_server.reset()


@pytest.fixture
async def client(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """A real SDK client without retries, so each injected fault surfaces as exactly one error."""
    sdk = anthropic.AsyncAnthropic(api_key="test-key", base_url=fake.url, max_retries=0, timeout=10.0)
    yield sdk
    await sdk.close()


@pytest.fixture
async def http(fake: FakeAnthropic) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for asserting on the wire format."""
    async with httpx.AsyncClient(base_url=fake.url, timeout=10.0) as raw:
        yield raw


def _user(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


def _cached_system(text: str = LONG_POLICY, ttl: Literal["5m", "1h"] | None = None) -> list[TextBlockParam]:
    cache_control: CacheControlEphemeralParam = {"type": "ephemeral"}
    if ttl:
        cache_control["ttl"] = ttl
    return [{"type": "text", "text": text, "cache_control": cache_control}]


async def _raw_events(http: httpx.AsyncClient, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    async with http.stream(
        "POST", "/v1/messages", json={**body, "stream": True}, headers=API_HEADERS
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        name = ""
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: ") :])))
    return events


# -- plain messages ---------------------------------------------------------------------------------


async def test_json_reply_is_a_valid_message_with_a_deterministic_echo(
    client: anthropic.AsyncAnthropic,
) -> None:
    message = await client.messages.create(model=HAIKU, max_tokens=200, messages=_user("Where is my parcel?"))
    raw = await client.messages.with_raw_response.create(
        model=HAIKU, max_tokens=200, messages=_user("Where is my parcel?")
    )
    again = Message.model_validate(json.loads(raw.http_response.text))
    assert message.content[0].type == "text"
    assert "Where is my parcel?" in message.content[0].text
    assert again.content[0].model_dump() == message.content[0].model_dump()
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == estimate_tokens("Where is my parcel?")
    assert message.usage.output_tokens == estimate_tokens(message.content[0].text)
    assert raw.http_response.headers["request-id"].startswith("req_")


async def test_streaming_text_matches_the_final_message(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(model=HAIKU, max_tokens=200, messages=_user("hello")) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(pieces) > 3
    assert final.content[0].type == "text"
    assert "".join(pieces) == final.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == estimate_tokens(final.content[0].text)


async def test_sse_event_order_is_exact_with_a_ping_after_message_start(http: httpx.AsyncClient) -> None:
    events = await _raw_events(http, {"model": HAIKU, "max_tokens": 100, "messages": _user("hi")})
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    deltas = names[3:-3]
    assert len(deltas) > 1
    assert set(deltas) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["stop_reason"] is None
    assert start["content"] == []
    assert "cache_read_input_tokens" in start["usage"]
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert events[-2][1]["usage"]["output_tokens"] == estimate_tokens(text)
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


async def test_sync_client_works_against_the_threaded_server(fake: FakeAnthropic) -> None:
    def call() -> Message:
        with anthropic.Anthropic(api_key="k", base_url=fake.url, max_retries=0) as sync_client:
            return sync_client.messages.create(model=HAIKU, max_tokens=50, messages=_user("sync"))

    message = await asyncio.to_thread(call)
    assert message.content[0].type == "text"


async def test_max_tokens_truncates_text_with_stop_reason_max_tokens(
    client: anthropic.AsyncAnthropic,
) -> None:
    message = await client.messages.create(model=HAIKU, max_tokens=3, messages=_user("a long question"))
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text"
    assert len(message.content[0].text) == 12


# -- tools and structured output -------------------------------------------------------------------


def test_schema_generator_produces_valid_instances_for_common_keywords() -> None:
    schemas: list[dict[str, Any]] = [
        TRIAGE_SCHEMA,
        {"type": "integer", "exclusiveMinimum": 3, "multipleOf": 5},
        {"type": ["null", "string"], "pattern": "^[0-9]+$"},
        {
            "$defs": {"x": {"type": "object", "required": ["a"], "properties": {"a": {"const": 7}}}},
            "$ref": "#/$defs/x",
        },
        {"anyOf": [{"type": "null"}, {"type": "number", "minimum": 2.5}]},
        {
            "allOf": [
                {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}},
                {"required": ["b"]},
            ]
        },
    ]
    for schema in schemas:
        jsonschema.validate(generate_instance(schema), schema)


async def test_forced_tool_use_input_validates_against_the_schema(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(
        model=HAIKU,
        max_tokens=500,
        tools=[TRIAGE_TOOL],
        tool_choice={"type": "tool", "name": "triage"},
        messages=_user("My invoice is wrong"),
    )
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use"
    assert block.name == "triage"
    jsonschema.validate(block.input, TRIAGE_SCHEMA)


async def test_forced_tool_use_streams_input_json_deltas(
    client: anthropic.AsyncAnthropic, http: httpx.AsyncClient
) -> None:
    body: dict[str, Any] = {
        "model": HAIKU,
        "max_tokens": 500,
        "tools": [TRIAGE_TOOL],
        "tool_choice": {"type": "tool", "name": "triage"},
        "messages": _user("Invoice problem"),
    }
    events = await _raw_events(http, body)
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert len(deltas) > 1
    assert {d["type"] for d in deltas} == {"input_json_delta"}
    jsonschema.validate(json.loads("".join(d["partial_json"] for d in deltas)), TRIAGE_SCHEMA)
    async with client.messages.stream(**body) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "tool_use"
    jsonschema.validate(final.content[0].input, TRIAGE_SCHEMA)


async def test_rule_supplied_tool_use_is_returned_verbatim(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.add_rule(reply=Reply(text="Routing.", tool_use={"name": "triage", "input": {"category": "bogus"}}))
    message = await client.messages.create(
        model=HAIKU,
        max_tokens=100,
        tools=[TRIAGE_TOOL],
        messages=_user("x"),
    )
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[1].type == "tool_use"
    assert message.content[1].input == {"category": "bogus"}
    assert message.stop_reason == "tool_use"


async def test_output_config_json_schema_returns_a_valid_json_document(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    output_config: Any = {"format": {"type": "json_schema", "schema": TRIAGE_SCHEMA}}
    message = await client.messages.create(
        model=HAIKU, max_tokens=500, output_config=output_config, messages=_user("classify")
    )
    assert message.content[0].type == "text"
    jsonschema.validate(json.loads(message.content[0].text), TRIAGE_SCHEMA)

    fake.add_rule(reply=Reply(json={"category": "shipping"}))
    ruled = await client.messages.create(
        model=HAIKU, max_tokens=500, output_config=output_config, messages=_user("classify")
    )
    assert ruled.content[0].type == "text"
    assert json.loads(ruled.content[0].text) == {"category": "shipping"}


# -- rules ------------------------------------------------------------------------------------------


async def test_rules_are_newest_first_with_fallthrough_and_times(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.add_rule(reply=Reply(text="general"))
    fake.add_rule(
        match=lambda body: "refund" in json.dumps(body["messages"]), reply=Reply(text="refund"), times=1
    )
    fake.add_rule(lambda body: None)  # always falls through

    async def ask(text: str) -> str:
        message = await client.messages.create(model=HAIKU, max_tokens=100, messages=_user(text))
        block = message.content[0]
        assert block.type == "text"
        return block.text

    assert await ask("a refund please") == "refund"
    assert await ask("a refund please") == "general"  # times=1 used up
    assert await ask("hello") == "general"


async def test_a_rule_that_raises_becomes_a_500_and_is_kept_for_inspection(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    def broken(body: dict[str, Any]) -> Reply | None:
        raise KeyError("oops")

    fake.add_rule(broken)
    with pytest.raises(anthropic.InternalServerError, match="KeyError"):
        await client.messages.create(model=HAIKU, max_tokens=5, messages=_user("x"))
    assert [type(e) for e in fake.internal_errors] == [KeyError]


async def test_replayed_sse_transcripts_parse_with_the_sdk(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    text_sse = (SSE_FIXTURES / "text_basic.sse").read_text()
    fake.add_rule(reply=Reply(raw_sse=text_sse), times=1)
    async with client.messages.stream(model=HAIKU, max_tokens=100, messages=_user("refund?")) as stream:
        pieces = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == "Your refund was issued on 3 November."
    assert final.id == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert final.usage.cache_read_input_tokens == 4200
    assert final.usage.output_tokens == 12

    fake.add_rule(reply=Reply(raw_sse=(SSE_FIXTURES / "tool_use.sse").read_text()), times=1)
    async with client.messages.stream(model=SONNET, max_tokens=100, messages=_user("route")) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[1].type == "tool_use"
    assert final.content[1].input == {"category": "billing", "urgency": 2}
    assert final.usage.cache_creation_input_tokens == 1100
    assert final.usage.input_tokens == 472  # message_start value survives a message_delta without it
    assert final.usage.output_tokens == 89


# -- prompt cache -----------------------------------------------------------------------------------


async def _cached_call(
    client: anthropic.AsyncAnthropic, *, model: str = SONNET, system: list[TextBlockParam] | None = None
) -> Message:
    return await client.messages.create(
        model=model,
        max_tokens=50,
        system=system if system is not None else _cached_system(),
        messages=_user("What is the refund window?"),
    )


async def test_cache_first_call_writes_and_second_identical_call_reads(
    client: anthropic.AsyncAnthropic,
) -> None:
    prefix_tokens = estimate_tokens(LONG_POLICY)
    first = await _cached_call(client)
    assert first.usage.cache_creation_input_tokens == prefix_tokens
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == prefix_tokens
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.input_tokens == estimate_tokens("What is the refund window?")
    second = await _cached_call(client)
    assert second.usage.cache_read_input_tokens == prefix_tokens
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens


async def test_cache_one_changed_byte_before_the_breakpoint_is_a_miss(
    client: anthropic.AsyncAnthropic,
) -> None:
    await _cached_call(client)
    changed = await _cached_call(client, system=_cached_system("X" + LONG_POLICY[1:]))
    assert changed.usage.cache_read_input_tokens == 0
    assert changed.usage.cache_creation_input_tokens == estimate_tokens(LONG_POLICY)


async def test_cache_prefix_below_model_minimum_is_not_cached(client: anthropic.AsyncAnthropic) -> None:
    total = count_prompt_tokens({"system": _cached_system(), "messages": _user("What is the refund window?")})
    for _ in range(2):
        message = await _cached_call(client, model=HAIKU)  # 1,250 tokens < Haiku's 4,096
        assert message.usage.cache_creation_input_tokens == 0
        assert message.usage.cache_read_input_tokens == 0
        assert message.usage.input_tokens == total


async def test_cache_minimum_table_is_overridable(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.cache.min_tokens[HAIKU] = 100
    message = await _cached_call(client, model=HAIKU)
    assert message.usage.cache_creation_input_tokens == estimate_tokens(LONG_POLICY)


async def test_cache_entry_expires_after_ttl_and_a_hit_refreshes_it(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    await _cached_call(client)
    fake.cache.advance(200)
    assert (await _cached_call(client)).usage.cache_read_input_tokens  # hit at 200 s refreshes
    fake.cache.advance(200)  # 400 s after the write, 200 s after the hit
    assert (await _cached_call(client)).usage.cache_read_input_tokens
    fake.cache.advance(301)
    expired = await _cached_call(client)
    assert expired.usage.cache_read_input_tokens == 0
    assert expired.usage.cache_creation_input_tokens == estimate_tokens(LONG_POLICY)


async def test_cache_one_hour_ttl_is_reported_and_outlives_five_minutes(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    first = await _cached_call(client, system=_cached_system(ttl="1h"))
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == estimate_tokens(LONG_POLICY)
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == 0
    fake.cache.advance(1800)
    hit = await _cached_call(client, system=_cached_system(ttl="1h"))
    assert hit.usage.cache_read_input_tokens == estimate_tokens(LONG_POLICY)


async def test_cache_conversation_reads_the_history_the_last_turn_wrote(
    client: anthropic.AsyncAnthropic,
) -> None:
    turn_1 = "first question " * 100
    history: list[MessageParam] = [
        {
            "role": "user",
            "content": [{"type": "text", "text": turn_1, "cache_control": {"type": "ephemeral"}}],
        }
    ]
    first = await client.messages.create(
        model=SONNET,
        max_tokens=50,
        system=_cached_system(),
        messages=history,
    )
    system_tokens, turn_1_tokens = estimate_tokens(LONG_POLICY), estimate_tokens(turn_1)
    assert first.usage.cache_creation_input_tokens == system_tokens + turn_1_tokens
    assert first.usage.input_tokens == 0
    second_history: list[MessageParam] = [
        {"role": "user", "content": [{"type": "text", "text": turn_1}]},
        {"role": "assistant", "content": "answer one"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "follow up", "cache_control": {"type": "ephemeral"}}],
        },
    ]
    second = await client.messages.create(
        model=SONNET,
        max_tokens=50,
        system=_cached_system(),
        messages=second_history,
    )
    # The turn-1 breakpoint moved, so only the system prefix is read;
    # everything up to the new breakpoint is written.
    assert second.usage.cache_read_input_tokens == system_tokens
    assert second.usage.cache_creation_input_tokens == (
        turn_1_tokens + estimate_tokens("answer one") + estimate_tokens("follow up")
    )


async def test_max_tokens_zero_prewarms_the_cache(client: anthropic.AsyncAnthropic) -> None:
    warm = await client.messages.create(
        model=SONNET,
        max_tokens=0,
        system=_cached_system(),
        messages=_user("warm"),
    )
    assert warm.content == []
    assert warm.usage.output_tokens == 0
    assert warm.usage.cache_creation_input_tokens == estimate_tokens(LONG_POLICY)
    assert (await _cached_call(client)).usage.cache_read_input_tokens == estimate_tokens(LONG_POLICY)


async def test_more_than_four_breakpoints_is_rejected(client: anthropic.AsyncAnthropic) -> None:
    system: list[TextBlockParam] = [
        {"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)
    ]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4"):
        await client.messages.create(model=SONNET, max_tokens=5, system=system, messages=_user("x"))


async def test_cache_usage_appears_in_streaming_events(client: anthropic.AsyncAnthropic) -> None:
    await _cached_call(client)
    async with client.messages.stream(
        model=SONNET,
        max_tokens=50,
        system=_cached_system(),
        messages=_user("What is the refund window?"),
    ) as stream:
        final = await stream.get_final_message()
    assert final.usage.cache_read_input_tokens == estimate_tokens(LONG_POLICY)


# -- faults -----------------------------------------------------------------------------------------


async def test_429_carries_retry_after_to_the_sdk(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.fail_next(429, retry_after=7)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model=HAIKU, max_tokens=5, messages=_user("x"))
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["request-id"].startswith("req_")
    body = json.loads(caught.value.response.text)
    assert body["error"]["type"] == "rate_limit_error"
    assert fake.requests[-1].response_status == 429
    ok = await client.messages.create(model=HAIKU, max_tokens=5, messages=_user("x"))  # fault used up
    assert ok.type == "message"


async def test_529_is_an_overloaded_error(fake: FakeAnthropic, client: anthropic.AsyncAnthropic) -> None:
    fake.fail_next(529)
    with pytest.raises(anthropic.OverloadedError) as caught:
        await client.messages.create(model=HAIKU, max_tokens=5, messages=_user("x"))
    assert caught.value.status_code == 529
    body = json.loads(caught.value.response.text)
    assert body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error"
    assert body["request_id"] == caught.value.response.headers["request-id"]


async def test_sdk_retries_honour_retry_after(fake: FakeAnthropic) -> None:
    fake.fail_next(500, n=2, retry_after=0.05)
    async with anthropic.AsyncAnthropic(api_key="k", base_url=fake.url, max_retries=2) as retrying:
        message = await retrying.messages.create(model=HAIKU, max_tokens=5, messages=_user("x"))
    assert message.type == "message"
    assert [r.response_status for r in fake.requests] == [500, 500, 200]


async def test_fault_match_only_hits_matching_requests(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.fail_next(529, match=lambda body: body.get("model") == SONNET)
    assert (await client.messages.create(model=HAIKU, max_tokens=5, messages=_user("x"))).type == "message"
    with pytest.raises(anthropic.OverloadedError):
        await client.messages.create(model=SONNET, max_tokens=5, messages=_user("x"))


async def test_mid_stream_error_event_raises_api_status_error(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.error_mid_stream_next(after_events=4)
    received: list[str] = []

    async def consume() -> None:
        async with client.messages.stream(model=HAIKU, max_tokens=100, messages=_user("hello")) as stream:
            async for event in stream:  # a comprehension would lose the items seen before the error
                if event.type == "text":
                    received.append(event.text)  # noqa: PERF401

    with pytest.raises(anthropic.APIStatusError) as caught:
        await consume()
    assert received  # some text arrived before the error
    assert caught.value.status_code == 200
    assert "overloaded_error" in str(caught.value)


async def test_dropped_connection_raises_in_the_sdk(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.drop_next(after_events=3)
    # Mid-stream and before the first byte alike, a dropped connection surfaces as the SDK's public
    # APIConnectionError (never an HTTP library's own class, which changes with SDK releases).
    with pytest.raises(anthropic.APIConnectionError):
        async with client.messages.stream(model=HAIKU, max_tokens=100, messages=_user("hello")) as stream:
            await stream.get_final_message()
    fake.drop_next()
    with pytest.raises(anthropic.APIConnectionError):
        await client.messages.create(model=HAIKU, max_tokens=100, messages=_user("hello"))


async def test_stalled_stream_trips_the_client_timeout(fake: FakeAnthropic) -> None:
    fake.stall_next(after_events=3)
    fake.stall_next(match=lambda body: not body.get("stream"))
    started = time.monotonic()
    async with anthropic.AsyncAnthropic(
        api_key="k", base_url=fake.url, max_retries=0, timeout=0.3
    ) as impatient:
        with pytest.raises(anthropic.APITimeoutError):  # mid-stream
            async with impatient.messages.stream(model=HAIKU, max_tokens=100, messages=_user("x")) as stream:
                await stream.get_final_message()
        with pytest.raises(anthropic.APITimeoutError):  # before any byte
            await impatient.messages.create(model=HAIKU, max_tokens=100, messages=_user("x"))
    assert 0.5 < time.monotonic() - started < 5


@pytest.mark.serial
async def test_ttft_latency_delays_the_first_text(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.set_latency(ttft_s=0.3, model=HAIKU)
    started = time.monotonic()
    async with client.messages.stream(model=HAIKU, max_tokens=100, messages=_user("x")) as stream:
        async for _ in stream.text_stream:
            break
        first_text_s = time.monotonic() - started
    assert first_text_s >= 0.3
    started = time.monotonic()
    await client.messages.create(model=SONNET, max_tokens=100, messages=_user("x"))  # other model: no delay
    assert time.monotonic() - started < 0.3


async def test_recorded_requests_carry_first_token_and_finish_times(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.set_latency(ttft_s=0.2, tps=50, model=HAIKU)
    async with client.messages.stream(model=HAIKU, max_tokens=100, messages=_user("x")) as stream:
        await stream.get_final_message()
    stream_read = time.monotonic()
    await client.messages.create(model=SONNET, max_tokens=100, messages=_user("y"))
    create_read = time.monotonic()
    # finished_at is stamped before the response's last bytes are written: set, and no later than the
    # moment the client had read the whole response (a benchmark never counts a write as model time).
    streamed, created = fake.take_requests()
    assert streamed.first_token_at is not None
    assert streamed.finished_at is not None
    assert streamed.first_token_at - streamed.arrived_at >= 0.2
    assert streamed.finished_at > streamed.first_token_at  # the rest is paced at 50 tokens/s
    assert streamed.finished_at <= stream_read
    assert created.first_token_at is None  # not streamed: only the finish time
    assert created.finished_at is not None
    assert created.arrived_at <= created.finished_at <= create_read
    assert fake.take_requests() == []  # taken means forgotten
    assert fake.requests == []


# -- headers and validation -------------------------------------------------------------------------


async def test_both_auth_headers_are_accepted_and_none_is_401(http: httpx.AsyncClient) -> None:
    body = {"model": HAIKU, "max_tokens": 5, "messages": _user("x")}
    ok_key = await http.post("/v1/messages", json=body, headers=API_HEADERS)
    bearer = {"authorization": "Bearer test-key", "anthropic-version": "2026-10-21"}
    ok_bearer = await http.post("/v1/messages", json=body, headers=bearer)
    missing = await http.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert (ok_key.status_code, ok_bearer.status_code, missing.status_code) == (200, 200, 401)
    assert missing.json()["error"]["type"] == "authentication_error"
    for name in ("requests", "tokens", "input-tokens", "output-tokens"):
        for part in ("limit", "remaining", "reset"):
            assert f"anthropic-ratelimit-{name}-{part}" in ok_key.headers
    assert ok_key.headers["anthropic-ratelimit-requests-reset"].endswith("Z")


async def test_unknown_or_missing_version_is_400(http: httpx.AsyncClient) -> None:
    body = {"model": HAIKU, "max_tokens": 5, "messages": _user("x")}
    bad = await http.post(
        "/v1/messages", json=body, headers={**API_HEADERS, "anthropic-version": "2024-01-01"}
    )
    missing = await http.post("/v1/messages", json=body, headers={"x-api-key": "k"})
    assert (bad.status_code, missing.status_code) == (400, 400)
    assert bad.json()["error"]["type"] == "invalid_request_error"


async def test_temperature_is_rejected_only_on_2026_10_21(
    client: anthropic.AsyncAnthropic, http: httpx.AsyncClient
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        await client.messages.create(
            model=HAIKU, max_tokens=5, messages=_user("x"), extra_body={"temperature": 0.2}
        )
    old = await http.post(
        "/v1/messages",
        json={"model": HAIKU, "max_tokens": 5, "messages": _user("x"), "top_k": 5},
        headers=API_HEADERS,
    )
    assert old.status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": HAIKU, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": HAIKU, "max_tokens": 5}, "messages"),
        ({"model": HAIKU, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
    ],
)
async def test_invalid_bodies_get_the_real_error_shape(
    http: httpx.AsyncClient, body: dict[str, Any], fragment: str
) -> None:
    response = await http.post("/v1/messages", json=body, headers=API_HEADERS)
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "invalid_request_error"
    assert fragment in payload["error"]["message"]
    assert payload["request_id"] == response.headers["request-id"]


async def test_count_tokens_uses_the_same_estimate(client: anthropic.AsyncAnthropic) -> None:
    counted = await client.messages.count_tokens(
        model=SONNET,
        system=_cached_system(),
        messages=_user("What is the refund window?"),
    )
    assert isinstance(counted, MessageTokensCount)
    message = await _cached_call(client)
    usage = message.usage
    assert counted.input_tokens == (
        usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
    )


# -- batches ----------------------------------------------------------------------------------------


def _batch_requests(*custom_ids: str) -> list[Any]:
    return [
        {"custom_id": cid, "params": {"model": HAIKU, "max_tokens": 50, "messages": _user(f"ticket {cid}")}}
        for cid in custom_ids
    ]


async def test_batch_runs_then_ends_with_results_at_an_absolute_url(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.batch_delay_s = 0.2
    fake.add_rule(match=lambda body: "t-2" in json.dumps(body), reply=Reply(text="second"))
    requests = [
        *_batch_requests("t-1", "t-2"),
        {"custom_id": "t-3", "params": {"model": HAIKU, "messages": []}},
    ]
    batch = await client.messages.batches.create(requests=requests)
    assert isinstance(batch, MessageBatch)
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 3
    assert batch.results_url is None
    await asyncio.sleep(0.25)
    ended = await client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.results_url == f"{fake.url}/v1/messages/batches/{batch.id}/results"
    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (2, 1)
    results: dict[str, MessageBatchIndividualResponse] = {
        r.custom_id: r async for r in await client.messages.batches.results(batch.id)
    }
    assert set(results) == {"t-1", "t-2", "t-3"}
    second = results["t-2"].result
    assert second.type == "succeeded"
    assert second.message.content[0].type == "text"
    assert second.message.content[0].text == "second"
    assert results["t-3"].result.type == "errored"
    listed = await client.messages.batches.list()
    assert [b.id for b in listed.data] == [batch.id]


async def test_batch_cancel_before_end_cancels_every_request(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.batch_delay_s = 30
    batch = await client.messages.batches.create(requests=_batch_requests("a", "b"))
    canceling = await client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    ended = await client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.canceled == 2
    results = [r async for r in await client.messages.batches.results(batch.id)]
    assert {r.result.type for r in results} == {"canceled"}


async def test_batch_with_duplicate_custom_ids_is_rejected(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="duplicate"):
        await client.messages.batches.create(requests=_batch_requests("same", "same"))
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.batches.retrieve("msgbatch_missing")


# -- recording --------------------------------------------------------------------------------------


async def test_every_request_is_recorded_in_arrival_order(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    before = time.monotonic()
    await client.messages.create(model=HAIKU, max_tokens=5, messages=_user("one"))
    await client.messages.count_tokens(model=HAIKU, messages=_user("two"))
    fake.fail_next(429)
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.batches.create(requests=_batch_requests("r"))
    recorded = fake.requests
    assert [(r.method, r.path, r.response_status) for r in recorded] == [
        ("POST", "/v1/messages", 200),
        ("POST", "/v1/messages/count_tokens", 200),
        ("POST", "/v1/messages/batches", 429),
    ]
    assert recorded[0].body["messages"] == _user("one")
    assert recorded[0].headers["authorization"] == "Bearer test-key"
    assert recorded[0].headers["anthropic-version"] == "2026-10-21"
    assert before <= recorded[0].arrived_at <= recorded[1].arrived_at <= recorded[2].arrived_at
