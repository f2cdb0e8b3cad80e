"""Redis conversation store: the event log, idempotency, hot state, running summary, locks, fan-out.

Every persisted event of a conversation gets a ``seq`` one above the previous, allocated inside a Lua
script together with the append, so two processes appending at once can never produce a gap or a
duplicate. The stream entry id is ``<seq>-0``, which makes ``resume`` a single XRANGE. Keys come from
:mod:`support.keys` and share the conversation's hash tag, so every script runs on a cluster too.

The Redis client is passed in and owned by the caller (the app's lifespan), never closed here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from support import keys
from support.errors import BotDisowned, NotFound, TurnSuperseded
from support.llm.grounding import public_sources
from support.redis_client import RedisClient, as_text

MARKED_MAX = 100_000  # conversations whose last archiver-index time this process remembers

# State-hash fields only the store's scripts may write: seq allocation and the summary window.
_RESERVED_FIELDS = frozenset({
    "last_seq", "window_start_seq", "summary_version", "created_at", "bot_epoch", "turn_owed_seq",
    "turn_streamed", "turn_lease_unclaimed", "turn_recoveries",
})  # fmt: skip

# KEYS: state, events, client_ids, turn lock, summary, then the conversation's other durable keys. ARGV:
# client_id ('' for none), created_at, pub/sub channel ('' = do not publish), the event's frame without its
# seq (a JSON object), turn-lock token ('' = do not begin a turn), lock ttl ms, a frame to publish just
# before the event's own ('' = none: the reply's last delta rides with the reply), the bot epoch the writer
# requires ('' = none: see _BOT_OWNS), the conversation state this status event moves to ('' = none), the
# seq of the customer message whose turn this event ends ('' = none: see "owed turns" below), the turn
# lease token the writer holds ('' = none; a writer whose lease another turn has taken is refused), then
# the stream fields.
# Returns {-1} no conversation | {-2} the bot no longer owns the conversation (nothing written) | {-3} the
# writer's turn lease belongs to another turn now (nothing written) | {0, seq, fields} a resend | {0, seq,
# fields, owed seq, owed entry, state, summary text, summary upto, window entries} a resend whose
# conversation owes a turn nobody runs: that turn is begun (the lock taken) | {1, seq} stored | {1, seq,
# state, summary text, summary upto, window entries} stored and the turn begun (as _BEGIN_TURN below).
#
# Owed turns: a customer message that begins a turn sets ``turn_owed_seq`` in the state hash, in the script
# that stores it; the event that ends the turn (its reply, or its handoff's status) clears it in the script
# that stores that event, as does the end of a turn that ran to completion (_END_TURN). A marker left with no
# lease held is a turn whose process died or whose start was lost: recovery (support/conversation/
# recovery.py) re-runs it. ``turn_streamed`` names the reply a turn began to stream, so whoever re-runs it
# first withdraws what the customer saw (``reply_aborted``).
_APPEND = """
if redis.call('HEXISTS', KEYS[1], 'created_at') == 0 then return {-1} end
if ARGV[8] ~= '' then
  local owner = redis.call('HMGET', KEYS[1], 'state', 'bot_epoch')
  if owner[1] ~= 'bot' or (owner[2] or '0') ~= ARGV[8] then return {-2} end
end
if ARGV[11] ~= '' then
  local holder = redis.call('GET', KEYS[4])
  if holder and holder ~= ARGV[11] then return {-3} end
end
local cid = ARGV[1]
if cid ~= '' then
  local existing = redis.call('HGET', KEYS[3], cid)
  if existing then
    local entries = redis.call('XRANGE', KEYS[2], existing .. '-0', existing .. '-0')
    -- A resend of a message whose turn is owed and not running (its start was lost: the first attempt's
    -- answer never reached the client): begin that turn now rather than wait for recovery. A lease no
    -- turn ever renewed (taken by a first attempt whose process never saw the answer) counts as free.
    local owed = redis.call('HGET', KEYS[1], 'turn_owed_seq')
    if ARGV[5] == '' or not owed then return {0, tonumber(existing), entries[1][2]} end
    if not redis.call('SET', KEYS[4], ARGV[5], 'NX', 'PX', ARGV[6]) then
      local unclaimed = redis.call('HGET', KEYS[1], 'turn_lease_unclaimed')
      if not unclaimed or redis.call('GET', KEYS[4]) ~= unclaimed then
        return {0, tonumber(existing), entries[1][2]}
      end
      redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
    end
    redis.call('HSET', KEYS[1], 'turn_lease_unclaimed', ARGV[5])
    local summary = redis.call('HMGET', KEYS[5], 'text', 'upto_seq')
    local upto = tonumber(summary[2] or '0')
    return {0, tonumber(existing), entries[1][2], tonumber(owed),
            redis.call('XRANGE', KEYS[2], owed .. '-0', owed .. '-0'), redis.call('HGETALL', KEYS[1]),
            summary[1] or '', upto, redis.call('XRANGE', KEYS[2], (upto + 1) .. '-0', '+')}
  end
end
local seq = redis.call('HINCRBY', KEYS[1], 'last_seq', 1)
redis.call('XADD', KEYS[2], seq .. '-0', unpack(ARGV, 12))
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'turn_owed_seq', seq)
  redis.call('HDEL', KEYS[1], 'turn_recoveries')
end
if ARGV[10] ~= '' then
  local owed = tonumber(redis.call('HGET', KEYS[1], 'turn_owed_seq') or '0')
  if owed > 0 and owed <= tonumber(ARGV[10]) then redis.call('HDEL', KEYS[1], 'turn_owed_seq') end
  redis.call('HDEL', KEYS[1], 'turn_streamed')
end
if ARGV[9] ~= '' then
  -- A state change and its status event are one step. Leaving the bot starts a new bot epoch: every bot
  -- turn of the old one is refused from here on, even after the conversation returns to the bot.
  if redis.call('HGET', KEYS[1], 'state') == 'bot' and ARGV[9] ~= 'bot' then
    redis.call('HINCRBY', KEYS[1], 'bot_epoch', 1)
  end
  redis.call('HSET', KEYS[1], 'state', ARGV[9], 'status_seq', seq)
