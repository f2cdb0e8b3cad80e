"""The served API documents are true: what a real ``switchboard serve`` answers is what they describe.

- OpenAPI (``/schema/openapi.json``): schemathesis generates valid and invalid requests for every
  operation, sends them with a real agent token (an admin's, which every route accepts) and runs its
  contract checks on each answer: a documented status, a documented content type, a body matching the
  documented schema (the ``{"error": {...}}`` envelope for every error), documented headers (``Retry-After``
  on a 429), and no 5xx.
- AsyncAPI (``/schema/asyncapi.json``): a valid AsyncAPI 3.0 document, linked from the OpenAPI one, whose
  message payloads are the JSON Schemas of the typed frames; every frame the server sent on real widget
  and agent sockets during a real conversation (streamed answer, handoff, claim, agent reply, rating)
  validates against the payload of its message.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, Draft202012Validator
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.faults.own_redis import OwnRedis
from tests.integration.test_widget_ws import is_answer, is_triage, triage_reply
from tests.servers import ServerProcess, agent_auth
from tests.unit.test_protocol_schemas import SERVER_TYPES as WIDGET_SERVER_TYPES

ROOT = Path(__file__).resolve().parents[2]

ORIGIN = "http://shop.test"
WIDGET_KEY = "pk_test"
ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "s3cret-admin-pass"
AGENT_EMAIL = "dana@example.com"
AGENT_PASSWORD = "s3cret-agent-pass"
RECV_TIMEOUT_S = 15.0
# Bounded so the whole module stays well under a minute of CI time on two busy cores.
EXAMPLES_PER_OPERATION = 8
CONTRACT_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,  # a route that declares the agent token must refuse a request without it, or a bad one
]
# For a 503 caused on purpose (Redis stopped): documented, but a server error by definition.
OUTAGE_CHECKS = [check for check in CONTRACT_CHECKS if check is not not_a_server_error]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic, redis_url: str
) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("apidocs")
    db = f"sqlite+aiosqlite:///{data / 'db.sqlite3'}"
    cli_env = {"SWITCHBOARD_DATABASE_URL": db, "SWITCHBOARD_DATA_DIR": str(data), "PATH": ""}
    servers.create_agent(cli_env, data, ADMIN_EMAIL, ADMIN_PASSWORD, "Root", role="admin")
    servers.create_agent(cli_env, data, AGENT_EMAIL, AGENT_PASSWORD, "Dana", role="agent")
    env = {
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": fake.url,
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATABASE_URL": db,
        "SWITCHBOARD_WIDGET_KEYS": json.dumps({WIDGET_KEY: [ORIGIN]}),
        "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000",
        **servers.ROOMY_ADDRESS_LIMITS,
    }
    proc = ServerProcess(data / "server", env=env).start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def admin_token(server: ServerProcess) -> str:
    resp = httpx.post(
        f"{server.url}/api/v1/agent/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["token"]
    return token


# --- OpenAPI: schemathesis's contract checks -------------------------------------------------------


def served_schema(server: ServerProcess, token: str) -> Any:
    """The served document, with ``token`` for its ``agentToken`` scheme (schemathesis sends it only where an
    operation declares it) and the widget's Origin on every request."""
    config = SchemathesisConfig.from_dict(
        {"headers": {"Origin": ORIGIN}, "auth": {"openapi": {"agentToken": {"bearer": token}}}}
    )
    return schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json", config=config)


def failures_of(case: schemathesis.Case, response: Any, checks: list[Any] = CONTRACT_CHECKS) -> set[str]:
    """Each contract check ``response`` fails, as one line."""
    try:
        case.validate_response(response, checks=checks)
    except FailureGroup as group:
        failures = [f for f in group.exceptions if isinstance(f, Failure)]
        return {f"{f.title} ({response.status_code})" for f in failures}
    except Failure as failure:
        return {f"{failure.title} ({response.status_code})"}
    return set()


def mismatches_of(operation: schemathesis.APIOperation, base_url: str) -> set[str]:
    """Fuzz one operation (valid and invalid data); each distinct contract failure as one line."""
    found: set[str] = set()
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=cases)
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, timeout=30)
        found.update(failures_of(case, response))

    fuzz()
    return found


@pytest.mark.timeout(180)  # about 20 s on an idle machine; room for two busy cores
def test_every_operation_answers_as_the_served_openapi_document_says(
    server: ServerProcess, admin_token: str
) -> None:
    schema = served_schema(server, admin_token)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # the whole HTTP API, not a stray part of it
    mismatches = {op.label: sorted(found) for op in operations if (found := mismatches_of(op, server.url))}
    count = sum(len(found) for found in mismatches.values())
    assert mismatches == {}, f"{count} contract mismatches:\n{json.dumps(mismatches, indent=1)}"


