"""Bad HTTP input never gets a 500: attacks sent over real HTTP to a real ``switchboard serve``.

One server for the module (the fake model API behind it, an admin created with the real CLI):
- the measured attacks (1,000-deep JSON, a 10 MB body, NUL bytes and dot segments in static paths,
  invalid UTF-8), each answered with its typed error and changing nothing;
- hypothesis property tests: any JSON value as the body of login or session creation gets a 4xx in the
  error envelope.

(schemathesis over the served OpenAPI document, no 5xx and every answer as documented, is in
tests/integration/test_api_documents.py.)
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.testing.fake_anthropic import FakeAnthropic
from tests import servers
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess

ORIGIN = "http://shop.test"
WIDGET_KEY = "pk_test"
ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "s3cret-admin-pass"
LOGIN = "/api/v1/agent/login"
SESSIONS = "/api/v1/widget/sessions"
ATTACK_DEPTH = 1000  # what the issue measured: deep enough to exhaust a recursive decoder
TEN_MB = 10 * 1024 * 1024
TWO_MB = 2 * 1024 * 1024  # over the 1 MiB default of SWITCHBOARD_HTTP_MAX_BODY_BYTES
# Property runs are bounded so the whole module stays well under a minute on two busy cores.
PROPERTY_EXAMPLES = 40


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as api:
        yield api


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic, redis_url: str
) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("httpfuzz")
    db = f"sqlite+aiosqlite:///{data / 'db.sqlite3'}"
    cli_env = {"SWITCHBOARD_DATABASE_URL": db, "SWITCHBOARD_DATA_DIR": str(data), "PATH": ""}
    servers.create_agent(cli_env, data, ADMIN_EMAIL, ADMIN_PASSWORD, "Root", role="admin")
    env = {
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": fake.url,
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATABASE_URL": db,
        "SWITCHBOARD_WIDGET_KEYS": json.dumps({WIDGET_KEY: [ORIGIN]}),
    }
    proc = ServerProcess(data / "server", env=env).start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def admin_token(server: ServerProcess) -> str:
    resp = httpx.post(f"{server.url}{LOGIN}", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["token"]
    return token


@pytest.fixture(scope="module")
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = sync_redis_client_for(redis_url)
    try:
        yield client
    finally:
        client.close()


def conversation_keys(store: redis.Redis) -> set[bytes]:
    """Every Redis key of every conversation (all of them carry the ``{conv:<id>}`` hash tag)."""
    return set(store.scan_iter(match="*{conv:*", count=1000))


def post_raw(server: ServerProcess, path: str, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Origin": ORIGIN}
    return httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=30)


def error_of(resp: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of a typed error answer (asserting that is what the body is)."""
    assert resp.headers["content-type"].startswith("application/json"), resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str), body
    assert isinstance(error["message"], str), body
    return error


def deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# --- the measured attacks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [deep_array(ATTACK_DEPTH), deep_object(ATTACK_DEPTH)], ids=["array", "object"]
)
def test_thousand_deep_json_on_login_is_a_typed_400(server: ServerProcess, body: bytes) -> None:
    resp = post_raw(server, LOGIN, body)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "too_deep"


@pytest.mark.parametrize(
    "body", [deep_array(ATTACK_DEPTH), deep_object(ATTACK_DEPTH)], ids=["array", "object"]
)
def test_thousand_deep_json_on_session_creation_is_a_typed_400_and_opens_nothing(
    server: ServerProcess, store: redis.Redis, body: bytes
) -> None:
    before = conversation_keys(store)
    resp = post_raw(server, SESSIONS, body)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "too_deep"
    assert conversation_keys(store) == before


def test_deep_json_inside_a_valid_session_body_is_a_typed_400_and_opens_nothing(
    server: ServerProcess, store: redis.Redis
) -> None:
    before = conversation_keys(store)
    body = b'{"widget_key": "pk_test", "visitor": {"name": ' + deep_array(ATTACK_DEPTH) + b"}}"
    resp = post_raw(server, SESSIONS, body)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "too_deep"
    assert conversation_keys(store) == before


def test_brackets_inside_strings_do_not_count_as_nesting(server: ServerProcess) -> None:
    """A visitor may well be called ``[[[…``: only structure counts towards the depth limit."""
    # 150 brackets: far past the depth limit (32), within the visitor name's own bound (200 characters).
    body = {"widget_key": WIDGET_KEY, "visitor": {"name": "[" * 150}}
    resp = post_raw(server, SESSIONS, json.dumps(body).encode())
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("path", [LOGIN, SESSIONS])
def test_ten_megabyte_body_is_a_typed_413_and_opens_nothing(
    server: ServerProcess, store: redis.Redis, path: str
) -> None:
    before = conversation_keys(store)
    padding = "x" * TEN_MB
    body = json.dumps({"widget_key": WIDGET_KEY, "email": padding, "password": "p", "token": padding})
    resp = post_raw(server, path, body.encode())
    assert resp.status_code == 413
    assert error_of(resp)["code"] == "too_large"
    assert conversation_keys(store) == before


@pytest.mark.parametrize("path", [LOGIN, SESSIONS])
def test_body_over_the_one_mebibyte_limit_is_a_typed_413_unread(server: ServerProcess, path: str) -> None:
    """No endpoint takes a body near 1 MiB; a 2 MB one is refused before it is read or decoded."""
    body = json.dumps({"widget_key": WIDGET_KEY, "email": "a@x.test", "password": "x" * TWO_MB})
    resp = post_raw(server, path, body.encode())
    assert resp.status_code == 413
    assert error_of(resp)["code"] == "too_large"


