"""The Redis conversation store against a real Redis server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from support import keys
from support.conversation.store import ConversationStore
from support.errors import BotDisowned, NotFound, TurnSuperseded
from tests.redis_cluster import redis_client_for

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CID = "c1"


async def make(client: aioredis.Redis) -> ConversationStore:
    store = ConversationStore(client)
    assert await store.create_conversation(CID, widget_key="pk_demo", visitor={"name": "Ann"}, now=NOW)
    return store


async def test_create_is_idempotent(redis_client: aioredis.Redis) -> None:
    store = await make(redis_client)
    assert not await store.create_conversation(CID, widget_key="other", visitor={})
    state = await store.get_state(CID)
    assert state is not None
    assert (state.state, state.widget_key, state.visitor, state.last_seq) == (
        "bot",
        "pk_demo",
        {"name": "Ann"},
        0,
    )


async def test_same_client_id_is_stored_once_and_gets_the_same_seq(redis_client: aioredis.Redis) -> None:
    store = await make(redis_client)
    first, created = await store.append_customer_message(CID, "m-1", "hello", now=NOW)
    again, created_again = await store.append_customer_message(CID, "m-1", "hello", now=NOW)
    assert (created, created_again) == (True, False)
    assert again == first
    assert first.seq == 1
    assert await store.events_after(CID, 0) == [first]


async def test_seq_is_contiguous_under_concurrent_appends_from_two_clients(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    store_a = await make(redis_client)
    other = redis_client_for(redis_url)
    try:
        store_b = ConversationStore(other)
        results = await asyncio.gather(
            *(
                (store_a if i % 2 else store_b).append_customer_message(CID, f"m-{i}", f"t{i}", now=NOW)
                for i in range(50)
            )
        )
    finally:
        await other.aclose()
    assert sorted(e.seq for e, _ in results) == list(range(1, 51))
    replay = await store_a.events_after(CID, 0)
    assert [e.seq for e in replay] == list(range(1, 51))
    assert {e.client_id for e in replay} == {f"m-{i}" for i in range(50)}


async def test_events_after_replays_exactly_the_later_events(redis_client: aioredis.Redis) -> None:
    store = await make(redis_client)
    msg, _ = await store.append_customer_message(CID, "m", "q", now=NOW)
    reply = await store.append_event(
        CID, type="message", role="assistant", text="a", reply_id="r1", author={"name": "Bot"}, now=NOW
    )
    status = await store.append_event(
        CID, type="status", role="system", text="", extra={"state": "queued", "queue_position": 2}, now=NOW
    )
    assert await store.events_after(CID, 1) == [reply, status]
    assert await store.events_after(CID, 0, limit=2) == [msg, reply]
    assert await store.events_after(CID, 3) == []
    assert reply.to_frame() == {
        "type": "message", "seq": 2, "id": reply.id, "role": "assistant", "text": "a",
        "created_at": "2026-01-02T03:04:05.000+00:00", "reply_id": "r1", "author": {"name": "Bot"},
    }  # fmt: skip
    assert status.to_frame() == {"type": "status", "seq": 3, "state": "queued", "queue_position": 2}


async def test_state_compare_and_set(redis_client: aioredis.Redis) -> None:
    store = await make(redis_client)
    assert await store.set_state(CID, expected_state="bot", state="queued")
    assert not await store.set_state(CID, expected_state="bot", state="agent", assignee="ada")
    assert await store.set_state(CID, expected_state="queued", state="agent", assignee="ada")
    state = await store.get_state(CID)
    assert state is not None
    assert (state.state, state.assignee) == ("agent", "ada")
    assert await store.set_state(CID, assignee=None)
    state = await store.get_state(CID)
    assert state is not None
    assert state.assignee is None


async def test_summary_fold_is_compare_and_set_and_keeps_messages(redis_client: aioredis.Redis) -> None:
    store = await make(redis_client)
    for i in range(4):
        await store.append_customer_message(CID, f"m{i}", f"t{i}", now=NOW)
    assert await store.fold_summary(CID, new_summary="s1", upto_seq=2, expected_summary_version=0)
    assert not await store.fold_summary(CID, new_summary="stale", upto_seq=3, expected_summary_version=0)
    text, upto, messages = await store.window(CID)
    assert (text, upto, [m.seq for m in messages]) == ("s1", 2, [3, 4])
    assert len(await store.events_after(CID, 0)) == 4
    state = await store.get_state(CID)
    assert state is not None
    assert (state.window_start_seq, state.summary_version) == (3, 1)


async def test_lock_is_exclusive_and_only_its_holder_releases_it(redis_client: aioredis.Redis) -> None:
    store = ConversationStore(redis_client)
    token = await store.acquire_lock("summarize", CID, 10_000)
    assert token is not None
    assert await store.acquire_lock("summarize", CID, 10_000) is None
    assert await store.acquire_lock("other", CID, 10_000) is not None
    forged = type(token)(token.key, "not-the-token")
    assert not await store.release_lock(forged)
    assert await store.release_lock(token)
    assert await store.acquire_lock("summarize", CID, 10_000) is not None


async def archived(client: aioredis.Redis) -> ConversationStore:
    """A conversation with every one of its keys present, given the archiver's expiry."""
    store = await make(client)
    await store.append_customer_message(CID, "m", "t", now=NOW)
    await store.record_triage(CID, 1, {"intent": "other"})
    await store.add_note(CID, {"text": "internal"})
    await store.touch_expiry(CID, 3600)
    return store


