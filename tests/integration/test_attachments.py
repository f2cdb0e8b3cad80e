"""Attachments end to end, attempted as a customer and an attacker would: a real `switchboard serve`
process (SQLite, real Redis, the fake model API), real HTTP uploads and widget sockets, an agent and an
admin over the agent API."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from PIL import Image

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.integration.test_handoff import user_text
from tests.integration.test_widget_ws import (
    ORIGIN,
    SHARED_SECRET_KEY,
    WIDGET_KEYS,
    Client,
    is_answer,
    is_triage,
    triage_reply,
)
from tests.servers import ServerProcess, agent_auth

PASSWORD = "long enough password"
MAX_BYTES = 300_000  # small, so an oversize upload is quick to send
MAX_PER_CONVERSATION = 4


def png(width: int = 64, height: int = 32, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), "blue").save(out, "JPEG")
    return out.getvalue()


def rules(fake: FakeAnthropic) -> None:
    fake.reset()
    fake.add_rule(lambda body: triage_reply(confidence=0.95) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="Thanks, I can see it.") if is_answer(body) else None)


def start(
    tmp: Path, fake: FakeAnthropic, redis_url: str, *, admin: bool = False, **extra: str
) -> ServerProcess:
    env = {
        "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url, "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'db.sqlite3'}",
        "SWITCHBOARD_WIDGET_KEYS": WIDGET_KEYS, "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000",
        "SWITCHBOARD_SECRET_KEY": SHARED_SECRET_KEY,
        "SWITCHBOARD_ATTACHMENTS_MAX_BYTES": str(MAX_BYTES),
        "SWITCHBOARD_ATTACHMENTS_MAX_PER_CONVERSATION": str(MAX_PER_CONVERSATION),
        "SWITCHBOARD_LIMIT_MESSAGES_PER_CONVERSATION": "1000/minute",
        **extra,
    }  # fmt: skip
    proc = ServerProcess(tmp, env=env)
    if admin:  # before the start: the command migrates the database, the server then finds it ready
        tmp.mkdir(parents=True, exist_ok=True)
        servers.create_agent(proc.env, tmp, "admin@example.test", PASSWORD, "Ada Admin", "admin")
    return proc.start()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic, redis_url: str
) -> Iterator[ServerProcess]:
    rules(fake)
    proc = start(tmp_path_factory.mktemp("attach"), fake, redis_url, admin=True)
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    rules(fake)
    return fake


def session(server: ServerProcess, visitor_id: str) -> dict[str, Any]:
    body = {"widget_key": "pk_test", "visitor": {"id": visitor_id, "name": "Cleo"}}
    resp = httpx.post(f"{server.url}/api/v1/widget/sessions", json=body, headers={"Origin": ORIGIN})
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


def upload(
    server: ServerProcess, token: str, data: bytes, content_type: str, filename: str = "photo.png"
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/widget/attachments",
        params={"token": token, "filename": filename},
        content=data,
        headers={"Content-Type": content_type, "Origin": ORIGIN},
    )


def stored_files(server: ServerProcess) -> list[Path]:
    root = server.data_dir / "attachments"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def send_with(server: ServerProcess, token: str, text: str, ids: list[str]) -> list[dict[str, Any]]:
    """Send one message carrying ``ids``; the frames up to the assistant's reply (or an error)."""
    url = f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={token}"
    async with websockets.connect(url) as ws:
        client = Client(ws)
        await client.send({"type": "message", "client_id": "m-1", "text": text, "attachments": ids})
        return await client.until(
            lambda f: f["type"] == "error" or (f["type"] == "message" and f["role"] == "assistant")
        )


async def test_a_customer_image_is_stored_re_encoded_shown_and_only_a_marker_reaches_the_model(
    server: ServerProcess, fake_api: FakeAnthropic
) -> None:
    grant = session(server, "v-cleo")
    original = png(64, 32)
    # Text metadata and trailing bytes ride along in the upload; re-encoding must drop both.
    meta = io.BytesIO()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "GPS 52.52N 13.40E")
    Image.open(io.BytesIO(original)).save(meta, "PNG", pnginfo=info)
    resp = upload(server, grant["token"], meta.getvalue() + b"TRAILING", "image/png", "broken screen.png")
    assert resp.status_code == 201, resp.text
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    described = resp.json()
    assert described["kind"] == "image"
    assert described["content_type"] == "image/png"
    assert described["name"] == "broken screen.png"
    assert (described["width"], described["height"]) == (64, 32)

    frames = await send_with(server, grant["token"], "My screen arrived cracked", [described["id"]])
    echoed = next(f for f in frames if f["type"] == "message" and f["role"] == "customer")
    assert echoed["attachments"] == [described]

    got = httpx.get(
        f"{server.url}/api/v1/widget/attachments/{described['id']}", params={"token": grant["token"]}
    )
    assert got.status_code == 200
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"].startswith("inline;")
    assert "sandbox" in got.headers["content-security-policy"]
    assert b"GPS" not in got.content
    assert not got.content.endswith(b"TRAILING")
    assert Image.open(io.BytesIO(got.content)).size == (64, 32)

    answers = [r.body for r in fake_api.requests if isinstance(r.body, dict) and is_answer(r.body)]
    assert answers, "the turn made no answer call"
    last_user = answers[-1]["messages"][-1]["content"]
    assert "[customer attached an image: broken screen.png]" in user_text(answers[-1])
    assert not [b for b in last_user if b.get("type") == "image"]
    assert base64.b64encode(got.content).decode() not in json.dumps(answers[-1]), "no image data at all"


