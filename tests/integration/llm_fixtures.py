"""Shared fixtures for tests of the model-calling modules: the fake API, a gateway on it, the ledger.

Import the fixtures into a test module (``from tests.integration.llm_fixtures import fake, gateway``);
the gateway uses the real SDK, the real Redis and the migrated SQL database of ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from support.db.engine import session_factory
from support.db.models import ModelUsage
from support.llm.gateway import ModelGateway, make_client
from support.settings import LLMSettings
from support.testing.fake_anthropic import FakeAnthropic, RecordedRequest

HAIKU = "claude-haiku-4-5"
SONNET = "claude-sonnet-4-6"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    """A fresh fake model API on a loopback port."""
    with FakeAnthropic() as server:
        yield server


def settings_for(fake: FakeAnthropic) -> LLMSettings:
    """Settings pointing at the fake, with fast backoff and generous budgets."""
    values: dict[str, Any] = {
        "api_key": SecretStr("sk-test"),
        "base_url": fake.url,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.5,
        "requests_per_minute": 1000,
        "budget_wait_s": 0.5,
    }
    return LLMSettings().model_copy(update=values)


@pytest.fixture
async def gateway(
    fake: FakeAnthropic, redis_client: aioredis.Redis, db_engine: AsyncEngine
) -> AsyncIterator[ModelGateway]:
    """A gateway on the fake; its SDK client is closed after the test."""
    settings = settings_for(fake)
    client = make_client(settings)
    try:
        yield ModelGateway(client, redis_client, session_factory(db_engine), settings)
    finally:
        await client.close()


async def ledger(engine: AsyncEngine) -> list[ModelUsage]:
    """Every ledger row, oldest first."""
    async with session_factory(engine)() as session:
        return list((await session.execute(select(ModelUsage).order_by(ModelUsage.id))).scalars())  # type: ignore[arg-type]


def message_posts(fake: FakeAnthropic) -> list[RecordedRequest]:
    """The recorded ``POST /v1/messages`` requests, oldest first."""
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/messages"]