end
if cid ~= '' then redis.call('HSET', KEYS[3], cid, seq) end
redis.call('HSET', KEYS[1], 'last_activity', ARGV[2])
-- Live again: cancel any expiry the archiver set (every durable key of the conversation; not the lock).
for i = 1, #KEYS do if i ~= 4 then redis.call('PERSIST', KEYS[i]) end end
-- Published by the same script that stored it: no subscriber can see the event missing from the log,
-- and the publisher saves a round trip. The seq goes in front of the frame's other fields.
if ARGV[3] ~= '' then
  if ARGV[7] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[7]) end
  redis.call('PUBLISH', ARGV[3], '{"seq": ' .. seq .. ', ' .. string.sub(ARGV[4], 2))
end
-- A customer message starts a turn: take the turn lock and read what the turn starts from, here, so the
-- turn need not make a round trip of its own first. Someone else's turn in flight: the runner waits.
if ARGV[5] == '' or not redis.call('SET', KEYS[4], ARGV[5], 'NX', 'PX', ARGV[6]) then return {1, seq} end
redis.call('HSET', KEYS[1], 'turn_lease_unclaimed', ARGV[5])
local summary = redis.call('HMGET', KEYS[5], 'text', 'upto_seq')
local upto = tonumber(summary[2] or '0')
return {1, seq, redis.call('HGETALL', KEYS[1]), summary[1] or '', upto,
        redis.call('XRANGE', KEYS[2], (upto + 1) .. '-0', '+')}
"""

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'bot', 'created_at', ARGV[1], 'last_activity', ARGV[1],
  'widget_key', ARGV[2], 'visitor', ARGV[3], 'last_seq', 0, 'window_start_seq', 1, 'summary_version', 0)
redis.call('HSET', KEYS[2], 'text', '', 'upto_seq', 0, 'version', 0)
return 1
"""

# ARGV: check ('0' none | '1' state equals expected | '2' the bot owns it in epoch expected, as _BOT_OWNS),
# expected, n_set, k1, v1, ..., then fields to delete.
_SET_STATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] == '1' and redis.call('HGET', KEYS[1], 'state') ~= ARGV[2] then return 0 end
if ARGV[1] == '2' then
  local owner = redis.call('HMGET', KEYS[1], 'state', 'bot_epoch')
  if owner[1] ~= 'bot' or (owner[2] or '0') ~= ARGV[2] then return 0 end
end
local n = tonumber(ARGV[3])
for i = 4, 3 + 2 * n, 2 do
  -- Whoever moves the state off the bot ends the bot's epoch (as the status append does).
  if ARGV[i] == 'state' and ARGV[i + 1] ~= 'bot' and redis.call('HGET', KEYS[1], 'state') == 'bot' then
    redis.call('HINCRBY', KEYS[1], 'bot_epoch', 1)
  end
end
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + 2 * n)) end
if #ARGV > 3 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 4 + 2 * n)) end
return 1
"""

# KEYS: summary, state. ARGV: text, upto_seq, expected_version.
_FOLD = """
local cur = redis.call('HMGET', KEYS[1], 'version', 'upto_seq')
if cur[1] == false or tonumber(cur[1]) ~= tonumber(ARGV[3]) then return 0 end
local upto = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[2], 'last_seq') or '0')
if upto < tonumber(cur[2]) or upto > last then return 0 end
local version = tonumber(cur[1]) + 1
redis.call('HSET', KEYS[1], 'text', ARGV[1], 'upto_seq', upto, 'version', version)
redis.call('HSET', KEYS[2], 'window_start_seq', upto + 1, 'summary_version', version)
return 1
"""

# The start of a turn in one round trip: take the turn lock, then read the hot state and the model's
# window (summary + the events after it). KEYS: lock, state, summary, events. ARGV: lock token, ttl ms.
# Returns nil when someone else holds the lock.
_BEGIN_TURN = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local summary = redis.call('HMGET', KEYS[3], 'text', 'upto_seq')
local upto = tonumber(summary[2] or '0')
return {redis.call('HGETALL', KEYS[2]), summary[1] or '', upto,
        redis.call('XRANGE', KEYS[4], (upto + 1) .. '-0', '+')}
"""

# Compare-and-set of the visitor claims. KEYS: state. ARGV: the JSON read before, the JSON to write.
# Returns -1 no conversation | 0 changed meanwhile (read again) | 1 written.
_REPLACE_VISITOR = """
local current = redis.call('HGET', KEYS[1], 'visitor')
if not current then return -1 end
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'visitor', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A running turn's heartbeat: extend its lease, or take it again if it lapsed (Redis was away longer than
# the lease) and nobody else took it. The first beat also claims a lease the message's append took (until
# then a resend may take it over: see _APPEND). KEYS: lock, state. ARGV: token, ttl ms. Returns 1 held |
# 0 another turn's.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('HGET', KEYS[2], 'turn_lease_unclaimed') == ARGV[1] then
  redis.call('HDEL', KEYS[2], 'turn_lease_unclaimed')
end
return 1
"""

# The end of a turn: release the lease if still ours and, for a turn that ran to its end, clear the owed
# marker if it is this turn's (a later message's marker stays). KEYS: lock, state. ARGV: token, the turn's
# message seq ('' = keep the marker: the turn failed and is owed still). Returns 1 released | 0 not ours.
_END_TURN = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
  local owed = tonumber(redis.call('HGET', KEYS[2], 'turn_owed_seq') or '0')
  if owed > 0 and owed <= tonumber(ARGV[2]) then redis.call('HDEL', KEYS[2], 'turn_owed_seq') end
  redis.call('HDEL', KEYS[2], 'turn_streamed')