@pytest.mark.parametrize(
    ("name", "data", "declared"),
    [
        ("html renamed .png", b"<!DOCTYPE html><html><script>alert(1)</script></html>", "image/png"),
        (
            "svg with script",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "image/png",
        ),
        ("png magic then html", b"\x89PNG\r\n\x1a\n" + b"<html><script>alert(1)</script>", "image/png"),
        ("png declared, jpeg content", jpeg(), "image/png"),
        ("truncated png", png()[:60], "image/png"),
        ("executable", b"MZ\x90\x00" + b"\x00" * 200, "application/octet-stream"),
    ],
)
def test_files_that_are_not_what_they_claim_are_refused_and_nothing_is_stored(
    server: ServerProcess, name: str, data: bytes, declared: str
) -> None:
    before = stored_files(server)
    grant = session(server, f"v-{name.replace(' ', '-')}")
    resp = upload(server, grant["token"], data, declared, "innocent.png")
    assert resp.status_code == 415, (name, resp.text)
    assert resp.json()["error"]["code"] == "unsupported_type"
    assert stored_files(server) == before


def test_an_oversize_upload_is_refused_with_413_before_it_is_stored(server: ServerProcess) -> None:
    before = stored_files(server)
    grant = session(server, "v-big")
    resp = upload(server, grant["token"], b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_BYTES, "image/png")
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "too_large"
    assert stored_files(server) == before


def test_another_customers_session_cannot_read_an_attachment_but_agents_can(server: ServerProcess) -> None:
    owner, other = session(server, "v-owner"), session(server, "v-other")
    attachment = upload(server, owner["token"], png(), "image/png").json()
    url = f"{server.url}/api/v1/widget/attachments/{attachment['id']}"
    assert httpx.get(url, params={"token": other["token"]}).status_code == 404
    assert httpx.get(url, params={"token": "forged"}).status_code == 401
    agent_url = f"{server.url}/api/v1/agent/attachments/{attachment['id']}"
    assert httpx.get(agent_url).status_code == 401
    auth = agent_auth(server, "admin@example.test", PASSWORD)
    got = httpx.get(agent_url, headers=auth)
    assert got.status_code == 200
    assert Image.open(io.BytesIO(got.content)).size == (64, 32)


async def test_a_message_cannot_carry_another_conversations_attachment(server: ServerProcess) -> None:
    owner, thief = session(server, "v-owner2"), session(server, "v-thief")
    attachment = upload(server, owner["token"], png(), "image/png").json()
    frames = await send_with(server, thief["token"], "look", [attachment["id"]])
    assert frames[-1]["type"] == "error"
    assert frames[-1]["code"] == "invalid_request"
    assert frames[-1]["client_id"] == "m-1"