async def test_touch_expiry_sets_a_ttl_on_every_key(redis_client: aioredis.Redis) -> None:
    await archived(redis_client)
    for key in keys.conversation_keys(CID):
        assert 0 < await redis_client.ttl(key) <= 3600, key
    assert all(keys.conv_tag(CID) in k for k in keys.conversation_keys(CID))


async def test_appending_to_an_unknown_conversation_is_not_found(redis_client: aioredis.Redis) -> None:
    store = ConversationStore(redis_client)
    with pytest.raises(NotFound):
        await store.append_customer_message("nope", "m", "t", now=NOW)
    with pytest.raises(NotFound):
        await store.set_state("nope", state="bot")
    assert await store.get_state("nope") is None


async def test_store_owned_fields_cannot_be_set(redis_client: aioredis.Redis) -> None:
    store = await make(redis_client)
    with pytest.raises(ValueError, match="last_seq"):
        await store.set_state(CID, last_seq=9)


async def test_begin_turn_takes_the_lock_and_reads_state_and_window_together(
    redis_client: aioredis.Redis,
) -> None:
    store = await make(redis_client)
    for i in range(4):
        await store.append_customer_message(CID, f"m{i}", f"t{i}", now=NOW)
    await store.append_event(CID, type="status", role="system", text="", extra={"state": "bot"}, now=NOW)
    assert await store.fold_summary(CID, new_summary="s1", upto_seq=2, expected_summary_version=0)
    context = await store.begin_turn(CID, 10_000)
    assert context is not None
    assert context.state is not None
    assert (context.state.state, context.state.last_seq, context.state.visitor) == ("bot", 5, {"name": "Ann"})
    # the window holds the messages after the summary (not the status event), like window() does
    assert (context.summary, context.summary_upto) == ("s1", 2)
    assert [(m.seq, m.text) for m in context.window] == [(3, "t2"), (4, "t3")]
    assert context.window == (await store.window(CID))[2]
    # a second turn waits for the first: no lock, nothing read
    assert await store.begin_turn(CID, 10_000) is None
    assert await store.release_lock(context.lock)
    assert await store.begin_turn(CID, 10_000) is not None


async def test_begin_turn_of_a_new_conversation_has_an_empty_window(redis_client: aioredis.Redis) -> None:
    store = await make(redis_client)
    context = await store.begin_turn(CID, 10_000)
    assert context is not None
    assert (context.summary, context.summary_upto, context.window) == ("", 0, [])


async def test_an_append_cancels_the_archive_expiry_of_every_key(redis_client: aioredis.Redis) -> None:
    store = await archived(redis_client)
    await store.append_customer_message(CID, "m2", "back again", now=NOW)
    for key in keys.conversation_keys(CID):
        assert await redis_client.ttl(key) == -1, key
    assert await redis_client.zscore(keys.active_conversations(), CID) == NOW.timestamp()


async def test_a_busy_conversation_is_reindexed_for_the_archiver_at_most_once_per_interval(
    redis_client: aioredis.Redis,
) -> None:
    later = datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC)
    every = await make(redis_client)
    await every.append_customer_message(CID, "a", "one", now=NOW)
    await every.append_customer_message(CID, "b", "two", now=later)
    assert await redis_client.zscore(keys.active_conversations(), CID) == later.timestamp()

    throttled = ConversationStore(redis_client, active_mark_interval_s=60.0)
    await redis_client.zadd(keys.active_conversations(), {CID: 0})
    await throttled.append_customer_message(CID, "c", "three", now=NOW)
    await throttled.append_customer_message(CID, "d", "four", now=later)  # inside the interval: skipped
    assert await redis_client.zscore(keys.active_conversations(), CID) == NOW.timestamp()
    state = await throttled.get_state(CID)
    assert state is not None
    assert state.last_seq == 4


