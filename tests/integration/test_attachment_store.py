"""The attachment service over both stores and both databases: files on disk, and objects in a real
S3-compatible server (moto's, run as a subprocess on a loopback port), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr

from support.attachments.service import AttachmentRows, AttachmentService
from support.attachments.storage import DiskStore, S3Store, open_store
from support.db.engine import make_engine, session_factory
from support.errors import NotFound, ValidationFailed
from support.privacy.customer_data import CustomerScope
from support.settings import AttachmentSettings
from tests.servers import free_port

BUCKET = "switchboard-test"


def s3_settings(url: str) -> AttachmentSettings:
    return AttachmentSettings(
        s3_bucket=BUCKET, s3_endpoint_url=url, s3_access_key_id="test",
        s3_secret_access_key=SecretStr("test"), s3_region="us-east-1",
        s3_prefix=f"t-{uuid.uuid4().hex}/",  # one bucket for the module: each test its own prefix
    )  # fmt: skip


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """A real S3-compatible HTTP server (moto), with an empty bucket."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        httpx.put(f"{url}/{BUCKET}").raise_for_status()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "purple").save(out, "PNG")
    return out.getvalue()


@pytest.fixture(params=["disk", "s3"])
async def service(
    request: pytest.FixtureRequest, db_url: str, tmp_path: Path, s3_url: str
) -> AsyncIterator[AttachmentService]:
    settings = s3_settings(s3_url) if request.param == "s3" else AttachmentSettings()
    engine = make_engine(db_url)
    try:
        async with open_store(settings, tmp_path) as store:
            yield AttachmentService(session_factory(engine), store, settings)
    finally:
        await engine.dispose()


async def stored_keys(service: AttachmentService) -> list[str]:
    store = service.store
    if isinstance(store, DiskStore):
        return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())
    assert isinstance(store, S3Store)
    listed = await store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
    return sorted(obj["Key"].removeprefix(store.prefix) for obj in listed.get("Contents", []))


async def test_upload_read_and_erase_leave_no_file_behind(service: AttachmentService) -> None:
    mine = await service.upload(
        "conv-a", png(), filename="a.png", declared_type="image/png", uploader="customer"
    )
    other = await service.upload("conv-b", png(), filename="b.png", declared_type=None, uploader="customer")
    assert len(await stored_keys(service)) == 2

    row, data = await service.read(mine["id"], conversation_id="conv-a")
    assert row.content_type == "image/png"
    assert Image.open(io.BytesIO(data)).size == (8, 8)
    with pytest.raises(NotFound):
        await service.read(mine["id"], conversation_id="conv-b")
    assert await service.for_message("conv-a", [mine["id"]], uploader="customer") == [mine]
    with pytest.raises(ValidationFailed):
        await service.for_message("conv-a", [other["id"]], uploader="customer")
    with pytest.raises(ValidationFailed):  # an agent cannot send the customer's upload as their own
        await service.for_message("conv-a", [mine["id"]], uploader="agent")

    rows = AttachmentRows(service)
    scope = CustomerScope(customer=None, conversation_ids=["conv-a"])
    assert [a["id"] for a in await rows.export(scope)] == [mine["id"]]
    assert await rows.erase(scope, retention=False) == 1
    assert len(await stored_keys(service)) == 1
    with pytest.raises(NotFound):
        await service.read(mine["id"], conversation_id=None)
    assert await rows.export(scope) == []
    assert await rows.erase(scope, retention=False) == 0  # idempotent


async def test_the_s3_object_carries_the_detected_type(s3_url: str, tmp_path: Path) -> None:
    settings = s3_settings(s3_url)
    async with open_store(settings, tmp_path) as store:
        assert isinstance(store, S3Store)
        key = "0123456789abcdef/" + "f" * 32
        await store.put(key, b"%PDF-1.4 x", "application/pdf")
        head = await store.client.head_object(Bucket=BUCKET, Key=settings.s3_prefix + key)
        assert head["ContentType"] == "application/pdf"
        assert await store.get(key) == b"%PDF-1.4 x"
        await store.delete(key)
        with pytest.raises(NotFound):
            await store.get(key)
