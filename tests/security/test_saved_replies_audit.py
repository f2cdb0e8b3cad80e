"""Saved replies and the audit log over a real server, as an attacker would try them: another agent's
personal replies stay invisible (404, not 403), agents cannot touch the team's, oversized and excess
replies are refused, the audit log is admins' only and read-only, and it keeps no customer address."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from support.testing.fake_anthropic import FakeAnthropic
from tests import servers
from tests.integration.test_widget_ws import ORIGIN, Client, start_server
from tests.servers import ServerProcess, agent_auth

PASSWORD = "correct horse battery staple"
REPLIES = "/api/v1/agent/saved-replies"
AUDIT = "/api/v1/admin/audit"
CUSTOMER_EMAIL = "grace.hopper@example.com"


@pytest.fixture(scope="module")
def module_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, module_fake: FakeAnthropic, redis_url: str
) -> Iterator[ServerProcess]:
    proc = start_server(
        tmp_path_factory.mktemp("replies"), module_fake, redis_url,
        SWITCHBOARD_SAVED_REPLIES_MAX_PERSONAL="3", SWITCHBOARD_SAVED_REPLIES_MAX_TEXT_CHARS="500",
    )  # fmt: skip
    try:
        # The admin with the command line (recorded by the system), the agents by the admin over the API.
        servers.create_agent(proc.env, proc.data_dir, "root@example.com", PASSWORD, "Root", "admin")
        root = login(proc, "root@example.com")
        for email, name in (("ada@example.com", "Ada"), ("bo@example.com", "Bo"), ("cy@example.com", "Cy")):
            made = httpx.post(
                f"{proc.url}/api/v1/admin/agents", json={"email": email, "password": PASSWORD, "name": name},
                headers=root,
            )  # fmt: skip
            assert made.status_code == 201, made.text
        yield proc
    finally:
        proc.kill()


def login(server: ServerProcess, email: str) -> dict[str, str]:
    return agent_auth(server, email, PASSWORD)


def me(server: ServerProcess, auth: dict[str, str]) -> str:
    found: str = httpx.get(f"{server.url}/api/v1/agent/me", headers=auth).json()["id"]
    return found


def create(server: ServerProcess, auth: dict[str, str], **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{REPLIES}", json=body, headers=auth)


def listed(server: ServerProcess, auth: dict[str, str], q: str | None = None) -> list[dict[str, Any]]:
    resp = httpx.get(f"{server.url}{REPLIES}", params={"q": q} if q else None, headers=auth)
    assert resp.status_code == 200, resp.text
    found: list[dict[str, Any]] = resp.json()
    return found


def audit(server: ServerProcess, auth: dict[str, str], **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}{AUDIT}", params=params, headers=auth)


def test_another_agents_personal_replies_are_not_found_and_stay_unchanged(server: ServerProcess) -> None:
    ada, bo = login(server, "ada@example.com"), login(server, "bo@example.com")
    made = create(server, ada, title="Refund", shortcut="/ada-refund", text="Hi {{customer.name}}")
    assert made.status_code == 201, made.text
    reply = made.json()
    assert (reply["scope"], reply["editable"], reply["placeholders"]) == ("personal", True, ["customer.name"])
    url = f"{server.url}{REPLIES}/{reply['id']}"
    for resp in (
        httpx.patch(url, json={"text": "stolen"}, headers=bo),
        httpx.delete(url, headers=bo),
        httpx.post(f"{url}/render", json={"conversation_id": "anything"}, headers=bo),
        httpx.delete(f"{server.url}{REPLIES}/no-such-reply", headers=bo),
    ):
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"]["code"] == "not_found"
    assert reply["id"] not in {r["id"] for r in listed(server, bo)}
    assert reply["id"] not in {r["id"] for r in listed(server, bo, q="refund")}
    assert [r for r in listed(server, ada) if r["id"] == reply["id"]] == [reply]  # unchanged


def test_only_admins_add_or_change_team_replies(server: ServerProcess) -> None:
    ada, root = login(server, "ada@example.com"), login(server, "root@example.com")
    refused = create(server, ada, title="Hi", shortcut="/team-hi", text="Hello", scope="team")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    made = create(server, root, title="Hi", shortcut="/team-hi", text="Hello", scope="team")
    assert made.status_code == 201, made.text
    team = made.json()
    url = f"{server.url}{REPLIES}/{team['id']}"
    assert httpx.patch(url, json={"text": "Changed"}, headers=ada).status_code == 403
    assert httpx.delete(url, headers=ada).status_code == 403
    seen = [r for r in listed(server, ada) if r["id"] == team["id"]]
    assert seen == [{**team, "editable": False}]  # every agent reads it, unchanged
    assert httpx.patch(url, json={"text": "Hello again"}, headers=root).json()["text"] == "Hello again"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"title": "Long", "shortcut": "/long", "text": "x" * 501}, 400, "longer than 500"),
        ({"title": "Ph", "shortcut": "/ph", "text": "Call {{customer.phone}}"}, 400, "unknown placeholder"),
        ({"title": "Sc", "shortcut": "/no way", "text": "x"}, 400, "shortcut"),
        ({"title": "Sc", "shortcut": "/x", "text": "x", "scope": "everyone"}, 400, "scope"),
        ({"title": 1, "shortcut": "/x", "text": "x"}, 400, "title"),
        ({"shortcut": "/x", "text": "x"}, 400, "title"),
    ],
)
def test_bad_replies_get_typed_errors(
    server: ServerProcess, body: dict[str, Any], status: int, message: str
) -> None:
    cy = login(server, "cy@example.com")
    resp = create(server, cy, **body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == "invalid_request"
    assert message in json.dumps(resp.json()["error"])
    assert [r for r in listed(server, cy) if r["scope"] == "personal"] == []


def test_an_agents_library_is_bounded(server: ServerProcess) -> None:
    bo = login(server, "bo@example.com")
    for n in range(3):
        assert create(server, bo, title=f"R{n}", shortcut=f"/bo-{n}", text="x").status_code == 201
    over = create(server, bo, title="R3", shortcut="/bo-3", text="x")
    assert over.status_code == 400
    assert "limit" in over.json()["error"]["message"]
    assert len([r for r in listed(server, bo) if r["scope"] == "personal"]) == 3


def test_the_audit_log_is_admins_only_and_read_only(server: ServerProcess) -> None:
    ada, root = login(server, "ada@example.com"), login(server, "root@example.com")
    assert (
        create(server, root, title="Bye", shortcut="/team-bye", text="Bye", scope="team").status_code == 201
    )
    assert audit(server, ada).status_code == 403
    assert audit(server, ada).json()["error"]["code"] == "forbidden"
    assert httpx.get(f"{server.url}{AUDIT}").status_code == 401
    before = audit(server, root, limit=1000).json()
    assert before["entries"]
    entry = before["entries"][0]
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in (AUDIT, f"{AUDIT}/{entry['id']}"):
            resp = httpx.request(method, f"{server.url}{path}", json={"action": "nothing"}, headers=root)
            assert resp.status_code == (405 if path == AUDIT else 404), (method, path, resp.text)
    assert audit(server, root, limit=1000).json() == before
    for limit in (0, 1001):  # a page is 1 to 1000 entries
        bad = audit(server, root, limit=limit)
        assert bad.status_code == 400, limit
    assert audit(server, root, **{"from": "yesterday"}).status_code == 400


async def test_desk_actions_are_audited_by_id_and_an_erased_customer_leaves_no_address(
    server: ServerProcess,
) -> None:
    ada, root = login(server, "ada@example.com"), login(server, "root@example.com")
    ada_id = me(server, ada)
    session = httpx.post(
        f"{server.url}/api/v1/widget/sessions",
        json={"widget_key": "pk_test", "visitor": {"name": "Grace Hopper", "email": CUSTOMER_EMAIL}},
        headers={"Origin": ORIGIN},
    ).json()
    cid = session["conversation_id"]
    async with websockets.connect(
        f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={session['token']}"
    ) as ws:
        customer = Client(ws)
        await customer.send({"type": "request_human"})
        await customer.until(lambda f: f["type"] == "status" and f["state"] == "queued")
        assert (
            httpx.post(f"{server.url}/api/v1/agent/conversations/{cid}/claim", headers=ada).status_code == 200
        )
        reply = create(
            server, ada, title="Greet", shortcut="/greet",
            text="Hi {{customer.first_name}}, {{agent.name}} here. We will write to {{customer.email}}.",
        ).json()  # fmt: skip
        rendered = httpx.post(
            f"{server.url}{REPLIES}/{reply['id']}/render", json={"conversation_id": cid}, headers=ada
        )
        assert rendered.json() == {"text": f"Hi Grace, Ada here. We will write to {CUSTOMER_EMAIL}."}
        sent = httpx.post(
            f"{server.url}/api/v1/agent/conversations/{cid}/messages", json={"text": rendered.json()["text"]},
            headers=ada,
        )  # fmt: skip
        assert sent.status_code == 201, sent.text
        await customer.until(lambda f: f["type"] == "message" and f.get("role") == "agent")
        assert (
            httpx.post(f"{server.url}/api/v1/agent/conversations/{cid}/resolve", headers=ada).status_code
            == 200
        )
    erased = httpx.post(
        f"{server.url}/api/v1/admin/customers/erase", json={"email": CUSTOMER_EMAIL}, headers=root
    )
    assert erased.status_code == 200, erased.text
    desk = audit(server, root, actor=ada_id, action="conversation.").json()["entries"]
    assert [(e["action"], e["target_id"]) for e in desk] == [
        ("conversation.resolved", cid), ("conversation.message_sent", cid), ("conversation.claimed", cid),
    ]  # fmt: skip
    assert desk[1]["details"] == {"seq": sent.json()["seq"]}  # the fact of the reply, not its text
    root_id = me(server, root)
    erasure = audit(server, root, actor=root_id, action="customer_data.erased").json()["entries"]
    assert [(e["details"]["by"], e["details"]["conversations"]) for e in erasure] == [("email", 1)]
    everything = audit(server, root, limit=1000)
    as_csv = audit(server, root, limit=1000, format="csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [int(r["id"]) for r in rows] == [e["id"] for e in everything.json()["entries"]]
    for dump in (everything.text, as_csv.text):
        assert CUSTOMER_EMAIL not in dump
        assert "grace" not in dump.lower()
        assert "write to" not in dump  # no message text


def test_admin_changes_are_audited_with_who_made_them(server: ServerProcess) -> None:
    root = login(server, "root@example.com")
    root_id, base = me(server, root), f"{server.url}/api/v1/admin"
    key = httpx.post(f"{base}/integration-keys", json={"name": "CRM"}, headers=root).json()
    assert httpx.delete(f"{base}/integration-keys/{key['id']}", headers=root).status_code == 204
    hook = httpx.post(
        f"{base}/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["conversation.resolved"]},
        headers=root,
    )  # fmt: skip
    assert hook.status_code == 201, hook.text
    assert httpx.delete(f"{base}/webhooks/{hook.json()['id']}", headers=root).status_code == 204
    hours = {"business_hours": {"timezone": "UTC", "weekly": {"mon": ["09:00-17:00"]}}}
    assert httpx.put(f"{base}/teams/default/hours", json=hours, headers=root).status_code == 200
    made = httpx.post(
        f"{base}/agents", json={"email": "dee@example.com", "password": PASSWORD, "name": "Dee"}, headers=root
    ).json()
    changed = httpx.patch(f"{base}/agents/{made['id']}", json={"capacity": 5, "name": "Dee D."}, headers=root)
    assert changed.status_code == 200, changed.text
    version = httpx.get(f"{base}/knowledge/", headers=root).json()["active"]
    assert httpx.post(f"{base}/knowledge/versions/{version}/activate", headers=root).status_code == 200
    mine = audit(server, root, actor=root_id, limit=20).json()["entries"]
    assert [(e["action"], e["target_id"], e["details"]) for e in mine if not e["action"].startswith("saved")][
        :8
    ] == [
        ("knowledge.activated", version, {}),
        ("account.updated", made["id"], {"capacity": 5, "name_changed": True}),
        ("account.created", made["id"], {"role": "agent"}),
        ("team.hours_changed", "default", {"source": "admin"}),
        ("webhook.deactivated", hook.json()["id"], {}),
        ("webhook.created", hook.json()["id"], {"events": ["conversation.resolved"]}),
        ("integration_key.revoked", key["id"], {}),
        ("integration_key.created", key["id"], {"scopes": key["scopes"]}),
    ]
    # The admin the command line made at the start is there too, made by the system; the agents, by Root.
    created = audit(server, root, action="account.created").json()["entries"]
    made_by = [(e["actor_id"], e["details"]["role"]) for e in created]
    assert made_by[-4:] == [(root_id, "agent"), (root_id, "agent"), (root_id, "agent"), (None, "admin")]
    assert "127.0.0.1:9" not in audit(server, root, limit=1000).text  # a webhook's URL is not kept