async def test_receiving_a_customer_message_stores_it_and_begins_its_turn_in_one_step(
    redis_client: aioredis.Redis,
) -> None:
    store = await make(redis_client)
    event, created, context = await store.receive_customer_message(
        CID, "m1", "hello", now=NOW, lock_ttl_ms=10_000
    )
    assert created
    assert context is not None
    assert [ev.text for ev in context.window] == ["hello"]
    assert context.state is not None
    assert context.state.last_seq == event.seq == 1
    assert 0 < await redis_client.pttl(keys.conv_lock(CID, "turn")) <= 10_000  # the lock keeps its TTL
    assert await store.begin_turn(CID, 10_000) is None  # the turn owns the lock

    # while that turn runs: the next message is stored, its turn waits for the lock
    second, created, waiting = await store.receive_customer_message(
        CID, "m2", "again", now=NOW, lock_ttl_ms=10_000
    )
    assert (created, waiting, second.seq) == (True, None, 2)
    # a resend while the owed turn runs (it has renewed its lease) begins nothing
    assert await store.renew_lease(CID, context.lock, 10_000)
    again, created, none = await store.receive_customer_message(
        CID, "m1", "hello", now=NOW, lock_ttl_ms=10_000
    )
    assert (again.seq, created, none) == (1, False, None)
    # with the lease free and a turn owed (its process died, or its start was lost), a resend begins the
    # owed turn: the latest message's, not the resent one's
    assert await store.release_lock(context.lock)
    again, created, owed = await store.receive_customer_message(
        CID, "m1", "hello", now=NOW, lock_ttl_ms=10_000
    )
    assert (again.seq, created) == (1, False)
    assert owed is not None
    assert owed.message is not None
    assert (owed.message.seq, owed.message.text, owed.owed_seq) == (2, "again", 2)
    assert await redis_client.get(keys.conv_lock(CID, "turn")) == owed.lock.value.encode()
    # the turn ends, clearing what it owed: a resend begins nothing any more, the lease free
    assert await store.end_turn(CID, owed.lock, 2)
    again, created, none = await store.receive_customer_message(
        CID, "m2", "again", now=NOW, lock_ttl_ms=10_000
    )
    assert (again.seq, created, none) == (2, False, None)
    assert await redis_client.exists(keys.conv_lock(CID, "turn")) == 0


async def test_a_reply_can_carry_its_last_delta_published_first_in_one_script(
    redis_client: aioredis.Redis,
) -> None:
    store = await make(redis_client)
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.conv_channel(CID))
    try:
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        delta = {"type": "delta", "reply_id": "r1", "text": " end."}
        event = await store.append_event(
            CID, type="message", role="assistant", text="The end.", reply_id="r1", now=NOW,
            publish=True, publish_first=delta,
        )  # fmt: skip
        got = []
        while len(got) < 2:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            assert msg is not None
            got.append(json.loads(msg["data"]))
    finally:
        await pubsub.aclose()
    assert got[0] == delta
    assert (got[1]["type"], got[1]["seq"], got[1]["text"]) == ("message", event.seq, "The end.")


async def test_bot_writes_are_refused_once_the_bot_does_not_own_the_conversation(
    redis_client: aioredis.Redis,
) -> None:
    """A bot delta, reply or handoff is checked in the script that would send or store it: refused after a
    status event moves the state off the bot, and still refused for that turn after a return to the bot."""
    store = await make(redis_client)
    async with redis_client.pubsub() as pubsub:
        await pubsub.subscribe(keys.conv_channel(CID))
        await store.publish_bot(CID, 0, {"type": "delta", "reply_id": "r1", "text": "a"})
        await store.append_event(
            CID, type="status", role="system", text="", extra={"state": "queued"}, now=NOW, publish=True,
            new_state="queued",
        )  # fmt: skip
        with pytest.raises(BotDisowned):
            await store.publish_bot(CID, 0, {"type": "delta", "reply_id": "r1", "text": "b"})
        with pytest.raises(BotDisowned):
            await store.append_event(
                CID, type="message", role="assistant", text="ab", reply_id="r1", now=NOW, publish=True,
                bot_epoch=0,
            )  # fmt: skip
        assert not await store.set_state(CID, bot_epoch=0, handoff_reason="timeout")
        await store.append_event(
            CID, type="status", role="system", text="", extra={"state": "bot"}, now=NOW, new_state="bot"
        )
        with pytest.raises(BotDisowned):
            await store.publish_bot(CID, 0, {"type": "delta", "reply_id": "r1", "text": "c"})
        await store.publish_bot(CID, 1, {"type": "delta", "reply_id": "r3", "text": "new turn"})
        published = []
        for _ in range(10):  # the subscribe confirmation, then what was published; None once drained
            message = await pubsub.get_message(timeout=0.2)
            if message is not None and message["type"] == "message":
                published.append(json.loads(message["data"]))
    state = await store.get_state(CID)
    assert state is not None
    assert [f.get("text", f.get("state")) for f in published] == ["a", "queued", "new turn"]
    assert [ev.type for ev in await store.events_after(CID, 0)] == ["status", "status"]
    assert (state.state, state.bot_epoch, state.extra["status_seq"]) == ("bot", 1, "2")


