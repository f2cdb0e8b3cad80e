"""Redis restarted (SIGTERM, then started again on the same files and port, AOF on) under customer traffic.

The test's own redis-server on a free loopback port with ``--appendonly yes --appendfsync everysec`` (never
the shared test Redis), two ``switchboard serve`` processes on it sharing one SQLite database, the fake model
API, and a bounded stream of customers: CUSTOMERS conversations of MESSAGES messages each, spread over both
processes. While they talk, Redis is stopped with SIGTERM (it writes and fsyncs its AOF on the way down),
stays down for DOWN_S, and is started again on the same files. The widgets behave like widget.js: a socket
that ends is reopened, and a message without an ``ack`` is sent again with the same ``client_id``.

Counted (one ``reliability`` line): messages acknowledged, acknowledged messages missing from ``resume``
(lost), turns that never ended, the worst wait from a frame sent to the next frame received.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.settings import LLMSettings
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.faults.accounting import Widget, report, tally_widgets
from tests.faults.own_redis import OwnRedis
from tests.integration.test_widget_ws import is_answer, is_triage, open_session, start_server, triage_reply
from tests.servers import ServerProcess

CUSTOMERS = 20
MESSAGES = 3
DOWN_S = 1.0  # how long Redis stays down: long enough that messages and turns land in the gap
RESTART_AFTER_S = 2.0  # after the first messages went out: turns are in flight when Redis stops
OUTCOME_BOUND_S = 30.0  # an acknowledged message ends in an answer, offline answer or person within this
TRAFFIC_BOUND_S = 110.0  # every customer done with every message, even if each waits out the bound
ANSWER_MODEL = LLMSettings.model_fields["answer_model"].default
ANSWER = " ".join(f"part{i:02d}" for i in range(20))  # 20 deltas at 40 tokens/s: a 1 s answer


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis", appendfsync="everysec")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def model(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()
    fake.add_rule(lambda body: triage_reply(confidence=0.95) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text=ANSWER) if is_answer(body) else None)
    fake.set_latency(tps=40.0, model=ANSWER_MODEL)
    return fake


@pytest.fixture
def servers(tmp_path: Path, model: FakeAnthropic, aof_redis: OwnRedis) -> Iterator[list[ServerProcess]]:
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    started: list[ServerProcess] = []
    try:
        started.extend(
            start_server(tmp_path / f"s{i}", model, aof_redis.url, SWITCHBOARD_DATABASE_URL=db)
            for i in range(2)
        )
        yield started
    finally:
        for server in started:
            server.kill()


async def converse(widget: Widget, number: int, unended: list[tuple[int, int]]) -> None:
    """One customer: MESSAGES questions, each sent until acknowledged and waited on until its turn ends."""
    rng = random.Random(number)
    await widget.connect()
    for m in range(MESSAGES):
        seq = await widget.send_message(f"c{number}-m{m}", f"Question {m} from customer {number} about tents")
        try:
            await widget.until_outcome(seq, OUTCOME_BOUND_S)
        except TimeoutError:
            unended.append((number, seq))  # counted from the transcript below; the conversation goes on
        await asyncio.sleep(rng.uniform(0.1, 0.6))
    await widget.close()


@pytest.mark.timeout(150)
async def test_redis_restarted_with_aof_under_traffic_loses_no_acknowledged_message(
    servers: list[ServerProcess], aof_redis: OwnRedis
) -> None:
    """SIGTERM to Redis mid-traffic, down for DOWN_S, started again on its AOF: every acknowledged message is
    still in its conversation, every turn ends (answer or person) within the bound, and the customers'
    widgets carry on after reconnecting."""
    widgets = [Widget(servers[i % 2], open_session(servers[i % 2])["token"]) for i in range(CUSTOMERS)]
    unended: list[tuple[int, int]] = []
    talking = asyncio.gather(*(converse(w, i, unended) for i, w in enumerate(widgets)))
    try:
        await asyncio.sleep(RESTART_AFTER_S)
        stopped = time.monotonic()
        await asyncio.to_thread(aof_redis.terminate)
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(aof_redis.start)
        down_s = time.monotonic() - stopped
        await asyncio.wait_for(talking, TRAFFIC_BOUND_S)
    finally:
        talking.cancel()
        await asyncio.gather(talking, return_exceptions=True)
        await asyncio.gather(*(w.close() for w in widgets))

    numbers = await tally_widgets(widgets)
    reconnects = sum(w.reconnects for w in widgets)
    report("redis_aof_restart", numbers, redis_down=down_s)
    print(
        f"reliability redis_aof_restart: widget reconnects={reconnects} turns unanswered after 30 s={unended}"
    )

    assert numbers.acked == CUSTOMERS * MESSAGES
    assert numbers.lost == 0
    assert all(server.proc is not None and server.proc.poll() is None for server in servers)
    # Turns running when Redis went away are recovered (leases, the owed-turn index, the recovery sweep):
    # every acknowledged message's turn ends, each within the bound.
    assert numbers.never_ended == 0, f"turns that never ended: {numbers.never_ended}"
    assert not unended, f"turns not ended within {OUTCOME_BOUND_S:.0f} s: {unended}"
