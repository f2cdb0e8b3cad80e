"""The REST tickets channel against a real `switchboard serve` process (real Redis, SQLite, the fake model
API), called as an integration and an agent would: integration keys and their scopes, idempotency both
ways, typed 400s that create nothing, the per-key limit, another key's tickets, the agents' list and its
filters, and tickets in a customer's data export and erasure."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.testing.fake_anthropic import FakeAnthropic, Reply, last_user_text
from tests import servers
from tests.servers import ServerProcess, agent_auth
from tests.ticket_filing import is_triage, triage_reply

PASSWORD = "correct horse battery staple"
MAX_BODY_CHARS = 2000
TICKETS_PER_KEY = 20
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic, redis_url: str
) -> Iterator[ServerProcess]:
    fake.reset()
    # "SOON" is a high-urgency ticket, answered in real time; the rest wait for a batch.
    fake.add_rule(
        lambda body: (
            (triage_reply("high" if "SOON" in last_user_text(body) else "normal"))
            if is_triage(body)
            else None
        )
    )
    fake.add_rule(lambda body: None if is_triage(body) else Reply(text="Refunds take 5 business days."))
    tmp = tmp_path_factory.mktemp("tickets-api")
    env = {
        "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url, "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'db.sqlite3'}",
        "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000",
        "SWITCHBOARD_SECRET_KEY": "tickets-api-test-secret-0123456789",
        "SWITCHBOARD_TICKETS_MAX_BODY_CHARS": str(MAX_BODY_CHARS),
        "SWITCHBOARD_LIMIT_TICKETS_PER_KEY": f"{TICKETS_PER_KEY}/minute",
    }  # fmt: skip
    for email, name, role in (("root@example.test", "Root", "admin"), ("ada@example.test", "Ada", "agent")):
        servers.create_agent(env, tmp / "cli", email, PASSWORD, name, role)
    proc = ServerProcess(tmp / "srv", env=env).start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> dict[str, str]:
    return agent_auth(server, "root@example.test", PASSWORD)


@pytest.fixture(scope="module")
def agent(server: ServerProcess) -> dict[str, str]:
    return agent_auth(server, "ada@example.test", PASSWORD)


def new_key(server: ServerProcess, admin: dict[str, str], *scopes: str) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"key-{uuid.uuid4().hex[:6]}"}
    if scopes:
        body["scopes"] = list(scopes)
    made = httpx.post(f"{server.url}/api/v1/admin/integration-keys", json=body, headers=admin)
    assert made.status_code == 201, made.text
    key: dict[str, Any] = made.json()
    return key


def bearer(key: dict[str, Any], **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}", **extra}


def unique_email() -> str:
    return f"ana-{uuid.uuid4().hex[:8]}@example.com"


def ticket(email: str, subject: str = "Where is my refund?", **extra: Any) -> dict[str, Any]:
    return {
        "subject": subject,
        "body": "I returned the boots a week ago.",
        "customer": {"email": email},
        **extra,
    }


def file(server: ServerProcess, key: dict[str, Any], body: Any, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/tickets", json=body, headers=bearer(key, **headers))


def read(server: ServerProcess, key: dict[str, Any], ticket_id: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1/tickets/{ticket_id}", headers=bearer(key))


def listed(server: ServerProcess, agent: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    resp = httpx.get(f"{server.url}/api/v1/agent/tickets", params=params, headers=agent)
    assert resp.status_code == 200, resp.text
    tickets: list[dict[str, Any]] = resp.json()
    return tickets


def until_status(
    server: ServerProcess, key: dict[str, Any], ticket_id: str, *statuses: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        view: dict[str, Any] = read(server, key, ticket_id).json()
        if view["status"] in statuses:
            return view
        time.sleep(0.1)
    raise AssertionError(f"ticket {ticket_id} never reached {statuses}")


def test_a_ticket_is_accepted_with_202_and_read_back_answered_with_triage_and_the_reply(
    server: ServerProcess, admin: dict[str, str]
) -> None:
    key = new_key(server, admin)
    email = unique_email()
    filed = file(
        server, key, ticket(email.upper(), "Refund needed SOON", channel="form", metadata={"order": 42})
    )
    assert filed.status_code == 202, filed.text
    assert set(filed.json()) == {"id", "status"}
    assert filed.headers["Location"] == f"/api/v1/tickets/{filed.json()['id']}"
    view = until_status(server, key, filed.json()["id"], "answered")
    assert view["customer"]["email"] == email
    assert view["channel"] == "form"
    assert view["metadata"] == {"order": 42}
    assert view["triage"]["urgency"] == "high"
    assert [r["text"] for r in view["replies"]] == ["Refunds take 5 business days."]


def test_the_same_idempotency_key_and_body_give_the_same_ticket_and_another_body_a_409(
    server: ServerProcess, admin: dict[str, str], agent: dict[str, str]
) -> None:
    key, other_key = new_key(server, admin), new_key(server, admin)
    email = unique_email()
    body = ticket(email)
    first = file(server, key, body, **{"Idempotency-Key": "form-submission-77"})
    again = file(server, key, body, **{"Idempotency-Key": "form-submission-77"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    changed = file(
        server, key, {**body, "subject": "Another question"}, **{"Idempotency-Key": "form-submission-77"}
    )
    assert changed.status_code == 409, changed.text
    assert changed.json()["error"]["code"] == "idempotency_conflict"
    # Another key's Idempotency-Key is its own: the same value files a new ticket.
    elsewhere = file(server, other_key, body, **{"Idempotency-Key": "form-submission-77"})
    assert elsewhere.status_code == 202
    assert elsewhere.json()["id"] != first.json()["id"]
    assert sorted(t["id"] for t in listed(server, agent, email=email)) == sorted(
        [first.json()["id"], elsewhere.json()["id"]]
    )


def test_a_read_only_key_cannot_file_and_a_revoked_key_is_refused_at_once(
    server: ServerProcess, admin: dict[str, str], agent: dict[str, str]
) -> None:
    reader, writer = new_key(server, admin, "tickets:read"), new_key(server, admin, "tickets:write")
    email = unique_email()
    refused = file(server, reader, ticket(email))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "forbidden"
    filed = file(server, writer, ticket(email))
    assert filed.status_code == 202
    assert read(server, writer, filed.json()["id"]).status_code == 403  # write-only cannot read
    gone = httpx.delete(f"{server.url}/api/v1/admin/integration-keys/{writer['id']}", headers=admin)
    assert gone.status_code == 204
    for response in (file(server, writer, ticket(email)), read(server, writer, filed.json()["id"])):
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert len(listed(server, agent, email=email)) == 1
    no_key = httpx.post(f"{server.url}/api/v1/tickets", json=ticket(email))
    assert no_key.status_code == 401
    with_agent_token = httpx.post(f"{server.url}/api/v1/tickets", json=ticket(email), headers=agent)
    assert with_agent_token.status_code == 401


def test_a_key_cannot_read_another_keys_ticket_or_probe_ids(
    server: ServerProcess, admin: dict[str, str]
) -> None:
    mine, theirs = new_key(server, admin), new_key(server, admin)
    filed = file(server, theirs, ticket(unique_email(), "Secret subject"))
    assert filed.status_code == 202
    for ticket_id in (filed.json()["id"], "0" * 32):
        probe = read(server, mine, ticket_id)
        assert probe.status_code == 404, probe.text
        assert probe.json()["error"]["code"] == "not_found"
        assert "Secret subject" not in probe.text
    assert read(server, theirs, filed.json()["id"]).status_code == 200


def test_invalid_bodies_and_idempotency_keys_get_a_typed_400_and_create_nothing(
    server: ServerProcess, admin: dict[str, str], agent: dict[str, str]
) -> None:
    key = new_key(server, admin)
    email = unique_email()
    good = ticket(email)
    bad_bodies: list[Any] = [
        {k: v for k, v in good.items() if k != "subject"}, {**good, "subject": ""},
        {**good, "subject": "   "}, {**good, "subject": "s" * 301}, {**good, "body": ""},
        {**good, "body": "b" * (MAX_BODY_CHARS + 1)}, {**good, "customer": {"email": "not-an-email"}},
        {**good, "customer": {}}, {**good, "customer": email},
        {**good, "customer": {"email": email, "name": "x" * 201}}, {**good, "channel": "fax"},
        {**good, "metadata": ["a"]}, {**good, "metadata": {f"k{i}": i for i in range(51)}},
        {**good, "metadata": {"blob": "x" * 9000}}, {**good, "priority": "high"}, [good], "ticket", None,
        {**good, "subject": 42},
    ]  # fmt: skip
    for body in bad_bodies:
        refused = file(server, key, body)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error"]["code"] == "invalid_request"
    raw = httpx.post(
        f"{server.url}/api/v1/tickets",
        content=b"{not json",
        headers=bearer(key, **{"Content-Type": "application/json"}),
    )
    assert raw.status_code == 400
    for header in ("k" * 256, "caf\xe9"):
        refused = httpx.post(
            f"{server.url}/api/v1/tickets", json=good,
            headers={**bearer(key), "Idempotency-Key": header.encode("latin-1")},  # type: ignore[dict-item]
        )  # fmt: skip
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "invalid_request"
    assert listed(server, agent, email=email) == []
    # At the limits themselves, it is accepted.
    edge = {
        **good,
        "subject": "s" * 300,
        "body": "b" * MAX_BODY_CHARS,
        "metadata": {f"k{i}": i for i in range(50)},
    }
    assert file(server, key, edge, **{"Idempotency-Key": "k" * 255}).status_code == 202


def test_one_key_over_its_ticket_limit_gets_429_while_another_key_files_on(
    server: ServerProcess, admin: dict[str, str]
) -> None:
    busy, calm = new_key(server, admin), new_key(server, admin)
    email = unique_email()
    statuses = [
        file(server, busy, ticket(email, f"Question {i}")).status_code for i in range(TICKETS_PER_KEY + 2)
    ]
    assert statuses == [202] * TICKETS_PER_KEY + [429] * 2
    over = file(server, busy, ticket(email))
    assert over.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert file(server, calm, ticket(email)).status_code == 202


def test_agents_list_tickets_newest_first_with_filters_and_pages(
    server: ServerProcess, admin: dict[str, str], agent: dict[str, str]
) -> None:
    key = new_key(server, admin)
    email = unique_email()
    ids = []
    for subject, channel in (("Refund SOON please", "email"), ("Sizes", "form"), ("Colours", "api")):
        filed = file(server, key, ticket(email, subject, channel=channel))
        assert filed.status_code == 202
        ids.append(filed.json()["id"])
        time.sleep(0.01)  # distinct creation times
    until_status(server, key, ids[0], "answered")
    newest_first = list(reversed(ids))
    everything = listed(server, agent, email=email.upper())
    assert [t["id"] for t in everything] == newest_first
    assert "body" not in everything[0]
    assert [t["id"] for t in listed(server, agent, email=email, channel="form")] == [ids[1]]
    assert [t["id"] for t in listed(server, agent, email=email, urgent="true")] == [ids[0]]
    assert [t["id"] for t in listed(server, agent, email=email, status="answered")] == [ids[0]]
    assert [t["id"] for t in listed(server, agent, email=email, limit=1)] == [ids[2]]
    page = listed(server, agent, email=email, before=everything[0]["created_at"])
    assert [t["id"] for t in page] == newest_first[1:]
    for params in (
        {"status": "lost"},
        {"limit": 0},
        {"limit": 201},
        {"channel": "fax"},
        {"before": "yesterday"},
    ):
        refused = httpx.get(f"{server.url}/api/v1/agent/tickets", params=params, headers=agent)
        assert refused.status_code == 400, (params, refused.text)
    assert httpx.get(f"{server.url}/api/v1/agent/tickets").status_code == 401
    assert httpx.get(f"{server.url}/api/v1/agent/tickets", headers=bearer(key)).status_code == 401


def test_a_customers_export_lists_their_tickets_with_replies_and_erasure_deletes_them(
    server: ServerProcess, admin: dict[str, str]
) -> None:
    key = new_key(server, admin)
    email = unique_email()
    filed = file(server, key, ticket(email, "Refund SOON"))
    until_status(server, key, filed.json()["id"], "answered")
    export = httpx.get(f"{server.url}/api/v1/admin/customers/export", params={"email": email}, headers=admin)
    assert export.status_code == 200, export.text
    (exported,) = export.json()["tickets"]
    assert exported["id"] == filed.json()["id"]
    assert [r["text"] for r in exported["replies"]] == ["Refunds take 5 business days."]
    erased = httpx.post(f"{server.url}/api/v1/admin/customers/erase", json={"email": email}, headers=admin)
    assert erased.status_code == 200, erased.text
    assert erased.json()["tickets"] == 1
    assert erased.json()["conversations"] == 1
    assert read(server, key, filed.json()["id"]).status_code == 404
    after = httpx.get(f"{server.url}/api/v1/admin/customers/export", params={"email": email}, headers=admin)
    assert after.json()["tickets"] == []
    assert after.json()["conversations"] == []