async def test_an_owed_turn_is_found_recovered_once_and_cleared_by_its_outcome(
    redis_client: aioredis.Redis,
) -> None:
    """A message's turn is owed (marker and index) until the script storing its reply clears it; while
    the lease is held recovery leaves it; once the lease is gone one recovery takes it, with the reply the
    dead turn began to stream named so it can be withdrawn."""
    store = await make(redis_client)
    event, _, context = await store.receive_customer_message(CID, "m1", "hello", now=NOW, lock_ttl_ms=5_000)
    assert context is not None
    assert context.owed_seq == event.seq
    assert [cid for cid, _ in await store.owed_turns(2**62, 10)] == [CID]
    assert await store.recover_turn(CID, 5_000) == ("running", None)  # its lease is held
    # the turn streams a first delta, then its process dies: the lease lapses
    await store.publish_bot(CID, 0, {"type": "delta", "reply_id": "r1", "text": "Hi"}, starts_reply="r1")
    await redis_client.delete(keys.conv_lock(CID, "turn"))
    outcome, recovered = await store.recover_turn(CID, 5_000)
    assert outcome == "begun"
    assert recovered is not None
    assert recovered.message is not None
    assert (recovered.message.seq, recovered.streamed_reply, recovered.recoveries) == (event.seq, "r1", 1)
    assert (await store.recover_turn(CID, 5_000))[0] == "running"  # one owner
    # the old turn's write is refused (another turn holds the lease now); the new one's reply clears it
    with pytest.raises(TurnSuperseded):
        await store.append_event(
            CID, type="message", role="assistant", text="old", reply_id="r1", now=NOW, bot_epoch=0,
            ends_turn=event.seq, lease=context.lock,
        )  # fmt: skip
    await store.append_event(
        CID, type="message", role="assistant", text="new", reply_id="r1-x", now=NOW, bot_epoch=0,
        ends_turn=event.seq, lease=recovered.lock,
    )  # fmt: skip
    state = await store.get_state(CID)
    assert state is not None
    assert ("turn_owed_seq" in state.extra, "turn_streamed" in state.extra) == (False, False)
    assert await store.end_turn(CID, recovered.lock, event.seq)
    assert await store.recover_turn(CID, 5_000) == ("none", None)
    [(cid, score)] = await store.owed_turns(2**62, 10)
    assert await store.forget_owed(cid, score)
    assert await store.owed_turns(2**62, 10) == []


async def test_a_lease_no_turn_renewed_is_taken_over_by_a_resend(redis_client: aioredis.Redis) -> None:
    """The append took the lease but its process never saw the answer (no turn ran, no heartbeat): a resend
    begins the owed turn at once. A lease a running turn has renewed is not taken."""
    store = await make(redis_client)
    _, _, lost = await store.receive_customer_message(CID, "m1", "hello", now=NOW, lock_ttl_ms=5_000)
    assert lost is not None
    _, created, taken = await store.receive_customer_message(CID, "m1", "hello", now=NOW, lock_ttl_ms=5_000)
    assert not created
    assert taken is not None
    assert taken.message is not None
    assert taken.message.seq == 1
    assert await store.renew_lease(CID, taken.lock, 5_000)  # the resend's turn runs: its first beat
    assert not await store.renew_lease(CID, lost.lock, 5_000)  # the lost attempt's token is not the lease
    _, _, none = await store.receive_customer_message(CID, "m1", "hello", now=NOW, lock_ttl_ms=5_000)
    assert none is None