end
return 1
"""

# Recovery of an owed turn: take its lease if it is owed and nobody holds the lease, and read what it starts
# from; counts the recoveries since the last customer message. KEYS: lock, state, summary, events. ARGV:
# token, ttl ms. Returns {0} nothing owed | {1} a turn holds the lease | {2, recoveries, owed seq, owed
# entry, state, summary text, summary upto, window entries} begun.
_RECOVER = """
local owed = redis.call('HGET', KEYS[2], 'turn_owed_seq')
if not owed then return {0} end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
local recoveries = redis.call('HINCRBY', KEYS[2], 'turn_recoveries', 1)
local summary = redis.call('HMGET', KEYS[3], 'text', 'upto_seq')
local upto = tonumber(summary[2] or '0')
return {2, recoveries, tonumber(owed), redis.call('XRANGE', KEYS[4], owed .. '-0', owed .. '-0'),
        redis.call('HGETALL', KEYS[2]), summary[1] or '', upto,
        redis.call('XRANGE', KEYS[4], (upto + 1) .. '-0', '+')}
"""

# Where a bot turn's frames leave (deltas, typing): published only while the bot owns the conversation, in
# the same script that checks it, so no frame can slip out between a handoff and the check. The bot owns it
# while ``state`` is ``bot`` and ``bot_epoch`` is the one its turn began in (the epoch moves each time the
# conversation leaves the bot, so a turn from before a handoff stays refused after a return to the bot).
# KEYS: state. ARGV: channel, epoch, frame, the reply id a turn's first delta starts ('' = not the first:
# recorded as ``turn_streamed``, see owed turns above). Returns 1 published | 0 refused.
_BOT_OWNS = """
local owner = redis.call('HMGET', KEYS[1], 'state', 'bot_epoch')
if owner[1] ~= 'bot' or (owner[2] or '0') ~= ARGV[2] then return 0 end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'turn_streamed', ARGV[4]) end
redis.call('PUBLISH', ARGV[1], ARGV[3])
return 1
"""


def iso(now: datetime) -> str:
    """ISO 8601 UTC with milliseconds: the ``created_at`` format of every frame."""
    return now.astimezone(UTC).isoformat(timespec="milliseconds")


# Remove from the active index only if the score is the one the archiver read (no activity since).
_FORGET_IF_IDLE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


# Writes beside the event log (triage verdicts, notes) only to a conversation that still exists: a turn or
# an agent finishing after the conversation was erased must not leave a key behind. KEYS: state, target.
_HSET_IF_LIVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
"""
_RPUSH_IF_LIVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('RPUSH', KEYS[2], ARGV[1])
"""

ERASED_MEMORY_S = 86_400  # how long an erasure's tombstone is kept: far longer than any archive pass


def visitor_identities(visitor: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (kind, value) pairs a conversation is found by in export and erasure: its visitor id and
    e-mail, when set."""
    found: list[tuple[str, str]] = []
    vid, email = visitor.get("id"), visitor.get("email")
    if isinstance(vid, str) and vid:
        found.append(("visitor", vid))
    if isinstance(email, str) and email.strip():
        found.append(("email", email.strip().lower()))
    return found


@dataclass(frozen=True, slots=True)
class Event:
    """One persisted event of a conversation (a message or a status change)."""

    seq: int
    id: str
    type: str  # "message" | "status"
    role: str  # "customer" | "assistant" | "agent" | "system"
    text: str
    created_at: str
    client_id: str | None = None
    reply_id: str | None = None
    author: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_frame(self, *, cited_text: bool = False) -> dict[str, Any]:
        """The server→client frame of PROTOCOL.md; a status event's ``extra`` carries state etc.

        An answer's ``sources`` go without their cited text unless ``cited_text`` (agents' views)."""
        if self.type == "status":
            return {"type": "status", "seq": self.seq, **self.extra}
        frame: dict[str, Any] = {
            "type": "message",
            "seq": self.seq,
            "id": self.id,
            "role": self.role,
            "text": self.text,
            "created_at": self.created_at,
        }
        if self.reply_id is not None:
            frame["reply_id"] = self.reply_id
        if self.author is not None:
            frame["author"] = self.author
        if self.extra.get("attachments"):  # files the message carries (support/attachments)
            frame["attachments"] = [dict(a) for a in self.extra["attachments"]]
        if self.extra.get("sources"):
            # The knowledge sections the answer cites, without the cited text (PROTOCOL.md, "message").
            sources = self.extra["sources"]
            frame["sources"] = [dict(s) for s in sources] if cited_text else public_sources(sources)
        return frame

    def _fields(self) -> list[str]:
        return [
            "id", self.id, "type", self.type, "role", self.role, "text", self.text,
            "created_at", self.created_at, "client_id", self.client_id or "",
            "reply_id", self.reply_id or "", "author", json.dumps(self.author),
            "extra", json.dumps(self.extra),
        ]  # fmt: skip

    @classmethod
    def _from_entry(cls, seq: int, raw: Mapping[bytes | str, bytes | str] | list[bytes | str]) -> Event:
        if isinstance(raw, list):  # Lua returns a stream entry's fields as a flat list
            raw = {raw[i]: raw[i + 1] for i in range(0, len(raw), 2)}
        f = {as_text(k): as_text(v) for k, v in raw.items()}
        return cls(
            seq=seq,
            id=f["id"],
            type=f["type"],
            role=f["role"],
            text=f["text"],
            created_at=f["created_at"],
            client_id=f["client_id"] or None,
            reply_id=f["reply_id"] or None,
            author=json.loads(f["author"]),
            extra=json.loads(f["extra"]),
        )


@dataclass(frozen=True, slots=True)
class ConversationState:
    """The hot state hash, typed; fields set through ``set_state`` that are not listed land in ``extra``."""

    state: str
    created_at: str
    last_activity: str
    widget_key: str
    visitor: dict[str, Any]
    last_seq: int
    window_start_seq: int
    summary_version: int
    assignee: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def bot_epoch(self) -> int:
        """Moves each time the conversation leaves the bot; a bot turn writes only in the epoch it began."""
        return int(self.extra.get("bot_epoch", "0"))


