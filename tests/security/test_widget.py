"""Attacks on the widget's HTTP and WebSocket surface, sent the way an attacker sends them: real HTTP
requests and a real WebSocket to a real ``switchboard serve`` (offline mode, real Redis).

- Hostile frames (deep nesting, lone surrogates, huge integers, oversize, wrong types, unknown types) get a
  ``bad_frame`` error frame and the same socket then acknowledges a valid message.
- Forged, missing or changed identities are refused with 403 ``identity_invalid`` and change nothing.
- Visitor fields are bounded (400), and CORS answers only the widget keys' origins on the widget routes.
- Property tests: every generated frame, valid or mutated, gets exactly its typed outcome from the frame
  parser (oracle: the published JSON Schemas) and, for a bounded number, from a live socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, validators
from websockets.sync.client import connect as connect_sync

from support import keys
from support.channels.widget_frames import (
    MAX_FRAME_BYTES,
    MAX_FRAME_DEPTH,
    FrameError,
    encode_frame,
    parse_frame,
)
from tests import servers
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess

SHOP = "http://shop.test"
OTHER_SHOP = "http://other-shop.test"
STRANGER = "http://evil.test"
SECRET = "s3cret-identity-key-for-tests"
WIDGET_KEYS = {"pk_shop": [SHOP], "pk_verified": [SHOP], "pk_other": [OTHER_SHOP]}
RECV_TIMEOUT_S = 10.0
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("widget-security")
    env = {
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{data / 'db.sqlite3'}",
        "SWITCHBOARD_WIDGET_KEYS": json.dumps(WIDGET_KEYS),
        "SWITCHBOARD_WIDGET_IDENTITY_SECRETS": json.dumps({"pk_verified": SECRET}),
    }
    proc = ServerProcess(data, env=env).start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def redis_sync(redis_url: str) -> Iterator[redis.Redis]:
    client = sync_redis_client_for(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def post_session(server: ServerProcess, body: dict[str, Any], origin: str = SHOP) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/widget/sessions", json=body, headers={"Origin": origin})


def session(server: ServerProcess, key: str = "pk_shop", **body: Any) -> dict[str, Any]:
    resp = post_session(server, {"widget_key": key, **body})
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def stored_visitor(redis_sync: redis.Redis, conversation_id: str) -> dict[str, Any]:
    raw = redis_sync.hget(keys.conv_state(conversation_id), "visitor")
    assert isinstance(raw, str)
    visitor: dict[str, Any] = json.loads(raw)
    return visitor


def ws_url(server: ServerProcess, token: str) -> str:
    return f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={token}"


# --- hostile frames on a real socket --------------------------------------------------------------

DEEP = "[" * 1000 + "]" * 1000
HOSTILE_FRAMES = {
    "1000-deep array": DEEP,
    "1000-deep inside a message": '{"type":"message","client_id":"c-deep","text":"hi","x":' + DEEP + "}",
    "lone surrogate in the text": '{"type":"message","client_id":"c-sur","text":"\\ud800"}',
    "lone low surrogate": '{"type":"message","client_id":"c-low","text":"a\\udc00b"}',
    "NUL in the text": '{"type":"message","client_id":"c-nul","text":"a\\u0000b"}',
    "NUL in a comment": '{"type":"rating","score":4,"comment":"ok\\u0000"}',
    "resume after 2^64": '{"type":"resume","after":18446744073709551616}',
    "resume after 2^53": '{"type":"resume","after":9007199254740992}',
    "resume after 1e400": '{"type":"resume","after":1e400}',
    "oversize frame": json.dumps({"type": "message", "client_id": "c-big", "text": "x" * 60_000}),
    "score as a string": '{"type":"rating","score":"5"}',
    "after as true": '{"type":"resume","after":true}',
    "text as a number": '{"type":"message","client_id":"c-num","text":42}',
    "client_id as an object": '{"type":"message","client_id":{"a":1},"text":"hi"}',
    "unknown type": '{"type":"hello","client_id":"c-hello"}',
    "type missing": '{"client_id":"c-none","text":"hi"}',
    "not JSON": "{'type': 'message'",
    "a JSON string": '"message"',
}
# What the error frame must echo: the client_id whenever the frame is JSON carrying a string one.
ECHOED = {
    "1000-deep inside a message": None,  # refused before anything is parsed, so nothing is read from it
    "lone surrogate in the text": "c-sur",
    "lone low surrogate": "c-low",
    "NUL in the text": "c-nul",
    "oversize frame": None,
    "text as a number": "c-num",
    "unknown type": "c-hello",
    "type missing": "c-none",
}


@pytest.mark.parametrize("name", list(HOSTILE_FRAMES))
async def test_a_hostile_frame_gets_bad_frame_and_the_socket_then_acks_a_message(
    server: ServerProcess, name: str
) -> None:
    token = session(server)["token"]
    async with websockets.connect(ws_url(server, token), max_size=None) as ws:
        await ws.send(HOSTILE_FRAMES[name])
        error = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
        got = (error["type"], error["code"], error.get("client_id"))
        assert got == ("error", "bad_frame", ECHOED.get(name))
        await ws.send(json.dumps({"type": "message", "client_id": "after", "text": "Still there?"}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
            if frame["type"] in ("ack", "error"):
                break
        assert frame == {"type": "ack", "client_id": "after", "seq": 1}


# --- identity verification --------------------------------------------------------------------------


def identity_hash(secret: str, visitor_id: str) -> str:
    """What the company's backend computes (written out here, not taken from the code under test)."""
    return hmac.new(secret.encode(), visitor_id.encode(), hashlib.sha256).hexdigest()


