"""The JSON Schemas in docs/schemas/ describe what the code really sends and accepts.

Server frames are produced by the real ``Event.to_frame``; client frames are fed to the real widget
frame handler (with an in-memory socket, store and turn runner) and the handler's verdict must equal the
schema's.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import support.errors
from support.channels.widget import WidgetConnection
from support.channels.widget_frames import MAX_TEXT_CHARS
from support.conversation.store import Event, iso

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas"
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"

CLIENT_TYPES = ["message", "resume", "typing", "request_human", "rating", "close", "contact"]
SERVER_TYPES = [
    "ack", "delta", "message", "status", "typing", "rating_request", "error", "reply_aborted",
    "contact_saved",
]  # fmt: skip
ALL_FILES = [
    *(f"client.{t}.json" for t in CLIENT_TYPES),
    *(f"server.{t}.json" for t in SERVER_TYPES),
    "session.request.json",
    "session.response.json",
]
CREATED_AT = "2025-01-31T12:00:00.000+00:00"


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def valid(name: str, instance: Any) -> bool:
    return validator(name).is_valid(instance)


# --- the files -------------------------------------------------------------------------------------


def test_every_schema_file_exists_and_nothing_else() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(ALL_FILES)


@pytest.mark.parametrize("name", ALL_FILES)
def test_each_file_is_a_valid_draft_2020_12_schema(name: str) -> None:
    loaded = schema(name)
    assert loaded["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(loaded)


@pytest.mark.parametrize("name", ALL_FILES)
def test_protocol_doc_links_each_schema(name: str) -> None:
    assert f"(schemas/{name})" in PROTOCOL_DOC.read_text(encoding="utf-8")


def test_protocol_doc_lists_every_error_code() -> None:
    doc = PROTOCOL_DOC.read_text(encoding="utf-8")
    codes = {"bad_frame"} | {
        cls.code for cls in vars(support.errors).values()
        if isinstance(cls, type) and issubclass(cls, support.errors.SwitchboardError)
    }  # fmt: skip
    missing = sorted(code for code in codes if f"`{code}`" not in doc)
    assert not missing


def test_text_limit_matches_the_code() -> None:
    assert schema("client.message.json")["properties"]["text"]["maxLength"] == MAX_TEXT_CHARS


# --- server frames from the real code -----------------------------------------------------------


def test_a_customer_message_event_validates() -> None:
    event = Event(
        seq=1, id="a" * 32, type="message", role="customer", text="Where is my order?",
        created_at=CREATED_AT, client_id="c-1",
    )  # fmt: skip
    frame = event.to_frame()
    assert "client_id" not in frame
    validator("server.message.json").validate(frame)


def test_an_assistant_reply_event_validates_with_its_reply_id() -> None:
    from datetime import UTC, datetime

    event = Event(
        seq=2, id="b" * 32, type="message", role="assistant", text="It ships today.",
        created_at=iso(datetime.now(UTC)), reply_id="r1",
    )  # fmt: skip
    frame = event.to_frame()
    assert frame["reply_id"] == "r1"
    validator("server.message.json").validate(frame)
    validator("server.delta.json").validate({"type": "delta", "reply_id": "r1", "text": "It ships"})
    validator("server.reply_aborted.json").validate({"type": "reply_aborted", "reply_id": "r1"})


def test_an_agent_message_with_author_validates() -> None:
    event = Event(
        seq=5, id="c" * 32, type="message", role="agent", text="Hi, Dana here.",
        created_at=CREATED_AT, author={"name": "Dana"},
    )  # fmt: skip
    validator("server.message.json").validate(event.to_frame())


def test_a_status_event_validates() -> None:
    event = Event(
        seq=3, id="d" * 32, type="status", role="system", text="", created_at=CREATED_AT,
        extra={"state": "queued", "queue_position": 2},
    )  # fmt: skip
    frame = event.to_frame()
    assert frame == {"type": "status", "seq": 3, "state": "queued", "queue_position": 2}
    validator("server.status.json").validate(frame)
    with_agent = Event(
        seq=4, id="e" * 32, type="status", role="system", text="", created_at=CREATED_AT,
        extra={"state": "agent", "agent": {"name": "Dana"}},
    )  # fmt: skip
    validator("server.status.json").validate(with_agent.to_frame())


def test_status_and_message_frames_are_not_interchangeable() -> None:
    status = Event(
        seq=3, id="d" * 32, type="status", role="system", text="", created_at=CREATED_AT,
        extra={"state": "escalated"},
    ).to_frame()  # fmt: skip
    assert not valid("server.status.json", status)
    assert not valid("server.message.json", {**status, "state": "queued"})


def test_other_server_frames() -> None:
    assert valid("server.ack.json", {"type": "ack", "client_id": "c-1", "seq": 1})
    assert not valid("server.ack.json", {"type": "ack", "client_id": "c-1", "seq": 0})
    assert valid("server.typing.json", {"type": "typing", "role": "agent"})
    assert not valid("server.typing.json", {"type": "typing", "role": "customer"})
    assert valid("server.rating_request.json", {"type": "rating_request"})
    assert valid(
        "server.error.json", {"type": "error", "code": "bad_frame", "message": "m", "client_id": "x"}
    )
    assert not valid("server.error.json", {"type": "error", "message": "m"})


def test_session_bodies() -> None:
    assert valid("session.request.json", {"widget_key": "pk_demo"})
    assert valid(
        "session.request.json",
        {"widget_key": "pk_demo", "visitor": {"id": "v1", "email": None}, "token": None},
    )
    assert not valid("session.request.json", {"visitor": {}})
    assert not valid("session.request.json", {"widget_key": "pk_demo", "visitor": {"id": 5}})
    assert valid(
        "session.response.json",
        {"conversation_id": "0" * 32, "token": "t", "expires_at": "2025-02-01T12:00:00+00:00"},
    )
    assert not valid("session.response.json", {"conversation_id": "0" * 32, "token": "t"})


# --- client frames: the real handler and the schema agree ------------------------------------------


class _Socket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: int | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = code


class _Store:
    def __init__(self) -> None:
        self.seq = 0

    async def receive_customer_message(
        self, cid: str, client_id: str, text: str, *, now: Any, lock_ttl_ms: int, extra: Any = None
    ) -> tuple[Event, bool, None]:
        self.seq += 1
        event = Event(
            seq=self.seq, id="f" * 32, type="message", role="customer", text=text,
            created_at=iso(now), client_id=client_id,
        )  # fmt: skip
        return event, True, None

    async def publish(self, cid: str, payload: dict[str, Any]) -> int:
        return 1

    async def publish_agent(self, cid: str, payload: dict[str, Any]) -> int:
        return 1

    async def events_after(self, cid: str, after: int) -> list[Event]:
        return []

    async def set_state(self, cid: str, **fields: Any) -> bool:
        return True


class _Ratings:
    async def record(self, cid: str, *, score: int, comment: str | None, now: Any) -> None:
        pass


class _Limits:
    """The shared limits never refuse here: these tests are about frames (tests/security/test_limits.py
    tests the limits on a real server)."""

    def client(self, connection: Any) -> str:
        return "192.0.2.1"

    async def customer_message(self, cid: str, client: str) -> None:
        pass


class _Tickets:
    async def from_chat(self, cid: str, email: str) -> Any:
        return SimpleNamespace(customer_email=email.lower())


class _Turns:
    lock_ttl_ms = 50_000

    def start(self, cid: str, event: Event, context: Any = None, refreshed: Any = None) -> None:
        pass

    def refresh_examples(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def request_human(self, cid: str) -> None:
        pass

    async def close(self, cid: str) -> None:
        pass


async def handler_accepts(frame: Any) -> tuple[bool, list[dict[str, Any]]]:
    """Feed one frame to the real handler; True unless it answered with an error frame."""
    socket = _Socket()
    runtime = SimpleNamespace(
        store=_Store(), turns=_Turns(), ratings=_Ratings(), limits=_Limits(), tickets=_Tickets()
    )
    conn = WidgetConnection(socket, runtime)  # type: ignore[arg-type]
    conn.conversation_id = "0" * 32
    assert await conn._handle(json.dumps(frame)) is True
    errors = [f for f in socket.sent if f["type"] == "error"]
    return not errors, socket.sent


def schema_accepts(frame: Any) -> bool:
    kind = frame.get("type") if isinstance(frame, dict) else None
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        return False
    return valid(f"client.{kind}.json", frame)


ACCEPTED = [
    {"type": "message", "client_id": "c-1", "text": "Hello"},
    {"type": "message", "client_id": "x" * 128, "text": "é" * MAX_TEXT_CHARS},
    {"type": "message", "client_id": "c-2", "text": "hi", "sent_at": "later"},  # unknown fields ignored
    {"type": "resume", "after": 0},
    {"type": "resume", "after": 41},
    {"type": "typing"},
    {"type": "request_human"},
    {"type": "rating", "score": 1},
    {"type": "rating", "score": 5, "comment": "c" * 2000},
    {"type": "rating", "score": 3, "comment": None},
    {"type": "close"},
    {"type": "contact", "email": "ana.lopez+chat@mail.example.com"},
    {"type": "contact", "email": "Ana@Example.org", "conversation_id": "someone-else"},  # ignored field
]
REJECTED = [
    {"type": "message", "client_id": "c-1", "text": "x" * (MAX_TEXT_CHARS + 1)},  # text too long
    {"type": "message", "text": "Hello"},  # missing client_id
    {"type": "message", "client_id": "", "text": "Hello"},
    {"type": "message", "client_id": "x" * 129, "text": "Hello"},
    {"type": "message", "client_id": 7, "text": "Hello"},
    {"type": "message", "client_id": "c-1", "text": ""},
    {"type": "message", "client_id": "c-1", "text": " \n\t "},
    {"type": "message", "client_id": "c-1"},
    {"type": "resume"},
    {"type": "resume", "after": -1},
    {"type": "resume", "after": "3"},
    {"type": "resume", "after": True},
    {"type": "rating", "score": 9},
    {"type": "rating", "score": 0},
    {"type": "rating", "score": True},
    {"type": "rating", "score": "5"},
    {"type": "rating"},
    {"type": "rating", "score": 4, "comment": "c" * 2001},
    {"type": "rating", "score": 4, "comment": 12},
    {"type": "contact"},
    {"type": "contact", "email": "not an address"},
    {"type": "contact", "email": "ana@example.com\r\nBcc: all@example.net"},  # header injection
    {"type": "contact", "email": "ana@example.com,eve@example.net"},  # a second recipient
    {"type": "contact", "email": '"ana"@example.com'},
    {"type": "contact", "email": "a" * 250 + "@example.com"},  # longer than 254
    {"type": "contact", "email": "ana@localhost"},  # no top-level domain
    {"type": "contact", "email": 7},
    {"type": "hello"},
    {"kind": "message"},
    ["message"],
]


@pytest.mark.parametrize("frame", ACCEPTED, ids=lambda f: re.sub(r"(.)\1{8,}", r"\1…", json.dumps(f))[:60])
async def test_frames_the_handler_accepts_validate(frame: dict[str, Any]) -> None:
    accepted, sent = await handler_accepts(frame)
    assert accepted, sent
    assert schema_accepts(frame)
    for out in sent:  # whatever the handler answered is a valid server frame too
        validator(f"server.{out['type']}.json").validate(out)


@pytest.mark.parametrize("frame", REJECTED, ids=lambda f: re.sub(r"(.)\1{8,}", r"\1…", json.dumps(f))[:60])
async def test_frames_the_handler_rejects_fail_the_schema(frame: Any) -> None:
    accepted, sent = await handler_accepts(frame)
    assert not accepted
    assert [f["code"] for f in sent] == ["bad_frame"]
    for out in sent:
        validator("server.error.json").validate(out)
    assert not schema_accepts(frame)


async def test_rate_limited_frames_are_valid_error_frames() -> None:
    socket = _Socket()
    runtime = SimpleNamespace(
        store=_Store(), turns=_Turns(), ratings=_Ratings(), limits=_Limits(), tickets=_Tickets()
    )
    conn = WidgetConnection(socket, runtime)  # type: ignore[arg-type]
    conn.conversation_id = "0" * 32
    for i in range(12):  # burst of 10, then refused
        await conn._handle(json.dumps({"type": "message", "client_id": f"c-{i}", "text": "hi"}))
    errors = [f for f in socket.sent if f["type"] == "error"]
    assert [e["code"] for e in errors] == ["rate_limited", "rate_limited"]
    assert [e["client_id"] for e in errors] == ["c-10", "c-11"]
    for out in socket.sent:
        validator(f"server.{out['type']}.json").validate(out)