# Answers fuzzing does not reach (a rate limit, another role, a second media type), sent on purpose and held
# to the same checks. Each maps a label to (operation, how to call it, the status it must get).


def contract_failures(
    schema: Any,
    path: str,
    method: str,
    base_url: str,
    status: int,
    *,
    checks: list[Any] = CONTRACT_CHECKS,
    **case_args: Any,
) -> set[str]:
    case = schema[path][method].Case(**case_args)  # built by hand: no generated auth, so give the headers
    response = case.call(base_url=base_url, timeout=30)
    assert response.status_code == status, response.text
    return failures_of(case, response, checks)


def test_a_refused_login_after_too_many_attempts_is_a_documented_429_with_retry_after(
    server: ServerProcess, admin_token: str
) -> None:
    schema = served_schema(server, admin_token)
    # an address of its own: the per-account count lives in Redis for a minute, across test runs too
    body = {"email": f"nobody-{uuid.uuid4().hex[:12]}@example.com", "password": "wrong-password"}
    login = schema["/api/v1/agent/login"]["POST"]
    statuses = []
    for _ in range(10):  # SWITCHBOARD_LIMIT_LOGIN_ATTEMPTS_PER_ACCOUNT: 5/minute
        case = login.Case(body=body)
        response = case.call(base_url=server.url, timeout=30)
        statuses.append(response.status_code)
        assert failures_of(case, response) == set()
        if response.status_code == 429:
            assert int(response.headers["retry-after"][0]) >= 1
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {401}


def test_an_agent_on_admin_routes_is_a_documented_403(server: ServerProcess, admin_token: str) -> None:
    token = agent_auth(server, AGENT_EMAIL, AGENT_PASSWORD)["Authorization"].removeprefix("Bearer ")
    schema = served_schema(server, token)
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/admin/agents", "/api/v1/reports/operations", "/api/v1/admin/examples"):
        assert contract_failures(schema, path, "GET", server.url, 403, headers=headers) == set()


def test_the_satisfaction_report_as_csv_is_a_documented_media_type(
    server: ServerProcess, admin_token: str
) -> None:
    schema = served_schema(server, admin_token)
    auth = {"Authorization": f"Bearer {admin_token}"}
    args = {"query": {"format": "csv", "group_by": "day"}, "headers": auth}
    path = "/api/v1/reports/satisfaction"
    assert contract_failures(schema, path, "GET", server.url, 200, **args) == set()


def test_every_operation_lists_its_statuses_and_every_error_is_the_envelope(server: ServerProcess) -> None:
    doc = httpx.get(f"{server.url}/schema/openapi.json").json()
    envelope = doc["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"]
    assert envelope["properties"]["error"]["required"] == ["code", "message"]
    operations = {
        f"{method.upper()} {path}": operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
    }
    for label, operation in operations.items():
        statuses = set(operation["responses"])
        assert not {s for s in statuses if "X" in s}, f"{label}: a catch-all hides which statuses it answers"
        assert {"400", "500"} <= statuses, label
        if operation.get("security"):
            assert "401" in statuses, label
        if "requestBody" in operation:
            assert "413" in statuses, label
        for status, response in operation["responses"].items():
            if status[0] in "45" and label != "GET /readyz":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (label, status)
            if status == "429":
                assert response["headers"]["Retry-After"]["required"] is True, label
    assert doc["components"]["securitySchemes"]["agentToken"] == {
        **doc["components"]["securitySchemes"]["agentToken"], "type": "http", "scheme": "bearer",
    }  # fmt: skip
    assert operations["GET /api/v1/agent/queue"]["security"] == [{"agentToken": []}]
    assert operations["GET /api/v1/reports/operations"]["security"] == [{"agentToken": ["admin"]}]
    assert "security" not in operations["POST /api/v1/agent/login"]
    # the WebSockets are not HTTP operations: the document links their AsyncAPI description instead
    assert "/schema/asyncapi.json" in doc["info"]["description"]
    assert doc["externalDocs"]["url"] == "/schema/asyncapi.json"


# --- AsyncAPI: the sockets ------------------------------------------------------------------------

AGENT_PROTOCOL_ROW = re.compile(r'^\| `\{"type": "(\w+)"', re.MULTILINE)
COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")