@pytest.mark.parametrize("path", [LOGIN, SESSIONS])
def test_invalid_utf8_in_a_json_body_is_a_typed_400(server: ServerProcess, path: str) -> None:
    resp = post_raw(
        server, path, b'{"widget_key": "pk_\xff\xfe", "email": "a\xc3@x.test", "password": "\xed\xa0\x80"}'
    )
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"


@pytest.mark.parametrize("path", [LOGIN, SESSIONS])
def test_lone_surrogate_escape_in_a_json_body_is_a_typed_400(server: ServerProcess, path: str) -> None:
    """``"\\ud800"`` is valid JSON syntax but no Unicode text: nothing downstream can store or encode it."""
    body = (
        b'{"widget_key": "pk_test", "visitor": {"name": "\\ud800"}, '
        b'"email": "\\ud800@x.test", "password": "p"}'
    )
    resp = post_raw(server, path, body)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"


@pytest.mark.parametrize("path", [LOGIN, SESSIONS])
def test_nul_character_in_a_json_body_is_a_typed_400_and_opens_nothing(
    server: ServerProcess, store: redis.Redis, path: str
) -> None:
    """PostgreSQL cannot store U+0000 in text (a 500 there); it is refused for every database."""
    before = conversation_keys(store)
    body = {
        "widget_key": WIDGET_KEY,
        "visitor": {"name": "Ada\u0000"},
        "email": ADMIN_EMAIL + "\u0000",
        "password": "p",
    }
    resp = post_raw(server, path, json.dumps(body).encode())
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"
    assert conversation_keys(store) == before


def test_integer_beyond_64_bits_is_a_typed_400_and_creates_no_agent(
    server: ServerProcess, admin_token: str
) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    email = "overflow@example.com"
    body = b'{"email": "%s", "password": "long-enough-pass", "name": "O", "capacity": %d}' % (
        email.encode(),
        2**64,
    )
    resp = httpx.post(
        f"{server.url}/api/v1/admin/agents",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"
    agents = httpx.get(f"{server.url}/api/v1/agent/agents", headers=headers).json()
    assert email not in json.dumps(agents)


def test_report_range_past_the_last_representable_day_is_a_typed_400(
    server: ServerProcess, admin_token: str
) -> None:
    """A date-only ``to`` includes that day, so 9999-12-31 ends on a day no datetime can hold."""
    resp = httpx.get(
        f"{server.url}/api/v1/reports/operations",
        params={"from": "2026-01-01", "to": "9999-12-31"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"


STATIC_ATTACKS = {
    "nul-console": "/console/%00",
    "nul-reports": "/reports/index.html%00.js",
    "nul-in-dir": "/console/%00/index.html",
    "encoded-slash-dotdot": "/console/..%2f..%2f..%2fpyproject.toml",
    "encoded-dots": "/console/%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
    "double-encoded": "/reports/%252e%252e/%252e%252e/pyproject.toml",
    "overlong-name": "/console/" + "a" * 4096,
    "file-as-directory": "/console/index.html/x",
}


def get_raw(server: ServerProcess, path: str) -> tuple[int, bytes, str]:
    """GET ``path`` byte for byte as written (an HTTP client library would normalise dot segments)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("content-type") or ""
    finally:
        conn.close()


@pytest.mark.parametrize("path", list(STATIC_ATTACKS.values()), ids=list(STATIC_ATTACKS))
def test_hostile_static_paths_are_a_typed_404(server: ServerProcess, path: str) -> None:
    status, body, content_type = get_raw(server, path)
    assert status == 404
    assert content_type.startswith("application/json")
    assert json.loads(body)["error"]["code"] == "not_found"


# --- property tests: any JSON value as a body ---------------------------------------------------

# Text with every code point, lone surrogates included (json.dumps writes them as \\udXXX escapes).
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
# Objects with the endpoint's own field names are the ones that get past decoding into the handler.
session_objects = st.fixed_dictionaries(
    {"widget_key": json_values | any_text},
    optional={
        "visitor": json_values
        | st.dictionaries(st.sampled_from(["id", "name", "email", "identity_hash"]), json_values | any_text),
        "token": json_values | any_text,
    },
)
login_objects = st.fixed_dictionaries({"email": json_values | any_text, "password": json_values | any_text})


def as_bodies(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """The values as JSON bodies, some of them buried in up to 1,200 levels of arrays."""
    plain = values.map(lambda value: json.dumps(value).encode())
    buried = st.builds(lambda body, depth: b"[" * depth + body + b"]" * depth, plain, st.integers(1, 1200))
    return plain | buried


PROPERTY_SETTINGS = settings(
    max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY_SETTINGS
@given(body=as_bodies(json_values | session_objects))
def test_any_json_value_as_a_session_body_gets_a_typed_client_error_and_opens_nothing(
    server: ServerProcess, store: redis.Redis, body: bytes
) -> None:
    if b'"widget_key": "%s"' % WIDGET_KEY.encode() in body:  # a valid request: not this property
        body = body.replace(b'"widget_key": "', b'"widget_key": "unknown-')
    before = conversation_keys(store)
    resp = post_raw(server, SESSIONS, body)
    assert 400 <= resp.status_code < 500, resp.text
    error_of(resp)
    assert conversation_keys(store) == before


@PROPERTY_SETTINGS
@given(body=as_bodies(json_values | login_objects))
def test_any_json_value_as_a_login_body_gets_a_typed_client_error(server: ServerProcess, body: bytes) -> None:
    resp = post_raw(server, LOGIN, body)
    assert 400 <= resp.status_code < 500, resp.text
    error_of(resp)
