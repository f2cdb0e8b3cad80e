"""Recovery of owed turns: a customer message whose turn nobody runs is found and its turn run again.

A turn is owed from the script that stores its customer message (``turn_owed_seq`` in the conversation's
state hash, and the conversation in the global ``turns_owed`` index, both before the message is
acknowledged) until the script that stores its outcome (the reply, or the handoff's status). A turn runs
under a lease its heartbeat renews; so an owed turn with no lease held is one whose process died (crash,
SIGKILL, a deploy that did not drain) or whose start was lost (Redis stalled, the client gave up and
resent). Every process sweeps the index every ``turn_recovery_interval_s`` (jittered); the first to take a
lost turn's lease re-runs it (re-triage, then an answer or a handoff), so each orphan has one owner.

Bound: an orphan is found at most ``turn_lease_s`` (the dead turn's lease running out) plus one sweep
interval (up to 1.5 x ``turn_recovery_interval_s``) after its process died: with the defaults, 9 s; the
re-run then streams its answer or hands off within ``turn_deadline_s``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from support.conversation.pipeline import TurnRunner
from support.conversation.store import ConversationStore
from support.errors import REDIS_OUTAGES

log = logging.getLogger(__name__)

SWEEP_BATCH = 100  # owed conversations looked at per sweep
# A turn recovered this often since its message and lost again (a turn that fails every time it runs) is
# handed to a person instead of being run again.
MAX_RECOVERIES = 3


async def sweep_owed_turns(store: ConversationStore, runner: TurnRunner) -> int:
    """One pass: re-run every indexed owed turn whose lease is gone; drop index entries of conversations
    that owe nothing. Returns how many turns it re-ran."""
    lease_ms = runner.lock_ttl_ms
    # A message indexed less than a lease ago has its turn starting or running: not worth a look yet. A
    # turn found running is moved to the back (looked at again a lease later); one that owes nothing leaves
    # the index: either way the next batch holds entries not yet looked at.
    rows = await store.owed_turns(int(time.time() * 1000) - lease_ms, SWEEP_BATCH)
    recovered = 0
    for conversation_id, score in rows:
        if conversation_id in runner.local:
            await store.defer_owed(conversation_id)  # its turn runs (or waits for the lease) here
            continue
        outcome, context = await store.recover_turn(conversation_id, lease_ms)
        if outcome == "none":
            await store.forget_owed(conversation_id, score)
        elif outcome == "running":
            await store.defer_owed(conversation_id)
        elif outcome == "begun" and context is not None:
            seq = context.message.seq if context.message is not None else context.owed_seq
            if context.recoveries > MAX_RECOVERIES:
                log.error("the turn of %s (message %s) was lost %d times: handing off", conversation_id, seq,
                          context.recoveries - 1)  # fmt: skip
                runner.give_up(conversation_id, context)
                continue
            log.warning("recovering the lost turn of %s (message %s)", conversation_id, seq)
            runner.recover(conversation_id, context)
            recovered += 1
    return recovered


async def recover_forever(store: ConversationStore, runner: TurnRunner, interval_s: float) -> None:
    """Sweep for owed turns every ``interval_s`` (+/-50 %, so processes do not sweep in step) until
    cancelled; Redis away is logged once and waited out."""
    away = False
    while True:
        await asyncio.sleep(interval_s * random.uniform(0.5, 1.5))
        try:
            await sweep_owed_turns(store, runner)
            away = False
        except REDIS_OUTAGES as exc:
            if not away:
                log.warning("turn recovery paused: Redis unreachable (%s)", type(exc).__name__)
            away = True
        except Exception:  # a bug in one pass must not end recovery for the process's lifetime
            log.exception("turn recovery pass failed")