def verified_visitor(visitor_id: str, **extra: str) -> dict[str, str]:
    return {"id": visitor_id, "identity_hash": identity_hash(SECRET, visitor_id), **extra}


def error_code(resp: httpx.Response) -> tuple[int, str]:
    return resp.status_code, resp.json()["error"]["code"]


@pytest.mark.parametrize(
    "visitor",
    [
        {"id": "alice", "identity_hash": "0" * 64},  # a bogus hash
        {"id": "alice", "identity_hash": identity_hash("guessed-secret-123", "alice")},  # wrong secret
        {"id": "alice", "identity_hash": identity_hash(SECRET, "alice").upper()},  # not lowercase hex
        {"id": "mallory", "identity_hash": identity_hash(SECRET, "alice")},  # another visitor's hash
        {"id": "alice"},  # no hash
        {"identity_hash": identity_hash(SECRET, "alice")},  # no id
        {},  # anonymous
    ],
    ids=["bogus", "wrong-secret", "uppercase", "someone-elses-hash", "no-hash", "no-id", "anonymous"],
)
def test_a_session_for_a_verified_key_without_a_valid_identity_hash_is_refused(
    server: ServerProcess, redis_sync: redis.Redis, visitor: dict[str, str]
) -> None:
    before = len(list(redis_sync.scan_iter(match="*conv:*}:state", count=1000)))
    resp = post_session(server, {"widget_key": "pk_verified", "visitor": visitor})
    assert error_code(resp) == (403, "identity_invalid")
    assert len(list(redis_sync.scan_iter(match="*conv:*}:state", count=1000))) == before


def test_a_verified_visitor_is_marked_verified_and_the_hash_is_not_stored(
    server: ServerProcess, redis_sync: redis.Redis
) -> None:
    created = session(server, "pk_verified", visitor=verified_visitor("alice", name="Alice"))
    assert stored_visitor(redis_sync, created["conversation_id"]) == {
        "id": "alice", "name": "Alice", "verified": True,
    }  # fmt: skip


def test_agents_see_a_verified_visitor_as_verified_in_the_handoff_packet(
    server: ServerProcess,
) -> None:
    created = session(server, "pk_verified", visitor=verified_visitor("alice", name="Alice"))
    servers.create_agent(server.env, server.data_dir, "dana@shop.test", "correct horse battery", "Dana")
    login = httpx.post(
        f"{server.url}/api/v1/agent/login",
        json={"email": "dana@shop.test", "password": "correct horse battery"},
    )
    auth = {"Authorization": f"Bearer {login.json()['token']}"}
    packet = httpx.get(f"{server.url}/api/v1/agent/conversations/{created['conversation_id']}", headers=auth)
    assert packet.status_code == 200, packet.text
    assert packet.json()["customer"] == {"id": "alice", "name": "Alice", "verified": True}