@dataclass(frozen=True, slots=True)
class LockToken:
    """Proof of holding a lock: only its holder can release it."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class TurnContext:
    """What a turn starts from, read atomically with taking the turn lock (``begin_turn``)."""

    lock: LockToken
    state: ConversationState | None
    summary: str  # the running summary ("" before the first fold)
    summary_upto: int  # the last seq the summary covers
    window: list[Event]  # the messages after it, in seq order
    # The owed message this turn answers, when it was begun for an owed turn (recovery, a resend).
    message: Event | None = None
    recoveries: int = 0  # times recovery began this owed turn (counting this one)

    @property
    def owed_seq(self) -> int | None:
        """The customer message whose turn the conversation owes, read with the lease (None: nothing)."""
        raw = self.state.extra.get("turn_owed_seq") if self.state is not None else None
        return int(raw) if raw else None

    @property
    def streamed_reply(self) -> str | None:
        """The reply an earlier turn began to stream and never finished (its process died), if any."""
        return self.state.extra.get("turn_streamed") or None if self.state is not None else None


_KNOWN_STATE_FIELDS = frozenset({
    "state", "created_at", "last_activity", "widget_key", "visitor", "last_seq", "window_start_seq",
    "summary_version", "assignee",
})  # fmt: skip


def _state_from(raw: Mapping[bytes | str, bytes | str]) -> ConversationState | None:
    """The typed state from a state hash as Redis returned it (None for a missing conversation)."""
    if not raw:
        return None
    f = {as_text(k): as_text(v) for k, v in raw.items()}
    return ConversationState(
        state=f["state"],
        created_at=f["created_at"],
        last_activity=f["last_activity"],
        widget_key=f["widget_key"],
        visitor=json.loads(f["visitor"]),
        last_seq=int(f["last_seq"]),
        window_start_seq=int(f["window_start_seq"]),
        summary_version=int(f["summary_version"]),
        assignee=f.get("assignee"),
        extra={k: v for k, v in f.items() if k not in _KNOWN_STATE_FIELDS},
    )


def _customer(client_id: str, text: str, now: datetime, extra: dict[str, Any] | None = None) -> Event:
    return Event(
        seq=0, id=uuid.uuid4().hex, type="message", role="customer", text=text, created_at=iso(now),
        client_id=client_id, extra=extra or {},
    )  # fmt: skip


def _owed_context(token: LockToken, owed_seq: Any, owed_entry: list[Any], rest: list[Any]) -> TurnContext:
    """A :class:`TurnContext` begun for an owed turn: ``rest`` as :func:`_context_from` takes it."""
    context = _context_from(token, *rest)
    message = Event._from_entry(int(owed_seq), owed_entry[0][1]) if owed_entry else None
    return TurnContext(
        lock=token, state=context.state, summary=context.summary, summary_upto=context.summary_upto,
        window=context.window, message=message,
    )  # fmt: skip


def _context_from(
    token: LockToken, flat: list[Any], summary: Any, upto: Any, entries: list[Any]
) -> TurnContext:
    """A :class:`TurnContext` from the reply of a script that took the turn lock and read the window."""
    state = _state_from({flat[i]: flat[i + 1] for i in range(0, len(flat), 2)})
    events = [Event._from_entry(int(as_text(entry_id).split("-")[0]), raw) for entry_id, raw in entries]
    return TurnContext(
        lock=token, state=state, summary=as_text(summary), summary_upto=int(upto),
        window=[ev for ev in events if ev.type == "message"],
    )  # fmt: skip


class ConversationStore:
    """All Redis reads and writes of conversations. The client is passed in and not owned."""

    def __init__(self, redis: RedisClient, *, active_mark_interval_s: float = 0.0) -> None:
        """``active_mark_interval_s``: how long after indexing a conversation for the archiver this process
        skips indexing it again (0: every append). Keep it a small fraction of the archiver's idle time: a
        skipped mark makes the index at most that much older than the last event."""
        self._redis = redis
        self._active_mark_interval_s = active_mark_interval_s
        self._marked: OrderedDict[str, float] = OrderedDict()  # conversation -> monotonic time indexed
        # Registered once: redis-py sends EVALSHA and falls back to EVAL only on a cold server cache.
        self._append = redis.register_script(_APPEND)
        self._create = redis.register_script(_CREATE)
        self._set_state = redis.register_script(_SET_STATE)
        self._fold = redis.register_script(_FOLD)
        self._release = redis.register_script(_RELEASE)
        self._begin_turn = redis.register_script(_BEGIN_TURN)
        self._forget = redis.register_script(_FORGET_IF_IDLE)
        self._hset_if_live = redis.register_script(_HSET_IF_LIVE)
        self._rpush_if_live = redis.register_script(_RPUSH_IF_LIVE)
        self._replace_visitor = redis.register_script(_REPLACE_VISITOR)
        self._bot_owns = redis.register_script(_BOT_OWNS)
        self._renew = redis.register_script(_RENEW)
        self._end_turn = redis.register_script(_END_TURN)
        self._recover = redis.register_script(_RECOVER)

    async def create_conversation(
        self, conversation_id: str, *, widget_key: str, visitor: dict[str, Any], now: datetime | None = None
    ) -> bool:
        """Create the conversation in state ``bot``; True if created, False if it already existed."""
        # Indexed first: a conversation is findable for export and erasure from the moment it exists.
        await self.index_customer(conversation_id, visitor)
        created = await self._create(
            keys=[keys.conv_state(conversation_id), keys.conv_summary(conversation_id)],
            args=[iso(now or datetime.now(UTC)), widget_key, json.dumps(visitor)],
        )
        return bool(created)

    async def exists(self, conversation_id: str) -> bool:
        """False once the conversation is gone from Redis (erased, or archived and expired)."""
        return bool(await self._redis.exists(keys.conv_state(conversation_id)))

    async def set_visitor(self, conversation_id: str, visitor: dict[str, Any]) -> None:
        """Replace the conversation's visitor (a customer identified themselves) and index it, so the
        conversation is found by the new id or e-mail too. NotFound for an unknown conversation."""
        await self.index_customer(conversation_id, visitor)
        await self.set_state(conversation_id, visitor=json.dumps(visitor))

    async def index_customer(self, conversation_id: str, visitor: Mapping[str, Any]) -> None:
        """Record the conversation under the visitor's id and e-mail (each its own set and cluster slot)."""
        identities = visitor_identities(visitor)
        if not identities:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind, value in identities:
                pipe.sadd(keys.customer_conversations(kind, value), conversation_id)
            await pipe.execute()

    async def customer_conversation_ids(self, kind: str, value: str) -> set[str]:
        """Conversation ids indexed under a visitor id or e-mail (some may be gone: callers check)."""
        members: set[bytes | str] = await self._redis.smembers(keys.customer_conversations(kind, value))
        return {as_text(m) for m in members}

    async def unindex_customer(self, conversation_ids: list[str], identities: list[tuple[str, str]]) -> None:
        """Forget erased conversations under each (kind, value); a set left empty disappears with them."""
        if not conversation_ids or not identities:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind, value in identities:
                pipe.srem(keys.customer_conversations(kind, value), *conversation_ids)
            await pipe.execute()

    async def mark_erased(self, conversation_ids: list[str], *, now: datetime | None = None) -> None:
        """Tombstone conversations about to be erased (before anything is deleted), and prune old ones."""
        if not conversation_ids:
            return
        at = (now or datetime.now(UTC)).timestamp()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.erased_conversations(), dict.fromkeys(conversation_ids, at))
            pipe.zremrangebyscore(keys.erased_conversations(), "-inf", at - ERASED_MEMORY_S)
            await pipe.execute()

    async def erased_among(self, conversation_ids: list[str]) -> list[str]:
        """Those of ``conversation_ids`` erased in the last :data:`ERASED_MEMORY_S` seconds (one trip)."""
        if not conversation_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in conversation_ids:
                pipe.zscore(keys.erased_conversations(), cid)
            scores = await pipe.execute()
        return [cid for cid, score in zip(conversation_ids, scores, strict=True) if score is not None]

    async def is_erased(self, conversation_id: str) -> bool:
        """True if the conversation was erased in the last :data:`ERASED_MEMORY_S` seconds."""
        return await self._redis.zscore(keys.erased_conversations(), conversation_id) is not None

    async def erase(self, conversation_id: str) -> int:
        """Delete every key of the conversation, locks included (one transaction: they share a slot) and
        drop it from the archiver's and the owed turns' indexes; returns how many of its durable keys (not
        locks) existed. Appends after this fail with NotFound."""
        durable = keys.conversation_keys(conversation_id)
        locks = [k for k in keys.conversation_all_keys(conversation_id) if k not in durable]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*durable)
            pipe.delete(*locks)
            deleted, _locks = await pipe.execute()
        await self._redis.zrem(keys.active_conversations(), conversation_id)
        await self._redis.zrem(keys.turns_owed(), conversation_id)
        self._marked.pop(conversation_id, None)
        return int(deleted)

    async def update_visitor(
        self, conversation_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> bool:
        """Replace the visitor claims with ``change(current)`` atomically (None: leave them); True if written.

        ``change`` is pure and may raise to refuse; a concurrent writer makes it run again on what that
        writer stored, so no rule it enforces (a visitor id never changes) is lost to a race.
        Raises NotFound for an unknown conversation.
        """
        key = keys.conv_state(conversation_id)
        while True:
            raw = await self._redis.hget(key, "visitor")
            if raw is None:
                raise NotFound("no such conversation")
            current = as_text(raw)
            new = change(json.loads(current))
            if new is None:
                return False
            written = await self._replace_visitor(keys=[key], args=[current, json.dumps(new)])
            if written == -1:
                raise NotFound("no such conversation")
            if written == 1:
                # Found by its new id or e-mail too (customer data export and erasure).
                await self.index_customer(conversation_id, new)
                return True

    async def append_customer_message(
        self,
        conversation_id: str,
        client_id: str,
        text: str,
        *,
        now: datetime,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Event, bool]:
        """Durably append a customer message once per ``client_id``; (event, False) for a resend. (The
        widget uses :meth:`receive_customer_message`, which also publishes it and begins its turn.)"""
        event, created, _ = await self._append_event(conversation_id, _customer(client_id, text, now, extra))
        return event, created

    async def receive_customer_message(
        self,
        conversation_id: str,
        client_id: str,
        text: str,
        *,
        now: datetime,
        lock_ttl_ms: int,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Event, bool, TurnContext | None]:
        """What the widget does with a customer message, in one round trip: append it once per
        ``client_id``, publish it, and, when it is new, begin its turn (as :meth:`begin_turn`). The context
        is None for a resend, or while another turn holds the lock (the runner then waits for it)."""
        return await self._append_event(
            conversation_id, _customer(client_id, text, now, extra), publish=True, lock_ttl_ms=lock_ttl_ms,
            owes_turn=True,
        )  # fmt: skip

    async def append_event(
        self,
        conversation_id: str,
        *,
        type: str,
        role: str,
        text: str,
        reply_id: str | None = None,
        author: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        now: datetime,
        publish: bool = False,
        publish_first: dict[str, Any] | None = None,
        bot_epoch: int | None = None,
        new_state: str | None = None,
        ends_turn: int | None = None,
        lease: LockToken | None = None,
    ) -> Event:
        """Append an assistant/agent/system message or a status event with the next seq; with ``publish``,
        the same script also publishes its frame to the conversation's subscribers (as :meth:`publish`),
        right after ``publish_first`` if given (a reply's last delta: one round trip, in order).

        ``bot_epoch``: a bot turn's write, refused with :class:`BotDisowned` (nothing stored or published)
        unless the bot still owns the conversation in that epoch. ``new_state``: a status event that moves
        the conversation to that state in the same step (leaving the bot starts a new bot epoch).
        ``ends_turn``: the seq of the customer message whose turn this event ends (its reply, its handoff's
        status): the conversation's owed-turn marker for it is cleared in the same step. ``lease``: the
        writer's turn lease; :class:`TurnSuperseded` (nothing written) if another turn holds it now."""
        event = Event(
            seq=0, id=uuid.uuid4().hex, type=type, role=role, text=text, created_at=iso(now),
            reply_id=reply_id, author=author, extra=extra or {},
        )  # fmt: skip
        stored, _, _ = await self._append_event(
            conversation_id, event, publish=publish, publish_first=publish_first, bot_epoch=bot_epoch,
            new_state=new_state, ends_turn=ends_turn, lease=lease,
        )  # fmt: skip
        return stored

    async def publish_bot(
        self, conversation_id: str, bot_epoch: int, payload: dict[str, Any], *, starts_reply: str = ""
    ) -> None:
        """Publish a bot turn's live frame (a delta) only if the bot still owns the conversation in
        ``bot_epoch``, checked in the same script; :class:`BotDisowned` when it was refused.
        ``starts_reply``: the reply id, on a turn's first delta (recorded for recovery: see _APPEND)."""
        published = await self._bot_owns(
            keys=[keys.conv_state(conversation_id)],
            args=[keys.conv_channel(conversation_id), str(bot_epoch), json.dumps(payload), starts_reply],
        )
        if not int(published):
            raise BotDisowned(f"the bot no longer owns {conversation_id}")

    async def _append_event(
        self,
        conversation_id: str,
        event: Event,
        *,
        publish: bool = False,
        lock_ttl_ms: int | None = None,
        publish_first: dict[str, Any] | None = None,
        bot_epoch: int | None = None,
        new_state: str | None = None,
        ends_turn: int | None = None,
        lease: LockToken | None = None,
        owes_turn: bool = False,
    ) -> tuple[Event, bool, TurnContext | None]:
        first = [
            keys.conv_state(conversation_id),
            keys.conv_events(conversation_id),
            keys.conv_client_ids(conversation_id),
            keys.conv_lock(conversation_id, "turn"),
            keys.conv_summary(conversation_id),
        ]
        rest = [k for k in keys.conversation_keys(conversation_id) if k not in first]
        channel, frame = "", ""
        if publish:
            unsequenced = event.to_frame()
            del unsequenced["seq"]
            channel, frame = keys.conv_channel(conversation_id), json.dumps(unsequenced)
        token = None
        if lock_ttl_ms is not None:
            token = LockToken(keys.conv_lock(conversation_id, "turn"), secrets.token_hex(16))
        lock_args = [token.value, lock_ttl_ms] if token is not None else ["", 0]
        first_frame = json.dumps(publish_first) if publish and publish_first is not None else ""
        owner = [str(bot_epoch) if bot_epoch is not None else "", new_state or ""]
        turn = [str(ends_turn) if ends_turn is not None else "", lease.value if lease is not None else ""]
        args = [event.client_id or "", event.created_at, channel, frame, *lock_args, first_frame, *owner,
                *turn, *event._fields()]  # fmt: skip
        # The archiver's index and the owed-turn index are on other cluster slots: updated alongside the
        # script, not after it (so before the message is acknowledged).
        marks = [self._mark_active(conversation_id, event.created_at)]
        if owes_turn and token is not None:
            marks.append(self._mark_owed(conversation_id))
        result, *_ = await asyncio.gather(self._append(keys=[*first, *rest], args=args), *marks)
        status = int(result[0])
        if status == -1:
            raise NotFound(f"no conversation {conversation_id}")
        if status == -2:
            raise BotDisowned(f"the bot no longer owns {conversation_id}")
        if status == -3:
            raise TurnSuperseded(f"another turn of {conversation_id} holds the turn lease")
        if status == 0:
            resent = Event._from_entry(int(result[1]), result[2])
            if token is not None and len(result) > 3:
                return resent, False, _owed_context(token, result[3], result[4], result[5:])
            return resent, False, None
        stored = Event(
            seq=int(result[1]), id=event.id, type=event.type, role=event.role, text=event.text,
            created_at=event.created_at, client_id=event.client_id, reply_id=event.reply_id,
            author=event.author, extra=event.extra,
        )  # fmt: skip
        context = None
        if token is not None and len(result) > 2:
            context = _context_from(token, *result[2:])
        return stored, True, context

    async def _mark_active(self, conversation_id: str, created_at: str) -> None:
        """Index the conversation for the archiver (the append script itself cancelled any idle expiry).

        A separate command from the append (the index is a global key, on another cluster slot), sent
        alongside it: if the process dies in between, the next event catches up; an id indexed for an
        append that then failed (no such conversation) is dropped by the archiver's next sweep.
        """
        if self._active_mark_interval_s > 0:
            now = time.monotonic()
            last = self._marked.get(conversation_id)
            if last is not None and now - last < self._active_mark_interval_s:
                return
            self._marked[conversation_id] = now
            self._marked.move_to_end(conversation_id)
            while len(self._marked) > MARKED_MAX:
                self._marked.popitem(last=False)
        await self._redis.zadd(
            keys.active_conversations(), {conversation_id: datetime.fromisoformat(created_at).timestamp()}
        )

    async def _mark_owed(self, conversation_id: str) -> None:
        """Index the conversation as owing a turn, for recovery (see :data:`keys.turns_owed`)."""
        await self._redis.zadd(keys.turns_owed(), {conversation_id: int(time.time() * 1000)})

    async def owed_turns(self, older_than_ms: int, limit: int) -> list[tuple[str, float]]:
        """Conversations indexed as owing a turn since before ``older_than_ms`` (epoch ms), oldest first,
        with their index score (for :meth:`forget_owed`)."""
        rows = await self._redis.zrangebyscore(
            keys.turns_owed(), "-inf", older_than_ms, start=0, num=limit, withscores=True
        )
        return [
            (as_text(row[0]) if isinstance(row[0], bytes | str) else str(row[0]), float(row[1]))
            for row in rows
        ]

    async def defer_owed(self, conversation_id: str) -> None:
        """Move an owed turn that is running to the back of the owed index: recovery looks at it again only
        a lease later (a message indexing it meanwhile does the same)."""
        await self._redis.zadd(keys.turns_owed(), {conversation_id: int(time.time() * 1000)}, xx=True)

    async def forget_owed(self, conversation_id: str, score: float) -> bool:
        """Drop the conversation from the owed index unless a message indexed it again since ``score``."""
        return bool(await self._forget(keys=[keys.turns_owed()], args=[conversation_id, repr(score)]))

    async def recover_turn(self, conversation_id: str, lease_ms: int) -> tuple[str, TurnContext | None]:
        """Begin the conversation's owed turn if nobody runs it: ("begun", context with the owed message),
        ("running", None) while a turn holds the lease, ("none", None) when no turn is owed."""
        token = LockToken(keys.conv_lock(conversation_id, "turn"), secrets.token_hex(16))
        result = await self._recover(
            keys=[token.key, keys.conv_state(conversation_id), keys.conv_summary(conversation_id),
                  keys.conv_events(conversation_id)],
            args=[token.value, lease_ms],
        )  # fmt: skip
        status = int(result[0])
        if status == 0:
            return "none", None
        if status == 1:
            return "running", None
        context = _owed_context(token, result[2], result[3], result[4:])
        return "begun", dataclasses.replace(context, recoveries=int(result[1]))

    async def renew_lease(self, conversation_id: str, token: LockToken, lease_ms: int) -> bool:
        """A running turn's heartbeat: extend its lease (or take it again if it lapsed and is free);
        False when another turn holds it now."""
        return bool(
            await self._renew(
                keys=[token.key, keys.conv_state(conversation_id)], args=[token.value, lease_ms]
            )
        )

    async def end_turn(self, conversation_id: str, token: LockToken, seq: int | None) -> bool:
        """Release a turn's lease if still ours; with ``seq`` (the turn ran to its end), also clear the
        conversation's owed marker if it is that message's or an earlier one's."""
        return bool(
            await self._end_turn(
                keys=[token.key, keys.conv_state(conversation_id)],
                args=[token.value, str(seq) if seq is not None else ""],
            )
        )

    async def has_reply(self, conversation_id: str, reply_id: str, recent: int = 20) -> bool:
        """Whether one of the conversation's last ``recent`` events is the reply ``reply_id`` (a write
        retried after its connection broke may have been stored the first time)."""
        entries: list[tuple[bytes | str, dict[bytes | str, bytes | str]]] = await self._redis.xrevrange(
            keys.conv_events(conversation_id), count=recent
        )  # type: ignore[assignment]  # as in events_after
        return any(as_text(raw.get(b"reply_id", raw.get("reply_id", b""))) == reply_id for _, raw in entries)

    async def idle_conversations(self, before: datetime, limit: int) -> list[tuple[str, float]]:
        """Conversations whose last event is older than ``before``, oldest first, with that score."""
        rows = await self._redis.zrangebyscore(
            keys.active_conversations(), "-inf", before.timestamp(), start=0, num=limit, withscores=True
        )
        result: list[tuple[str, float]] = []
        for row in rows:
            member, score = row[0], row[1]
            result.append((member.decode() if isinstance(member, bytes) else str(member), float(score)))
        return result

    async def forget_if_idle(self, conversation_id: str, score: float) -> bool:
        """Drop the conversation from the active index unless it had activity since ``score`` was read."""
        return bool(
            await self._forget(keys=[keys.active_conversations()], args=[conversation_id, repr(score)])
        )

    async def events_after(
        self, conversation_id: str, after_seq: int, limit: int | None = None
    ) -> list[Event]:
        """Every persisted event with seq > ``after_seq``, in order: what ``resume`` replays."""
        entries: list[tuple[bytes | str, dict[bytes | str, bytes | str]]] = await self._redis.xrange(
            keys.conv_events(conversation_id), min=f"{after_seq + 1}-0", max="+", count=limit
        )  # type: ignore[assignment]  # redis-py types entries as Optional, XRANGE never returns nil
        return [Event._from_entry(int(as_text(entry_id).split("-")[0]), raw) for entry_id, raw in entries]

    async def state_fields(self, conversation_ids: list[str], *names: str) -> list[list[str | None]]:
        """The named state-hash fields of many conversations in one round trip (None where absent)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in conversation_ids:
                pipe.hmget(keys.conv_state(cid), list(names))
            rows = await pipe.execute()
        return [[None if v is None else as_text(v) for v in row] for row in rows]

    async def get_state(self, conversation_id: str) -> ConversationState | None:
        """The conversation's hot state, or None if there is no such conversation."""
        return _state_from(await self._redis.hgetall(keys.conv_state(conversation_id)))

    async def begin_turn(self, conversation_id: str, lock_ttl_ms: int) -> TurnContext | None:
        """Take the conversation's ``turn`` lock and read its state and window, in one round trip; None
        while another turn holds the lock. The summary and the log are read together, so no fold can
        land between them."""
        token = LockToken(keys.conv_lock(conversation_id, "turn"), secrets.token_hex(16))
        result = await self._begin_turn(
            keys=[token.key, keys.conv_state(conversation_id), keys.conv_summary(conversation_id),
                  keys.conv_events(conversation_id)],
            args=[token.value, lock_ttl_ms],
        )  # fmt: skip
        if result is None:
            return None
        return _context_from(token, *result)

    async def set_state(
        self,
        conversation_id: str,
        *,
        expected_state: str | None = None,
        bot_epoch: int | None = None,
        **fields: str | int | None,
    ) -> bool:
        """Set fields (None deletes one); with ``expected_state``, only if ``state`` still equals it; with
        ``bot_epoch``, only if the bot still owns the conversation in that epoch (a bot turn's write).

        False when the compare failed; raises NotFound for an unknown conversation.
        """
        reserved = _RESERVED_FIELDS & fields.keys()
        if reserved:
            raise ValueError(f"fields written only by the store: {sorted(reserved)}")
        sets = [(k, str(v)) for k, v in fields.items() if v is not None]
        deletes = [k for k, v in fields.items() if v is None]
        check, expected = "0", ""
        if expected_state is not None:
            check, expected = "1", expected_state
        elif bot_epoch is not None:
            check, expected = "2", str(bot_epoch)
        args: list[str] = [check, expected, str(len(sets))]
        for k, v in sets:
            args += [k, v]
        args += deletes
        result = int(await self._set_state(keys=[keys.conv_state(conversation_id)], args=args))
        if result == -1:
            raise NotFound(f"no conversation {conversation_id}")
        return result == 1

    async def window(self, conversation_id: str) -> tuple[str, int, list[Event]]:
        """(summary text, seq it covers up to, messages after it): the model's view of the conversation.

        The summary is read before the log: a fold landing in between only means a few already-summarised
        messages are also given verbatim, never that one is missing.
        """
        text, upto = await self._redis.hmget(keys.conv_summary(conversation_id), ["text", "upto_seq"])
        upto_seq = int(as_text(upto)) if upto is not None else 0
        events = await self.events_after(conversation_id, upto_seq)
        return (
            (as_text(text) if text is not None else ""),
            upto_seq,
            [e for e in events if e.type == "message"],
        )

    async def fold_summary(
        self, conversation_id: str, *, new_summary: str, upto_seq: int, expected_summary_version: int
    ) -> bool:
        """Replace the summary and slide the window start, only if nobody folded since we read version.

        The log keeps every message; only the window start moves, so a lost race loses nothing.
        """
        ok = await self._fold(
            keys=[keys.conv_summary(conversation_id), keys.conv_state(conversation_id)],
            args=[new_summary, upto_seq, expected_summary_version],
        )
        return bool(ok)

    async def acquire_lock(self, name: str, conversation_id: str, ttl_ms: int) -> LockToken | None:
        """Take the named lock of a conversation for ``ttl_ms``, or None if someone holds it."""
        token = LockToken(keys.conv_lock(conversation_id, name), secrets.token_hex(16))
        acquired = await self._redis.set(token.key, token.value, nx=True, px=ttl_ms)
        return token if acquired else None

    async def release_lock(self, token: LockToken) -> bool:
        """Release a lock if still ours (it may have expired and been taken by another process)."""
        return bool(await self._release(keys=[token.key], args=[token.value]))

    async def publish(self, conversation_id: str, payload: dict[str, Any]) -> int:
        """Fan ``payload`` out to every subscriber of the conversation; returns how many received it (on a
        Redis Cluster: how many on the node that took the PUBLISH, which then forwards it to the others)."""
        return int(await self._redis.publish(keys.conv_channel(conversation_id), json.dumps(payload)))

    async def record_triage(self, conversation_id: str, seq: int, verdict: dict[str, Any]) -> None:
        """Store the triage verdict of customer message ``seq`` with its turn."""
        await self._hset_if_live(
            keys=[keys.conv_state(conversation_id), keys.conv_triage(conversation_id)],
            args=[str(seq), json.dumps(verdict)],
        )

    async def triage_of(self, conversation_id: str, seq: int) -> dict[str, Any] | None:
        """The stored triage verdict of customer message ``seq``, if any."""
        raw = await self._redis.hget(keys.conv_triage(conversation_id), str(seq))
        return json.loads(raw) if raw is not None else None

    async def publish_agent(self, conversation_id: str, payload: dict[str, Any]) -> int:
        """Publish an agent-side event (customer typing, messages while a human owns the conversation)."""
        return int(await self._redis.publish(keys.agent_fanout(conversation_id), json.dumps(payload)))

    async def touch_expiry(self, conversation_id: str, ttl_s: int) -> None:
        """Give every durable key of an archived conversation a TTL, in one transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in keys.conversation_keys(conversation_id):
                pipe.expire(key, ttl_s)
            await pipe.execute()

    async def triages(self, conversation_id: str) -> dict[int, dict[str, Any]]:
        """Every stored triage verdict of the conversation, by customer message seq."""
        raw = await self._redis.hgetall(keys.conv_triage(conversation_id))
        return {int(as_text(k)): json.loads(v) for k, v in raw.items()}

    async def logs(
        self, conversation_ids: list[str]
    ) -> dict[str, tuple[list[Event], dict[int, dict[str, Any]]]]:
        """Every event and triage verdict of many conversations, in one round trip (reports read them in
        batches); a conversation with no events (unknown, or gone from Redis) is left out."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in conversation_ids:
                pipe.xrange(keys.conv_events(cid), min="-", max="+")
                pipe.hgetall(keys.conv_triage(cid))
            replies = await pipe.execute()
        found: dict[str, tuple[list[Event], dict[int, dict[str, Any]]]] = {}
        for i, cid in enumerate(conversation_ids):
            entries, triage = replies[2 * i], replies[2 * i + 1]
            if not entries:
                continue
            events = [
                Event._from_entry(int(as_text(entry_id).split("-")[0]), raw) for entry_id, raw in entries
            ]
            found[cid] = (events, {int(as_text(k)): json.loads(v) for k, v in triage.items()})
        return found

    async def add_note(self, conversation_id: str, note: dict[str, Any]) -> None:
        """Append an internal agent note (never part of the customer's event log)."""
        await self._rpush_if_live(
            keys=[keys.conv_state(conversation_id), keys.conv_notes(conversation_id)], args=[json.dumps(note)]
        )

    async def notes(self, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's internal notes, oldest first."""
        raw: list[bytes | str] = await self._redis.lrange(keys.conv_notes(conversation_id), 0, -1)
        return [json.loads(n) for n in raw]