@pytest.fixture(scope="module")
def asyncapi(server: ServerProcess) -> dict[str, Any]:
    resp = httpx.get(f"{server.url}/schema/asyncapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = resp.json()
    return document


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs_in(value)


def message_types(document: dict[str, Any], operation: str) -> set[str]:
    """The ``type`` of every message an operation lists."""
    types = set()
    for ref in document["operations"][operation]["messages"]:
        message = resolve(document, resolve(document, ref["$ref"])["$ref"])
        payload = resolve(document, message["payload"]["$ref"])
        (kind,) = payload["properties"]["type"]["enum"]
        types.add(kind)
    return types


def test_the_asyncapi_document_is_well_formed_asyncapi_3(asyncapi: dict[str, Any]) -> None:
    """No PyPI package ships the AsyncAPI 3.0 JSON Schema, so its rules that matter here are checked."""
    assert asyncapi["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= set(asyncapi["info"])
    for ref in refs_in(asyncapi):
        resolve(asyncapi, ref)  # every reference resolves
    for section in ("schemas", "messages", "securitySchemes"):
        assert all(COMPONENT_KEY.match(key) for key in asyncapi["components"][section])
    assert {c["address"] for c in asyncapi["channels"].values()} == {"/api/v1/widget/ws", "/api/v1/agent/ws"}
    for name, operation in asyncapi["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        # an operation's messages must be messages of its own channel (AsyncAPI 3.0)
        assert all(m["$ref"].startswith(f"{channel_ref}/messages/") for m in operation["messages"]), name
        for security in operation["security"]:
            scheme = resolve(asyncapi, security["$ref"])
            assert (scheme["type"], scheme["in"], scheme["name"]) == ("httpApiKey", "query", "token")
    for schema in asyncapi["components"]["schemas"].values():
        Draft7Validator.check_schema(schema)  # AsyncAPI Schema is a superset of JSON Schema draft 7
    for message in asyncapi["components"]["messages"].values():
        assert message["contentType"] == "application/json"
        assert resolve(asyncapi, message["payload"]["$ref"])["required"][0] == "type"


def test_every_frame_type_of_the_protocol_is_in_the_asyncapi_document(asyncapi: dict[str, Any]) -> None:
    """Both directions of both sockets, against the lists docs/protocol.md publishes."""
    protocol = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    agent_section = protocol.split("### Agent WebSocket", 1)[1].split("\n## ", 1)[0]
    agent_server_types = set(AGENT_PROTOCOL_ROW.findall(agent_section))
    assert len(agent_server_types) == 9
    assert message_types(asyncapi, "widgetReceive") == set(WIDGET_SERVER_TYPES)
    assert message_types(asyncapi, "widgetSend") == {
        "message", "resume", "typing", "request_human", "rating", "close", "contact",
    }  # fmt: skip
    assert message_types(asyncapi, "agentReceive") == agent_server_types
    assert message_types(asyncapi, "agentSend") == {"watch", "unwatch", "typing", "presence"}


def validate_frame(asyncapi: dict[str, Any], operation: str, frame: dict[str, Any]) -> None:
    """``frame`` is valid against the payload of the operation's message of its type."""
    for ref in asyncapi["operations"][operation]["messages"]:
        message = resolve(asyncapi, resolve(asyncapi, ref["$ref"])["$ref"])
        if message["name"] == frame["type"]:
            schema = {"$ref": message["payload"]["$ref"], "components": asyncapi["components"]}
            Draft202012Validator(schema).validate(frame)
            return
    raise AssertionError(f"{operation}: no message for a {frame['type']!r} frame: {frame}")


class Socket:
    """A real WebSocket client that keeps every frame it received."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def until(self, pred: Any) -> dict[str, Any]:
        while True:
            frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), RECV_TIMEOUT_S))
            self.received.append(frame)
            if pred(frame):
                return frame


@pytest.fixture
def scripted(fake: FakeAnthropic) -> Iterator[FakeAnthropic]:
    """Confident triage and a streamed answer; "a person" asks for one."""
    fake.reset()
    fake.add_rule(lambda body: triage_reply(confidence=0.95) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="Returns are free within 30 days.") if is_answer(body) else None)
    yield fake
    fake.reset()


async def test_every_frame_a_real_conversation_sends_is_described_by_the_asyncapi_document(
    server: ServerProcess, asyncapi: dict[str, Any], scripted: FakeAnthropic
) -> None:
    """A streamed answer, a handoff asked for, a watching and claiming agent, typing both ways, a note, an
    agent reply, resolution, a rating, and a bad frame on each socket: every frame both sockets received
    validates against its message in the document."""
    headers = agent_auth(server, AGENT_EMAIL, AGENT_PASSWORD)
    token = headers["Authorization"].removeprefix("Bearer ")
    session = httpx.post(
        f"{server.url}/api/v1/widget/sessions",
        json={"widget_key": WIDGET_KEY, "visitor": {"name": "Ada"}}, headers={"Origin": ORIGIN},
    ).json()  # fmt: skip
    cid = session["conversation_id"]
    base = f"ws://127.0.0.1:{server.port}"
    api = f"{server.url}/api/v1/agent/conversations/{cid}"
    async with (
        websockets.connect(f"{base}/api/v1/agent/ws?token={token}") as agent_ws,
        websockets.connect(f"{base}/api/v1/widget/ws?token={session['token']}") as customer_ws,
    ):
        agent, customer = Socket(agent_ws), Socket(customer_ws)
        await agent.until(lambda f: f["type"] == "queue")
        await agent.send({"type": "watch", "conversation_id": cid})
        await customer.send({"type": "message", "client_id": "m1", "text": "How do returns work?"})
        await customer.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
        await customer.send({"type": "request_human"})
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
        await agent.until(lambda f: f["type"] == "queue" and f["items"])
        assert httpx.post(f"{api}/claim", headers=headers).status_code == 200
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "agent")
        await agent.until(lambda f: f["type"] == "assigned")
        await customer.send({"type": "typing"})
        await agent.until(lambda f: f["type"] == "typing")
        await agent.send({"type": "typing", "conversation_id": cid})
        await customer.until(lambda f: f["type"] == "typing")
        assert httpx.post(f"{api}/notes", json={"text": "VIP"}, headers=headers).status_code == 201
        await agent.until(lambda f: f["type"] == "note")
        assert httpx.post(f"{api}/messages", json={"text": "Dana here."}, headers=headers).status_code == 201
        await customer.until(lambda f: f["type"] == "message" and f["role"] == "agent")
        await agent.until(lambda f: f["type"] == "event" and f["event"].get("role") == "agent")
        assert httpx.post(f"{api}/resolve", headers=headers).status_code == 200
        await customer.until(lambda f: f["type"] == "rating_request")
        await agent.until(lambda f: f["type"] == "unassigned")
        await customer.send({"type": "rating", "score": 5})
        await customer.send({"type": "message", "client_id": "m2", "text": ""})
        await customer.until(lambda f: f["type"] == "error")
        await agent.send({"type": "dance"})
        await agent.until(lambda f: f["type"] == "error")

    for frame in customer.received:
        validate_frame(asyncapi, "widgetReceive", frame)
    for frame in agent.received:
        validate_frame(asyncapi, "agentReceive", frame)
    seen = {f["type"] for f in customer.received}, {f["type"] for f in agent.received}
    assert seen[0] >= {"ack", "delta", "message", "status", "typing", "rating_request", "error"}
    assert seen[1] >= {"queue", "event", "assigned", "unassigned", "typing", "note", "error"}


def test_a_nul_in_any_query_string_is_a_documented_400(server: ServerProcess, admin_token: str) -> None:
    """Refused in front of every handler, so even ``/healthz`` documents a 400."""
    schema = served_schema(server, admin_token)
    for path in ("/healthz", "/readyz"):
        assert contract_failures(schema, path, "GET", server.url, 400, query={"x": "\x00"}) == set()


def test_with_redis_down_readyz_and_the_api_answer_documented_503s(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    """``/readyz`` says which check failed (its own body), every other operation the ``unavailable`` error."""
    own_redis = OwnRedis()  # a redis-server this test owns: the shared one is never stopped
    own_redis.start()
    try:
        db = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
        cli_env = {"SWITCHBOARD_DATABASE_URL": db, "SWITCHBOARD_DATA_DIR": str(tmp_path), "PATH": ""}
        servers.create_agent(cli_env, tmp_path, ADMIN_EMAIL, ADMIN_PASSWORD, "Root", role="admin")
        env = {
            "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url,
            "SWITCHBOARD_REDIS_URL": own_redis.url, "SWITCHBOARD_DATABASE_URL": db,
            "SWITCHBOARD_WIDGET_KEYS": json.dumps({WIDGET_KEY: [ORIGIN]}),
        }  # fmt: skip
        proc = ServerProcess(tmp_path / "server", env=env).start()
        try:
            headers = agent_auth(proc, ADMIN_EMAIL, ADMIN_PASSWORD)
            schema = served_schema(proc, headers["Authorization"].removeprefix("Bearer "))
            own_redis.kill()
            outage = {"checks": OUTAGE_CHECKS}
            assert contract_failures(schema, "/readyz", "GET", proc.url, 503, **outage) == set()
            for path in ("/api/v1/agent/queue", "/api/v1/admin/agents"):
                assert (
                    contract_failures(schema, path, "GET", proc.url, 503, headers=headers, **outage) == set()
                )
            body, sessions = {"widget_key": WIDGET_KEY}, "/api/v1/widget/sessions"
            assert contract_failures(schema, sessions, "POST", proc.url, 503, body=body, **outage) == set()
        finally:
            proc.kill()
    finally:
        own_redis.kill()