async def renew_all_at_once(server: ServerProcess, token: str, ids: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient() as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(
                        f"{server.url}/api/v1/widget/sessions",
                        json={"widget_key": "pk_shop", "visitor": {"id": vid}, "token": token},
                        headers={"Origin": SHOP},
                    )
                    for vid in ids
                )
            )
        )


def test_two_concurrent_renewals_naming_different_ids_cannot_both_claim_the_conversation(
    server: ServerProcess, redis_sync: redis.Redis
) -> None:
    """An anonymous conversation, then renewals racing to set its visitor id: exactly one wins."""
    for attempt in range(5):
        created = session(server)
        ids = [f"claimant-{attempt}-{i}" for i in range(4)]
        answers = asyncio.run(renew_all_at_once(server, created["token"], ids))
        assert sorted(r.status_code for r in answers) == [201, 403, 403, 403]
        refused = [error_code(r) for r in answers if r.status_code == 403]
        assert refused == [(403, "identity_invalid")] * 3
        winner = ids[[r.status_code for r in answers].index(201)]
        assert stored_visitor(redis_sync, created["conversation_id"]) == {"id": winner}


def test_a_renewal_cannot_change_a_verified_visitors_id(
    server: ServerProcess, redis_sync: redis.Redis
) -> None:
    created = session(server, "pk_verified", visitor=verified_visitor("alice"))
    renewal = post_session(
        server,
        {"widget_key": "pk_verified", "visitor": verified_visitor("mallory"), "token": created["token"]},
    )
    assert error_code(renewal) == (403, "identity_invalid")
    assert stored_visitor(redis_sync, created["conversation_id"]) == {"id": "alice", "verified": True}


def test_a_renewal_cannot_overwrite_an_unverified_visitors_id(
    server: ServerProcess, redis_sync: redis.Redis
) -> None:
    created = session(server, visitor={"id": "customer-1", "name": "Ada"})
    renewal = post_session(
        server, {"widget_key": "pk_shop", "visitor": {"id": "customer-2"}, "token": created["token"]}
    )
    assert error_code(renewal) == (403, "identity_invalid")
    assert stored_visitor(redis_sync, created["conversation_id"]) == {"id": "customer-1", "name": "Ada"}


def test_a_bogus_identity_hash_on_a_key_without_a_secret_marks_nothing_verified(
    server: ServerProcess, redis_sync: redis.Redis
) -> None:
    created = session(server, visitor={"id": "v-7", "identity_hash": "f" * 64})
    assert stored_visitor(redis_sync, created["conversation_id"]) == {"id": "v-7"}


# --- visitor fields ---------------------------------------------------------------------------------

HUGE = "x" * 200_000


@pytest.mark.parametrize(
    "visitor",
    [
        {"id": HUGE},
        {"name": HUGE},
        {"email": HUGE + "@example.com"},
        {"identity_hash": HUGE},
        {"email": "not-an-address"},
        {"email": "two@@example.com"},
        {"email": "spaces in@example.com"},
        {"id": ""},
        {"id": 12345},
    ],
    ids=["id", "name", "email", "identity_hash", "no-at", "double-at", "space", "empty-id", "int-id"],
)
def test_oversized_or_malformed_visitor_fields_are_refused_with_400(
    server: ServerProcess, visitor: dict[str, Any]
) -> None:
    resp = post_session(server, {"widget_key": "pk_shop", "visitor": visitor})
    assert error_code(resp) == (400, "invalid_request")


# --- CORS ---------------------------------------------------------------------------------------------