def test_a_path_in_the_file_name_is_only_a_name(server: ServerProcess) -> None:
    grant = session(server, "v-traversal")
    resp = upload(
        server, grant["token"], png(), "image/png", "../../../../etc/cron.d/x\r\nSet-Cookie: a=b.png"
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == "xSet-Cookie: a=b.png"
    root = (server.data_dir / "attachments").resolve()
    assert all(p.resolve().is_relative_to(root) for p in stored_files(server))
    got = httpx.get(
        f"{server.url}/api/v1/widget/attachments/{resp.json()['id']}", params={"token": grant["token"]}
    )
    assert "set-cookie" not in got.headers
    assert 'filename="xSet-Cookie: a=b.png"' in got.headers["content-disposition"]


def test_uploads_per_conversation_are_capped(server: ServerProcess) -> None:
    grant = session(server, "v-many")
    for _ in range(MAX_PER_CONVERSATION):
        assert upload(server, grant["token"], png(), "image/png").status_code == 201
    refused = upload(server, grant["token"], png(), "image/png")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"


def test_a_pdf_is_served_as_a_download(server: ServerProcess) -> None:
    grant = session(server, "v-pdf")
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    described = upload(server, grant["token"], pdf, "application/pdf", "invoice.pdf").json()
    assert described["kind"] == "file"
    got = httpx.get(
        f"{server.url}/api/v1/widget/attachments/{described['id']}", params={"token": grant["token"]}
    )
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.content == pdf


async def test_erasing_a_customer_deletes_their_files_and_the_export_lists_them_first(
    server: ServerProcess,
) -> None:
    grant = session(server, "v-erase-me")
    described = upload(server, grant["token"], png(), "image/png").json()
    await send_with(server, grant["token"], "here", [described["id"]])
    files_before = stored_files(server)
    auth = agent_auth(server, "admin@example.test", PASSWORD)
    export = httpx.get(
        f"{server.url}/api/v1/admin/customers/export", params={"visitor_id": "v-erase-me"}, headers=auth
    )
    assert [a["id"] for a in export.json()["attachments"]] == [described["id"]]
    erased = httpx.post(
        f"{server.url}/api/v1/admin/customers/erase", json={"visitor_id": "v-erase-me"}, headers=auth
    )
    assert erased.status_code == 200, erased.text
    assert erased.json()["attachments"] == 1
    assert len(stored_files(server)) == len(files_before) - 1
    url = f"{server.url}/api/v1/agent/attachments/{described['id']}"
    assert httpx.get(url, headers=auth).status_code == 404
    again = httpx.get(
        f"{server.url}/api/v1/admin/customers/export", params={"visitor_id": "v-erase-me"}, headers=auth
    )
    assert again.json()["attachments"] == []


async def test_with_images_allowed_the_model_receives_the_image_block(
    tmp_path: Path, fake_api: FakeAnthropic, redis_url: str
) -> None:
    proc = start(tmp_path, fake_api, redis_url, SWITCHBOARD_ATTACHMENTS_IMAGES_TO_MODEL="true")
    try:
        grant = session(proc, "v-vision")
        described = upload(proc, grant["token"], png(20, 10, "green"), "image/png").json()
        stored = httpx.get(
            f"{proc.url}/api/v1/widget/attachments/{described['id']}", params={"token": grant["token"]}
        ).content
        await send_with(proc, grant["token"], "what is this?", [described["id"]])
        answers = [r.body for r in fake_api.requests if isinstance(r.body, dict) and is_answer(r.body)]
        images = [b for b in answers[-1]["messages"][-1]["content"] if b.get("type") == "image"]
        assert images == [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(stored).decode()}}
        ]  # fmt: skip
    finally:
        proc.kill()


def integration_key(server: ServerProcess) -> dict[str, str]:
    admin = agent_auth(server, "admin@example.test", PASSWORD)
    made = httpx.post(f"{server.url}/api/v1/admin/integration-keys", json={"name": "forms"}, headers=admin)
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


def ticket_body(email: str, *files: dict[str, Any]) -> dict[str, Any]:
    return {
        "subject": "Broken zip", "body": "The zip broke, photo attached.", "customer": {"email": email},
        "attachments": list(files),
    }  # fmt: skip


def test_a_ticket_filed_with_an_image_holds_it_and_its_first_message_carries_it(
    server: ServerProcess,
) -> None:
    key = integration_key(server)
    image = {
        "filename": "zip.png",
        "content_type": "image/png",
        "content_base64": base64.b64encode(png()).decode(),
    }
    filed = httpx.post(
        f"{server.url}/api/v1/tickets", json=ticket_body("zip@example.com", image), headers=key
    )
    assert filed.status_code == 202, filed.text
    view = httpx.get(f"{server.url}/api/v1/tickets/{filed.json()['id']}", headers=key).json()
    [attached] = view["attachments"]
    assert (attached["name"], attached["kind"], attached["width"]) == ("zip.png", "image", 64)

    agent = agent_auth(server, "admin@example.test", PASSWORD)
    packet = httpx.get(f"{server.url}/api/v1/agent/conversations/ticket-{filed.json()['id']}", headers=agent)
    first = next(m for m in packet.json()["transcript"] if m.get("role") == "customer")
    assert first["attachments"] == [attached]
    got = httpx.get(f"{server.url}/api/v1/agent/attachments/{attached['id']}", headers=agent)
    assert Image.open(io.BytesIO(got.content)).size == (64, 32)


@pytest.mark.parametrize(
    ("attachment", "status", "code"),
    [
        ({"filename": "x.png", "content_base64": base64.b64encode(b"<html><script>1</script>").decode()}, 415,
         "unsupported_type"),
        ({"filename": "x.png", "content_type": "image/png", "content_base64": "not base64!"}, 400,
         "invalid_request"),
    ],
)  # fmt: skip
def test_a_ticket_with_a_bad_attachment_is_refused_and_nothing_is_created(
    server: ServerProcess, attachment: dict[str, Any], status: int, code: str
) -> None:
    key = integration_key(server)
    before = stored_files(server)
    email = f"bad-{code}@example.com"
    filed = httpx.post(f"{server.url}/api/v1/tickets", json=ticket_body(email, attachment), headers=key)
    assert filed.status_code == status, filed.text
    assert filed.json()["error"]["code"] == code
    assert stored_files(server) == before
    agent = agent_auth(server, "admin@example.test", PASSWORD)
    listed = httpx.get(f"{server.url}/api/v1/agent/tickets", params={"email": email}, headers=agent)
    assert listed.json() == []