def preflight(server: ServerProcess, path: str, origin: str) -> httpx.Response:
    return httpx.options(
        f"{server.url}{path}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )


def cors_headers(resp: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.startswith("access-control-")}


def test_cors_answers_an_allowed_origin_and_nobody_else(server: ServerProcess) -> None:
    allowed = preflight(server, "/api/v1/widget/sessions", SHOP)
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == SHOP
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert allowed.headers["access-control-allow-headers"].lower() == "content-type"
    assert allowed.headers["vary"] == "Origin"
    created = post_session(server, {"widget_key": "pk_shop"}, origin=SHOP)
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == SHOP
    assert created.headers["vary"] == "Origin"

    refused = preflight(server, "/api/v1/widget/sessions", STRANGER)
    assert refused.status_code == 403
    assert cors_headers(refused) == {}
    forbidden = post_session(server, {"widget_key": "pk_shop"}, origin=STRANGER)
    assert error_code(forbidden) == (403, "forbidden")
    assert cors_headers(forbidden) == {}


def test_an_origin_of_another_key_may_read_the_refusal_but_gets_no_session(server: ServerProcess) -> None:
    resp = post_session(server, {"widget_key": "pk_shop"}, origin=OTHER_SHOP)
    assert error_code(resp) == (403, "forbidden")
    assert resp.headers["access-control-allow-origin"] == OTHER_SHOP


def test_agent_and_admin_routes_carry_no_cors_headers_for_a_widget_origin(server: ServerProcess) -> None:
    widget = preflight(server, "/api/v1/widget/sessions", SHOP)
    assert widget.headers["access-control-allow-origin"] == SHOP
    login = preflight(server, "/api/v1/agent/login", SHOP)
    assert cors_headers(login) == {}
    login_body = {"email": "a@b.test", "password": "x"}
    posted = httpx.post(f"{server.url}/api/v1/agent/login", json=login_body, headers={"Origin": SHOP})
    assert posted.status_code == 401
    assert cors_headers(posted) == {}
    admin = httpx.get(f"{server.url}/api/v1/admin/agents", headers={"Origin": SHOP})
    assert cors_headers(admin) == {}


# --- property tests: the frame parser against the published schemas ------------------------------------

CLIENT_TYPES = ["message", "resume", "typing", "request_human", "rating", "close"]
# The schemas' descriptions say `3.0` and `true` are not integers (JSON Schema alone would accept 3.0).
StrictIntegers = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, v: isinstance(v, int) and not isinstance(v, bool)
    ),
)
VALIDATORS = {
    t: StrictIntegers(json.loads((SCHEMAS / f"client.{t}.json").read_text(encoding="utf-8")))
    for t in CLIENT_TYPES
}

# Strings with everything hostile in reach: whitespace only, astral characters, lone surrogates, NUL.
hostile_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=" \t\n", max_size=5),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=3990, max_size=4010),
    st.just("\x00"),
)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), hostile_text
)
any_value = st.one_of(
    json_scalar,
    st.lists(json_scalar, max_size=3),
    st.dictionaries(st.text(string.ascii_lowercase, max_size=5), json_scalar, max_size=3),
)
seq = st.one_of(
    st.integers(min_value=0, max_value=2**53 - 1), st.integers(min_value=-(2**70), max_value=2**70)
)
VALID_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "message": {
        "client_id": st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=130),
        "text": hostile_text,
    },
    "resume": {"after": seq},
    "typing": {},
    "request_human": {},
    "rating": {
        "score": st.integers(min_value=-1, max_value=7),
        "comment": st.one_of(st.none(), st.text(max_size=20), st.text(min_size=1995, max_size=2005)),
    },
    "close": {},
}


@st.composite
def frames(draw: st.DrawFn, kind: str) -> Any:
    """A frame of ``kind``: its fields (some out of range), then maybe a mutation."""
    frame: dict[str, Any] = {"type": kind}
    for name, strategy in VALID_FIELDS[kind].items():
        if draw(st.booleans()) or name in ("client_id", "text", "after", "score"):
            frame[name] = draw(strategy)
    mutation = draw(st.sampled_from(["none", "none", "drop", "retype", "extra", "deep", "tag", "array"]))
    if mutation == "drop" and len(frame) > 1:
        frame.pop(draw(st.sampled_from(sorted(k for k in frame if k != "type"))))
    elif mutation == "retype":
        frame[draw(st.sampled_from(sorted(frame)))] = draw(any_value)
    elif mutation == "extra":
        frame[draw(st.text(string.ascii_lowercase, min_size=1, max_size=8))] = draw(any_value)
    elif mutation == "deep":
        depth = draw(st.integers(min_value=MAX_FRAME_DEPTH - 2, max_value=MAX_FRAME_DEPTH + 50))
        nested: Any = []
        for _ in range(depth):
            nested = [nested]
        frame["nested"] = nested
    elif mutation == "tag":
        frame["type"] = draw(st.sampled_from([*CLIENT_TYPES, "hello", "MESSAGE", ""]))
    elif mutation == "array":
        return [frame]
    return frame


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    return False


def is_json(raw: str) -> bool:
    """Python writes NaN and Infinity, which are not JSON."""
    try:
        json.loads(raw, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    except ValueError:
        return False
    return True


def schema_accepts(raw: str) -> bool:
    """The oracle: the published schema, plus what a schema cannot state (JSON, size, depth, UTF-16)."""
    if not is_json(raw):
        return False
    frame = json.loads(raw)  # what was sent: "\ud800\udc00" is one character, a pair, not two lone ones
    if (
        not isinstance(frame, dict)
        or not isinstance(frame.get("type"), str)
        or frame["type"] not in VALIDATORS
    ):
        return False
    if len(raw.encode()) > MAX_FRAME_BYTES or depth_of(frame) > MAX_FRAME_DEPTH or has_lone_surrogate(frame):
        return False
    return VALIDATORS[frame["type"]].is_valid(frame)


def parser_accepts(raw: str) -> bool:
    try:
        parsed = parse_frame(raw)
    except FrameError:
        return False
    assert type(parsed).__struct_config__.tag == json.loads(raw)["type"]
    return True


def _property(kind: str) -> Any:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(frame=frames(kind))
    def check(frame: Any) -> None:
        raw = json.dumps(frame)  # ASCII escapes: lone surrogates travel as "\ud800", as a browser sends them
        assert parser_accepts(raw) == schema_accepts(raw)

    return check


test_message_frames_are_parsed_exactly_as_the_schema_says = _property("message")
test_resume_frames_are_parsed_exactly_as_the_schema_says = _property("resume")
test_typing_frames_are_parsed_exactly_as_the_schema_says = _property("typing")
test_request_human_frames_are_parsed_exactly_as_the_schema_says = _property("request_human")
test_rating_frames_are_parsed_exactly_as_the_schema_says = _property("rating")
test_close_frames_are_parsed_exactly_as_the_schema_says = _property("close")


@settings(max_examples=100, deadline=None)
@given(frame=st.dictionaries(st.text(max_size=5), any_value, max_size=4) | any_value)
def test_server_frames_always_encode(frame: Any) -> None:
    """Whatever a frame holds (lone surrogates, NaN, huge integers), it encodes to JSON text."""
    encoded = encode_frame({"type": "error", "detail": frame})
    assert json.loads(encoded)["type"] == "error"


# --- property test on a live socket ---------------------------------------------------------------------

PROBE = "probe"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(CLIENT_TYPES), data=st.data())
def test_every_frame_on_a_live_socket_gets_its_typed_outcome_and_the_socket_stays_open(
    server: ServerProcess, kind: str, data: st.DataObject
) -> None:
    """A frame, then a probe (an unknown frame type that always gets bad_frame with its client_id): what
    arrives before the probe's error is the frame's outcome. Valid: an ack for a message, no bad_frame
    otherwise; invalid: exactly one bad_frame. Never a close."""
    frame = data.draw(frames(kind))
    raw = json.dumps(frame)
    valid = schema_accepts(raw)
    # A mutated frame of one kind can be a valid frame of another ({"type": "typing", ...} drawn as a
    # mutated message): the outcome follows the type actually sent.
    sent = frame["type"] if valid else kind
    if valid and sent in ("close", "request_human"):
        return  # they change the conversation's state for the examples after them (tested elsewhere)
    token = _shared_token(server)
    with connect_sync(ws_url(server, token), max_size=None, open_timeout=RECV_TIMEOUT_S) as ws:
        ws.send(raw)
        ws.send(json.dumps({"type": "probe", "client_id": PROBE}))
        outcome = []
        while True:
            got = json.loads(ws.recv(timeout=RECV_TIMEOUT_S))
            if got.get("client_id") == PROBE:
                assert (got["type"], got.get("code")) == ("error", "bad_frame"), got
                break
            if got["type"] in ("ack", "error"):
                outcome.append(got)
    if not valid:
        assert [e["code"] for e in outcome] == ["bad_frame"]
    elif sent == "message":
        assert [(f["type"], f["client_id"]) for f in outcome] == [("ack", frame["client_id"])]
    else:
        assert [f for f in outcome if f.get("code") == "bad_frame"] == []


_tokens: dict[str, str] = {}


def _shared_token(server: ServerProcess) -> str:
    """One session for every example (each opens its own socket, so its own message-rate budget)."""
    if server.url not in _tokens:
        _tokens[server.url] = session(server)["token"]
    return _tokens[server.url]
